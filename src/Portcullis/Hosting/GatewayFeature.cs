using Portcullis.Configuration;

namespace Portcullis.Hosting;

/// <summary>
/// Per-request facts every stage reads and writes: the snapshot taken at the start of the request,
/// the route, the chosen cluster, attempts. Logs and metrics read this one object at the end.
/// </summary>
public sealed class GatewayFeature
{
    public GatewayFeature(GatewaySnapshot snapshot) => Snapshot = snapshot;

    public GatewaySnapshot Snapshot { get; }

    public string? RouteName { get; internal set; }

    public string? ClusterName { get; internal set; }

    /// <summary>Upstream attempts made (1 + retries).</summary>
    public int Attempts { get; internal set; }

    /// <summary>The authenticated caller, when the route has auth.</summary>
    internal Identity.CallerIdentity? Caller { get; set; }

    /// <summary>Consumer id of the caller (token claim or API key consumer).</summary>
    public string? Consumer => Caller?.Consumer;

    /// <summary>Authentication / authorization decision, e.g. jwt.valid, apikey.unknown, authz.scope.</summary>
    public string? AuthReason { get; internal set; }

    /// <summary>Why the gateway answered itself, e.g. route.unmatched, upstream.unavailable.</summary>
    public string? Reason { get; internal set; }
}
