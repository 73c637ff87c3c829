using System.Collections.Frozen;
using System.Net;
using Portcullis.Clusters;
using Portcullis.Routing;
using Yarp.ReverseProxy.Configuration;

namespace Portcullis.Configuration;

/// <summary>
/// One immutable, compiled configuration. The request path reads exactly one of these per request;
/// a reload builds a new one off the request path and swaps a single reference.
/// </summary>
internal sealed class GatewaySnapshot : Pipeline.IRequestGeneration
{
    internal GatewaySnapshot(
        LoadedConfig source,
        long generation,
        DateTimeOffset loadedAt,
        string fingerprint,
        IReadOnlyList<string> files,
        FrozenDictionary<string, CompiledRoute> routes,
        FrozenDictionary<string, CompiledCluster> clusters,
        FrozenDictionary<string, CompiledMap> maps,
        IReadOnlyList<RouteConfig> proxyRoutes,
        IReadOnlyList<ClusterConfig> proxyClusters,
        IReadOnlyList<IPNetwork> trustedProxies,
        IReadOnlyList<ListenerBinding> listeners,
        IReadOnlyList<Identity.CompiledIssuer> issuers,
        Identity.CompiledApiKeys? apiKeys,
        FrozenDictionary<string, Traffic.CompiledRateLimit> rateLimits,
        FrozenDictionary<string, Traffic.CompiledQuota> quotas)
    {
        RateLimits = rateLimits;
        Quotas = quotas;
        Issuers = issuers;
        ApiKeys = apiKeys;
        Source = source;
        Generation = generation;
        LoadedAt = loadedAt;
        Fingerprint = fingerprint;
        Files = files;
        Routes = routes;
        Clusters = clusters;
        Maps = maps;
        ProxyRoutes = proxyRoutes;
        ProxyClusters = proxyClusters;
        TrustedProxies = [.. trustedProxies];
        Listeners = listeners;
        ClusterGates = clusters.Where(c => c.Value.Concurrency is not null).ToFrozenDictionary(c => c.Key, c => c.Value.Concurrency!, StringComparer.Ordinal);
    }

    public LoadedConfig Source { get; }

    public PortcullisConfig Config => Source.Config;

    public long Generation { get; }

    public DateTimeOffset LoadedAt { get; }

    /// <summary>SHA-256 over the config file and every file it references.</summary>
    public string Fingerprint { get; }

    /// <summary>The config file and every file it references (watched for changes).</summary>
    public IReadOnlyList<string> Files { get; }

    internal FrozenDictionary<string, CompiledRoute> Routes { get; }

    internal FrozenDictionary<string, CompiledCluster> Clusters { get; }

    internal FrozenDictionary<string, CompiledMap> Maps { get; }

    /// <summary>The clusters' concurrency limits by cluster name (only clusters that have one), for the traffic stage.</summary>
    internal FrozenDictionary<string, Traffic.ConcurrencyGate> ClusterGates { get; }

    /// <summary>The clusters' upstream TLS settings (clusters with upstream TLS only), for the upstream TLS store.</summary>
    internal IEnumerable<Upstream.UpstreamTlsSettings> UpstreamTls => Clusters.Values.Select(c => c.Tls).OfType<Upstream.UpstreamTlsSettings>();

    /// <summary>The clusters' client-credentials settings (clusters with them only), for the upstream token store.</summary>
    internal IEnumerable<Upstream.ClientCredentialsSettings> UpstreamCredentials => Clusters.Values.Select(c => c.Credentials).OfType<Upstream.ClientCredentialsSettings>();

    public IReadOnlyList<RouteConfig> ProxyRoutes { get; }

    public IReadOnlyList<ClusterConfig> ProxyClusters { get; }

    internal IPNetwork[] TrustedProxies { get; }

    public IReadOnlyList<ListenerBinding> Listeners { get; }

    internal IReadOnlyList<Identity.CompiledIssuer> Issuers { get; }

    /// <summary>Browser sign-in providers and session settings (identity.sessions); null when not configured.</summary>
    internal Identity.Sessions.CompiledSessions? Sessions { get; init; }

    internal Identity.CompiledApiKeys? ApiKeys { get; }

    /// <summary>Who may use the admin API (admin.auth); null when not configured (allowed on a loopback admin listener only).</summary>
    internal Admin.CompiledAdminAuth? AdminAuth { get; init; }

    /// <summary>Request-id trust and the compiled access log (observability).</summary>
    internal Observability.CompiledObservability Observability { get; init; } = Portcullis.Observability.CompiledObservability.Default;

    /// <summary>The analytics store's settings (analytics); null when analytics is off (no path).</summary>
    internal Analytics.CompiledAnalytics? Analytics { get; init; }

    /// <summary>The advisor's settings (advice); null when the advisor is off.</summary>
    internal Advice.CompiledAdvice? Advice { get; init; }

    internal FrozenDictionary<string, Traffic.CompiledRateLimit> RateLimits { get; }

    internal FrozenDictionary<string, Traffic.CompiledQuota> Quotas { get; }

    /// <summary>The plans (`plans`) with their own copies of the policies they name; null without plans.</summary>
    internal Traffic.CompiledPlans? Plans { get; init; }

    /// <summary>Null when identity.assertion is not configured.</summary>
    internal Identity.AssertionSettings? Assertion { get; init; }

    /// <summary>Inbound headers removed before routing (spoofed identity headers in any spelling, underscore headers).</summary>
    internal Identity.InboundHeaderScrub HeaderScrub { get; init; } = Identity.InboundHeaderScrub.None;

    /// <summary>The edge-limit refusal texts for <see cref="PortcullisConfig.Limits"/>.</summary>
    internal Portcullis.Listeners.EdgeLimitRefusals EdgeRefusals { get; init; } = Portcullis.Listeners.EdgeLimitRefusals.Default;

    public bool IsTrustedProxy(IPAddress? address)
    {
        if (address is null || TrustedProxies.Length == 0) return false;
        if (address.IsIPv4MappedToIPv6) address = address.MapToIPv4();
        foreach (var network in TrustedProxies)
        {
            if (network.Contains(address)) return true;
        }

        return false;
    }
}

/// <param name="Tls">Null for a cleartext listener.</param>
/// <param name="RedirectToHttps">Set on a cleartext listener that redirects every request to HTTPS.</param>
internal sealed record ListenerBinding(string Name, ListenAddress Address, ListenerProtocols Protocols, bool Admin, Tls.ListenerTls? Tls = null, Tls.HttpsRedirect? RedirectToHttps = null);

/// <summary>
/// The typed snapshot of a request. The per-request contract (Pipeline) holds it as an
/// <see cref="Pipeline.IRequestGeneration"/> so that it names no capability; this layer composes the snapshot.
/// </summary>
internal static class GatewayFeatureSnapshot
{
    extension(Pipeline.GatewayFeature feature)
    {
        /// <summary>The generation this request runs on (see <see cref="Pipeline.GatewayFeature.Generation"/>).</summary>
        internal GatewaySnapshot Snapshot => (GatewaySnapshot)feature.Generation;
    }
}
