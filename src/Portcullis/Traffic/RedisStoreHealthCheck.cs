using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Portcullis.Traffic;

/// <summary>
/// Readiness of the counters' Redis store (stores.redis), from its circuit breaker's state: no round trip
/// per probe. Degraded while down: policies fall back to their onStoreFailure.
/// </summary>
internal sealed class RedisStoreHealthCheck(TrafficStores traffic) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(StoreCheck.Of(traffic.Redis?.Health, "stores.redis"));
}

/// <summary>A Redis store's health as a check result (shared with the session store's check).</summary>
internal static class StoreCheck
{
    public static HealthCheckResult Of(State.StoreHealth? health, string what) => health switch
    {
        null => HealthCheckResult.Healthy("not configured"),
        { State: State.StoreState.Up } => HealthCheckResult.Healthy(),
        _ => HealthCheckResult.Degraded($"{what} is down since {health.Since:O}" + (health.LastError is { } error ? ": " + error : "")),
    };
}
