using System.ComponentModel;

namespace Portcullis.Configuration;

/// <summary>routes[].mirror: copy a share of the route's requests to another cluster and discard its answers (shadow traffic).</summary>
internal sealed record MirrorOptions
{
    [Description("The cluster that gets the copies (under clusters).")]
    public string Cluster { get; init; } = "";

    [Description("Share of requests copied, 0-100 (default 100), drawn at random per request.")]
    public double Percent { get; init; } = 100;

    [Description("Largest request body copied (default 64KiB); a request with a larger or undeclared (chunked) body is not copied.")]
    public ByteSize MaxBodySize { get; init; } = ByteSize.FromKiB(64);

    [Description("Most copies in flight at once (default 64); beyond it a copy is dropped, so a slow mirror cannot pile up work.")]
    public int MaxConcurrent { get; init; } = 64;

    [Description("How long a copy may take before it is abandoned (default 5s).")]
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(5);
}
