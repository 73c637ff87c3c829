using System.Collections.ObjectModel;
using System.ComponentModel;

namespace Portcullis.Configuration;

/// <summary>routes[].transforms: what the gateway changes on the way to and from the upstream.</summary>
internal sealed record RouteTransformOptions
{
    [Description("Response headers to set, add or remove before the answer goes to the client. Values are templates like requestHeaders.set.")]
    public ResponseTransformOptions Response { get; init; } = new();

    [Description("Query parameters to set (literal values) or remove on the upstream request.")]
    public QueryTransformOptions Query { get; init; } = new();

    [Description("Rewrite the path after route matching and before stripPrefix: a regex (NonBacktracking) and a replacement with $1 / ${name} captures.")]
    public PathRewriteOptions? PathRewrite { get; init; }

    [Description("default: add the usual security headers to upstream answers that lack them (X-Content-Type-Options: nosniff, Referrer-Policy: strict-origin-when-cross-origin, X-Frame-Options: SAMEORIGIN unless a CSP sets frame-ancestors, and Strict-Transport-Security over HTTPS). The upstream's own values, and the route's response.set/remove, win; Content-Security-Policy is passed through, never invented. Default off.")]
    public SecurityHeadersPreset SecurityHeaders { get; init; } = SecurityHeadersPreset.Off;
}

internal enum SecurityHeadersPreset
{
    Off,
    Default,
}

internal sealed record PathRewriteOptions
{
    [Description("A .NET regular expression matched against the request path (run with RegexOptions.NonBacktracking: no backreferences or lookarounds).")]
    public string Regex { get; init; } = "";

    [Description("The replacement, with $1 or ${name} for captures, e.g. /v2/orders/$1.")]
    public string Replacement { get; init; } = "";
}

internal sealed record ResponseTransformOptions
{
    [Description("Headers to set (replacing the upstream's); values may contain ${consumer}, ${consumerGroup}, ${claim:NAME}, ${route}, ${requestId}, ${map:NAME(SOURCE)}. A value with a missing part removes the header.")]
    public IReadOnlyDictionary<string, string> Set { get; init; } = ReadOnlyDictionary<string, string>.Empty;

    [Description("Headers to append to the upstream's (templates as in set; a value with a missing part adds nothing).")]
    public IReadOnlyDictionary<string, string> Add { get; init; } = ReadOnlyDictionary<string, string>.Empty;

    [Description("Headers to remove from the upstream's response, e.g. Server, X-Powered-By.")]
    public IReadOnlyList<string> Remove { get; init; } = [];
}

internal sealed record QueryTransformOptions
{
    [Description("Query parameters to set on the upstream request (literal values; an inbound value is replaced).")]
    public IReadOnlyDictionary<string, string> Set { get; init; } = ReadOnlyDictionary<string, string>.Empty;

    [Description("Query parameters to remove from the upstream request.")]
    public IReadOnlyList<string> Remove { get; init; } = [];
}
