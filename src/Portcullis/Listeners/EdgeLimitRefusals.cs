using Portcullis.Configuration;

namespace Portcullis.Listeners;

/// <summary>
/// The problem details of the edge-limit refusals (headers, request line, body), written once per snapshot
/// from its limits rather than formatted on every refused request.
/// </summary>
internal sealed record EdgeLimitRefusals(string HeadersTooLarge, string RequestLineTooLong, string BodyTooLarge)
{
    public static EdgeLimitRefusals Default { get; } = Compile(new LimitsOptions());

    public static EdgeLimitRefusals Compile(LimitsOptions limits) => new(
        $"Request headers must stay within {limits.MaxRequestHeaderCount} headers and {limits.MaxRequestHeadersSize} in total.",
        $"The request line (method, target, version) must stay within {limits.MaxRequestLineSize}.",
        $"Request bodies must stay within {limits.MaxRequestBodySize}.");
}
