using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Portcullis.Observability;
using Yarp.ReverseProxy;
using Yarp.ReverseProxy.Health;
using Yarp.ReverseProxy.Model;

namespace Portcullis.Clusters;

/// <summary>The clusters' instrument: each destination's health as YARP sees it, or drained (admin API).</summary>
internal sealed class ClusterMetrics(IServiceProvider services) : IMetricsContributor
{
    private static readonly string[] HealthStates = ["healthy", "unhealthy", "unknown", "drained"];

    public void Register(Meter meter) =>
        meter.CreateObservableGauge("portcullis.upstream.destination.health", ObserveDestinations, "{destination}",
            "1 for the destination's current state (healthy, unhealthy, unknown, drained), 0 for the others, by cluster and destination.");

    private IEnumerable<Measurement<int>> ObserveDestinations()
    {
        var proxy = services.GetService<IProxyStateLookup>();
        if (proxy is null) yield break;
        var drains = services.GetService<DrainRegistry>();
        foreach (var cluster in proxy.GetClusters())
        {
            foreach (var destination in cluster.Destinations.Values)
            {
                var state = drains?.IsDrained(cluster.ClusterId, destination.DestinationId) == true ? "drained" : HealthOf(destination);
                foreach (var name in HealthStates)
                {
                    yield return new Measurement<int>(name == state ? 1 : 0, new TagList
                    {
                        { "cluster", cluster.ClusterId },
                        { "destination", destination.DestinationId },
                        { "state", name },
                    });
                }
            }
        }
    }

    // Either check saying unhealthy wins; YARP routes to Unknown destinations (no checks, or none yet).
    private static string HealthOf(DestinationState destination)
    {
        var health = destination.Health;
        if (health.Active == DestinationHealth.Unhealthy || health.Passive == DestinationHealth.Unhealthy) return "unhealthy";
        if (health.Active == DestinationHealth.Healthy || health.Passive == DestinationHealth.Healthy) return "healthy";
        return "unknown";
    }
}
