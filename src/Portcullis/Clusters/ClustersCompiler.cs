using System.Collections.Frozen;
using System.Globalization;
using System.Net;
using Portcullis.Configuration;
using Yarp.ReverseProxy.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Clusters;

/// <summary>A cluster's gateway-side settings and the YARP cluster they drive.</summary>
internal sealed record ClusterBuild(List<CompiledCluster> Compiled, List<ClusterConfig> Proxy);

/// <summary>Validation and compilation of clusters: destinations, health checks, timeouts, upstream TLS and credentials.</summary>
internal static class ClustersCompiler
{
    internal const string ConnectTimeoutMetadata = "Portcullis.ConnectTimeout";
    internal const string ActiveHealthPolicy = "Portcullis.Thresholds";
    internal const string PassiveHealthPolicy = "Portcullis.ConsecutiveFailures";
    internal const string AvailableDestinationsPolicy = "Portcullis.HealthyNotDrained";

    internal static ClusterBuild Compile(CompileContext context, IReadOnlyDictionary<string, ClusterOptions> clusters)
    {
        var compiled = new List<CompiledCluster>();
        var proxy = new List<ClusterConfig>();
        foreach (var (name, options) in clusters)
        {
            var path = "clusters." + name;
            if (options.Destinations.Count == 0)
            {
                context.Error(path, $"cluster '{name}' has no destinations", "add destinations: [http://127.0.0.1:5001]");
            }

            var destinations = CompileDestinations(context, name, options, path);
            ValidateHealthChecks(context, options.HealthCheck, path);
            var (cluster, proxyCluster) = CompileCluster(context, name, options, path, destinations);
            compiled.Add(cluster);
            proxy.Add(proxyCluster);
        }

        return new ClusterBuild(compiled, proxy);
    }

    private static Dictionary<string, DestinationConfig> CompileDestinations(CompileContext context, string name, ClusterOptions options, string path)
    {
        var destinations = new Dictionary<string, DestinationConfig>(StringComparer.Ordinal);
        for (var i = 0; i < options.Destinations.Count; i++)
        {
            var destination = options.Destinations[i];
            var destinationPath = $"{path}.destinations[{i}]";
            var destinationName = string.IsNullOrWhiteSpace(destination.Name) ? "d" + (i + 1).ToString(CultureInfo.InvariantCulture) : destination.Name;
            if (!CompileContext.IsHttpUrl(destination.Address))
            {
                context.Error(destination.Name is null && !context.Loaded.Locations.Has(destinationPath + ".address") ? destinationPath : destinationPath + ".address",
                    $"destination address '{destination.Address}' is not an absolute http:// or https:// URL", "e.g. http://10.0.0.5:8080");
            }

            if (destination.Health is not null && !CompileContext.IsHttpUrl(destination.Health))
            {
                context.Error(destinationPath + ".health", $"health address '{destination.Health}' is not an absolute http:// or https:// URL");
            }

            if (!destinations.TryAdd(destinationName, new DestinationConfig { Address = destination.Address, Health = destination.Health }))
            {
                context.Error(destinationPath, $"duplicate destination name '{destinationName}' in cluster '{name}'", "give each destination its own name");
            }
        }

        return destinations;
    }

    private static void ValidateHealthChecks(CompileContext context, HealthCheckOptions healthCheck, string path)
    {
        var active = healthCheck.Active;
        if (active is not null)
        {
            var activePath = path + ".healthCheck.active";
            if (active.Interval <= TimeSpan.Zero) context.Error(activePath + ".interval", "interval must be greater than zero", "e.g. interval: 5s");
            if (active.Timeout <= TimeSpan.Zero) context.Error(activePath + ".timeout", "timeout must be greater than zero", "e.g. timeout: 2s");
            else if (active.Timeout > active.Interval) context.Warning(activePath + ".timeout", "probe timeout is longer than the interval", "keep timeout below interval");
            if (!active.Path.StartsWith('/')) context.Error(activePath + ".path", $"health check path '{active.Path}' must start with '/'");
            if (active.UnhealthyThreshold < 1) context.Error(activePath + ".unhealthyThreshold", "unhealthyThreshold must be at least 1");
            if (active.HealthyThreshold < 1) context.Error(activePath + ".healthyThreshold", "healthyThreshold must be at least 1");
        }

        var passive = healthCheck.Passive;
        if (passive is not null)
        {
            var passivePath = path + ".healthCheck.passive";
            if (passive.Failures < 1) context.Error(passivePath + ".failures", "failures must be at least 1");
            if (passive.Reactivation <= TimeSpan.Zero) context.Error(passivePath + ".reactivation", "reactivation must be greater than zero", "e.g. reactivation: 30s");
            foreach (var code in passive.StatusCodes)
            {
                if (code is < 500 or > 599) context.Error(passivePath + ".statusCodes", $"status code {code} is not a 5xx code", "only upstream 5xx answers can count as failures");
            }
        }
    }

