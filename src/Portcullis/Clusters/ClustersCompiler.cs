using System.Collections.Frozen;
using System.Globalization;
using System.Net;
using Portcullis.Configuration;
using Yarp.ReverseProxy.Configuration;

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

    private static (CompiledCluster Compiled, ClusterConfig Proxy) CompileCluster(CompileContext context, string name, ClusterOptions options, string path, Dictionary<string, DestinationConfig> destinations)
    {
        var active = options.HealthCheck.Active;
        var passive = options.HealthCheck.Passive;
        if (options.Timeouts.Connect <= TimeSpan.Zero) context.Error(path + ".timeouts.connect", "connect timeout must be greater than zero", "e.g. connect: 5s");
        if (options.Timeouts.Request <= TimeSpan.Zero) context.Error(path + ".timeouts.request", "request timeout must be greater than zero", "e.g. request: 100s");
        if (options.Retries < 0) context.Error(path + ".retries", "retries cannot be negative", "0 disables retries");
        if (options.MaxConnectionsPerDestination < 0) context.Error(path + ".maxConnectionsPerDestination", "maxConnectionsPerDestination cannot be negative", "0 means unlimited");
        var upstreamTls = Upstream.UpstreamCompiler.CompileTls(context, name, options, path);
        var upstreamCredentials = Upstream.UpstreamCompiler.CompileCredentials(context, name, options, path);

        var compiled = new CompiledCluster
        {
            Name = name,
            Retries = options.Retries,
            UnhealthyThreshold = active?.UnhealthyThreshold ?? 2,
            HealthyThreshold = active?.HealthyThreshold ?? 1,
            PassiveFailures = passive?.Failures ?? 3,
            PassiveReactivation = passive?.Reactivation ?? TimeSpan.FromSeconds(30),
            FailureStatusCodes = (passive?.StatusCodes ?? []).ToFrozenSet(),
            Concurrency = Traffic.TrafficCompiler.CompileConcurrency(context, options.Concurrency, path + ".concurrency", "cluster:" + name),
            Tls = upstreamTls,
            Credentials = upstreamCredentials,
            ResponseHeaders = Observability.ResponseHeadersCompiler.Compile(context, options.ResponseHeaders, path + ".responseHeaders"),
        };

        return (compiled, ToProxy(name, options, destinations, upstreamTls, upstreamCredentials));
    }

    private static ClusterConfig ToProxy(string name, ClusterOptions options, Dictionary<string, DestinationConfig> destinations, Upstream.UpstreamTlsSettings? upstreamTls, Upstream.ClientCredentialsSettings? upstreamCredentials)
    {
        var active = options.HealthCheck.Active;
        var passive = options.HealthCheck.Passive;
        return new ClusterConfig
        {
            ClusterId = name,
            LoadBalancingPolicy = options.LoadBalancing switch
            {
                LoadBalancingPolicy.RoundRobin => Yarp.ReverseProxy.LoadBalancing.LoadBalancingPolicies.RoundRobin,
                LoadBalancingPolicy.LeastRequests => Yarp.ReverseProxy.LoadBalancing.LoadBalancingPolicies.LeastRequests,
                LoadBalancingPolicy.PowerOfTwoChoices => Yarp.ReverseProxy.LoadBalancing.LoadBalancingPolicies.PowerOfTwoChoices,
                LoadBalancingPolicy.Random => Yarp.ReverseProxy.LoadBalancing.LoadBalancingPolicies.Random,
                _ => Yarp.ReverseProxy.LoadBalancing.LoadBalancingPolicies.FirstAlphabetical,
            },
            Destinations = destinations,
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
                Passive = passive is null ? null : new PassiveHealthCheckConfig
                {
                    Enabled = true,
                    Policy = PassiveHealthPolicy,
                    ReactivationPeriod = passive.Reactivation,
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
