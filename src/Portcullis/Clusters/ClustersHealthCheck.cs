using Microsoft.Extensions.Diagnostics.HealthChecks;
using Yarp.ReverseProxy;

namespace Portcullis.Clusters;

/// <summary>
/// Readiness of the clusters: degraded while a cluster with destinations has none available (all unhealthy
/// or drained), when its routes answer 503. YARP's own health state: no probe of its own.
/// </summary>
internal sealed class ClustersHealthCheck(IProxyStateLookup proxyState) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        List<string>? empty = null;
        foreach (var cluster in proxyState.GetClusters())
        {
            if (!cluster.Destinations.IsEmpty && cluster.DestinationsState.AvailableDestinations.Count == 0) (empty ??= []).Add(cluster.ClusterId);
        }

        if (empty is null) return Task.FromResult(HealthCheckResult.Healthy());
        empty.Sort(StringComparer.Ordinal);
        return Task.FromResult(HealthCheckResult.Degraded("no available destination in cluster " + string.Join(", ", empty)));
    }
}
