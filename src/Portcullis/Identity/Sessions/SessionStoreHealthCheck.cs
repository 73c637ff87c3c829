using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Portcullis.Identity.Sessions;

/// <summary>
/// Readiness of the session store when it is Redis (identity.sessions.store: redis, its own connection):
/// degraded while down, when sign-ins and session routes answer 503. The in-process store is always ready.
/// </summary>
internal sealed class SessionStoreHealthCheck(SessionRuntime runtime) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(runtime.Redis is { } redis
            ? Traffic.StoreCheck.Of(redis.Health, "the session store (Redis)")
            : HealthCheckResult.Healthy(runtime.Sessions is null ? "not configured" : "in process"));
}