    private static CompiledConsistentHash? CompileConsistentHash(CompileContext context, ClusterOptions options, string path)
    {
        var settings = options.ConsistentHash;
        if (options.LoadBalancing != LoadBalancingPolicy.ConsistentHash)
        {
            if (settings is not null) context.Error(path + ".consistentHash", "consistentHash is set but loadBalancing is not consistentHash", "add loadBalancing: consistentHash, or remove consistentHash");
            return null;
        }

        if (settings is null || string.IsNullOrEmpty(settings.Key))
        {
            context.Error(path + (settings is null ? ".loadBalancing" : ".consistentHash.key"), "loadBalancing: consistentHash needs consistentHash.key (what to hash)", "e.g. consistentHash: { key: header:X-User-Id }");
            return null;
        }

        var ok = true;
        if (!RequestSource.TryParse(settings.Key, out var key, out var error))
        {
            context.Error(path + ".consistentHash.key", $"{error}", $"one of {RequestSource.Syntax}");
            ok = false;
        }

        if (settings.BalanceFactor != 0 && (settings.BalanceFactor < 1 || !double.IsFinite(settings.BalanceFactor)))
        {
            context.Error(path + ".consistentHash.balanceFactor", $"balanceFactor must be at least 1, or 0 for no bound (it is {settings.BalanceFactor.ToString(CultureInfo.InvariantCulture)})", "1.25 lets a destination take 25 % more than its share before keys spill over");
            ok = false;
        }

        return ok ? new CompiledConsistentHash(key, settings.BalanceFactor) : null;
    }

    private static void CompileAffinity(CompileContext context, ClusterOptions options, string path)
    {
        if (options.Affinity is not { } affinity) return;
        if (string.IsNullOrWhiteSpace(affinity.Cookie) || affinity.Cookie.Any(c => c <= ' ' || c >= 127 || "()<>@,;:\\\"/[]?={}".Contains(c)))
        {
            context.Error(path + ".affinity.cookie", $"'{affinity.Cookie}' is not a valid cookie name", "letters, digits and !#$%&'*+-.^_`|~, e.g. .Portcullis.Affinity");
        }

        if (affinity.MaxAge is { } maxAge && maxAge <= TimeSpan.Zero)
        {
            context.Error(path + ".affinity.maxAge", "maxAge must be greater than zero", "omit it for a session cookie");
        }
    }

    private static (CompiledCluster Compiled, ClusterConfig Proxy) CompileCluster(CompileContext context, string name, ClusterOptions options, string path, Dictionary<string, DestinationConfig> destinations)
    {
        var active = options.HealthCheck.Active;
        var passive = options.HealthCheck.Passive;
        if (options.Timeouts.Connect <= TimeSpan.Zero) context.Error(path + ".timeouts.connect", "connect timeout must be greater than zero", "e.g. connect: 5s");
        if (options.Timeouts.Request <= TimeSpan.Zero) context.Error(path + ".timeouts.request", "request timeout must be greater than zero", "e.g. request: 100s");
        if (options.MaxConnectionsPerDestination < 0) context.Error(path + ".maxConnectionsPerDestination", "maxConnectionsPerDestination cannot be negative", "0 means unlimited");
        var consistentHash = CompileConsistentHash(context, options, path);
        CompileAffinity(context, options, path);
        var upstreamTls = Upstream.UpstreamCompiler.CompileTls(context, name, options, path);
        var upstreamCredentials = Upstream.UpstreamCompiler.CompileCredentials(context, name, options, path);

        var compiled = new CompiledCluster
        {
            Name = name,
            Retry = CompiledRetryPolicy.Compile(context, options.Retries, path + ".retries"),
            UnhealthyThreshold = active?.UnhealthyThreshold ?? 2,
            HealthyThreshold = active?.HealthyThreshold ?? 1,
            PassiveFailures = passive?.Failures ?? 3,
            PassiveReactivation = passive?.Reactivation ?? TimeSpan.FromSeconds(30),
            FailureStatusCodes = (passive?.StatusCodes ?? []).ToFrozenSet(),
            Concurrency = Traffic.TrafficCompiler.CompileConcurrency(context, options.Concurrency, path + ".concurrency", "cluster:" + name),
            ConsistentHash = consistentHash,
            Tls = upstreamTls,
            Credentials = upstreamCredentials,
            ResponseHeaders = Observability.ResponseHeadersCompiler.Compile(context, options.ResponseHeaders, path + ".responseHeaders"),
            ConsecutiveFailures = passive is not null,
            Outliers = OutlierCompiler.Compile(context, options.HealthCheck.OutlierDetection, destinations.Count, path + ".healthCheck.outlierDetection"),
        };

        return (compiled, ToProxy(name, options, destinations, upstreamTls, upstreamCredentials));
    }

