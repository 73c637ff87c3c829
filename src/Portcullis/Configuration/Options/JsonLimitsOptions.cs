using System.ComponentModel;

namespace Portcullis.Configuration;

/// <summary>
/// routes[].jsonLimits: JSON threat protection (Apigee's JSONThreatProtection, Kong's request-validator limits) for
/// the route's JSON request bodies, checked while the body streams to the upstream.
/// </summary>
internal sealed record JsonLimitsOptions
{
    [Description("Largest JSON body, e.g. 1MiB (default). A Content-Length above it is refused (413) before the upstream is contacted; a chunked body when it crosses it.")]
    public ByteSize MaxSize { get; init; } = ByteSize.FromMiB(1);

    [Description("Deepest nesting of objects and arrays (default 32; the top-level value is depth 1).")]
    public int MaxDepth { get; init; } = 32;

    [Description("Longest string, property names included, in bytes as sent (escapes count as written). Default 8192.")]
    public int MaxStringLength { get; init; } = 8192;

    [Description("Most items in one array. Default 10000.")]
    public int MaxArrayItems { get; init; } = 10_000;

    [Description("Most members (properties) in one object. Default 1000.")]
    public int MaxObjectMembers { get; init; } = 1000;

    [Description("Refuse bodies that are not declared as JSON (415) instead of passing them unchecked. Default false: only bodies with a JSON content type (application/json, application/*+json) are checked.")]
    public bool RequireJson { get; init; }
}
