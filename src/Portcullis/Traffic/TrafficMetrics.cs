using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Portcullis.Observability;
using Portcullis.State;

namespace Portcullis.Traffic;

/// <summary>The traffic capability's instrument: whether the Redis counter store answers (absent without Redis).</summary>
internal sealed class TrafficMetrics(IServiceProvider services) : IMetricsContributor
{
    public void Register(Meter meter) =>
        meter.CreateObservableGauge("portcullis.redis.up", ObserveRedis, "{store}", "1 while the Redis counter store answers, 0 while it is down; absent without Redis.");

    private IEnumerable<Measurement<int>> ObserveRedis()
    {
        if (services.GetService<TrafficStores>()?.Redis is not { } redis) yield break;
        yield return new Measurement<int>(redis.Health.State == StoreState.Up ? 1 : 0);
    }
}