    private static ClusterConfig ToProxy(string name, ClusterOptions options, Dictionary<string, DestinationConfig> destinations, Upstream.UpstreamTlsSettings? upstreamTls, Upstream.ClientCredentialsSettings? upstreamCredentials)
    {
        var active = options.HealthCheck.Active;
        var passive = options.HealthCheck.Passive;
        var outliers = options.HealthCheck.OutlierDetection;
        return new ClusterConfig
        {
            ClusterId = name,
            LoadBalancingPolicy = options.LoadBalancing switch
            {
                LoadBalancingPolicy.RoundRobin => Yarp.ReverseProxy.LoadBalancing.LoadBalancingPolicies.RoundRobin,
                LoadBalancingPolicy.LeastRequests => Yarp.ReverseProxy.LoadBalancing.LoadBalancingPolicies.LeastRequests,
                LoadBalancingPolicy.PowerOfTwoChoices => Yarp.ReverseProxy.LoadBalancing.LoadBalancingPolicies.PowerOfTwoChoices,
                LoadBalancingPolicy.Random => Yarp.ReverseProxy.LoadBalancing.LoadBalancingPolicies.Random,
                LoadBalancingPolicy.ConsistentHash => ConsistentHashPolicy.PolicyName,
                _ => Yarp.ReverseProxy.LoadBalancing.LoadBalancingPolicies.FirstAlphabetical,
            },
            Destinations = destinations,
            SessionAffinity = options.Affinity is not { } affinity ? null : new SessionAffinityConfig
            {
                Enabled = true,
                // A hash of the destination's name, not YARP's data-protected "Cookie": every instance of a fleet
                // reads every other's cookie without sharing a key ring.
                Policy = Yarp.ReverseProxy.SessionAffinity.SessionAffinityConstants.Policies.HashCookie,
                FailurePolicy = affinity.FailurePolicy == AffinityFailurePolicy.Return503
                    ? Yarp.ReverseProxy.SessionAffinity.SessionAffinityConstants.FailurePolicies.Return503Error
                    : Yarp.ReverseProxy.SessionAffinity.SessionAffinityConstants.FailurePolicies.Redistribute,
                AffinityKeyName = affinity.Cookie,
                Cookie = new SessionAffinityCookieConfig
                {
                    HttpOnly = true,
                    SameSite = Microsoft.AspNetCore.Http.SameSiteMode.Lax,
                    SecurePolicy = Microsoft.AspNetCore.Http.CookieSecurePolicy.SameAsRequest,
                    MaxAge = affinity.MaxAge,
                    Path = "/",
                },
            },
            HealthCheck = new HealthCheckConfig
            {
                AvailableDestinationsPolicy = AvailableDestinationsPolicy,
                Active = active is null ? null : new ActiveHealthCheckConfig
                {
                    Enabled = true,
                    Interval = active.Interval,
                    Timeout = active.Timeout,
                    Path = active.Path,
                    Policy = ActiveHealthPolicy,
                },
                // Outlier ejections are passive ejections too (each with its own period): one policy sees every
                // proxied request and serves both.
                Passive = passive is null && outliers is null ? null : new PassiveHealthCheckConfig
                {
                    Enabled = true,
                    Policy = PassiveHealthPolicy,
                    ReactivationPeriod = passive?.Reactivation ?? outliers!.BaseEjectionTime,
                },
            },
            HttpClient = new HttpClientConfig
            {
                MaxConnectionsPerServer = options.MaxConnectionsPerDestination > 0 ? options.MaxConnectionsPerDestination : null,
                EnableMultipleHttp2Connections = true,
            },
            HttpRequest = new Yarp.ReverseProxy.Forwarder.ForwarderRequestConfig
            {
                ActivityTimeout = options.Timeouts.Request,
                Version = options.HttpVersion == UpstreamHttpVersion.Http2 ? HttpVersion.Version20 : HttpVersion.Version11,
                VersionPolicy = options.HttpVersion == UpstreamHttpVersion.Http2 ? HttpVersionPolicy.RequestVersionExact : HttpVersionPolicy.RequestVersionOrLower,
            },
            Metadata = Upstream.UpstreamCompiler.WithMetadata(new Dictionary<string, string>
            {
                [ConnectTimeoutMetadata] = options.Timeouts.Connect.TotalMilliseconds.ToString(CultureInfo.InvariantCulture),
            }, upstreamTls, upstreamCredentials),
        };
    }
}
