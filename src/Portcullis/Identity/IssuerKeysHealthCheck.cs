using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Portcullis.Identity;

/// <summary>
/// Readiness of the issuers' key caches: degraded while an issuer's keys are not loaded, have expired, or its
/// latest refresh failed (its last good keys serve meanwhile, but the stale window is running out). Never
/// unhealthy, even with no usable keys: its routes answer 503 on their own while the other routes serve, and an
/// identity provider down for the whole fleet would otherwise take every instance out of rotation.
/// </summary>
internal sealed class IssuerKeysHealthCheck(IssuerRegistry issuers) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        List<string>? problems = null;
        foreach (var (name, cache) in issuers.Caches.OrderBy(c => c.Key, StringComparer.Ordinal))
        {
            var problem = cache.Availability switch
            {
                KeyAvailability.NotYetLoaded => "no usable keys: not loaded yet",
                KeyAvailability.Expired => "no usable keys: expired",
                _ => cache.Failing ? "refresh failing, serving the last good keys" : null,
            };
            if (problem is not null && cache.LastError is { } error) problem += $" ({error})";
            if (problem is not null) (problems ??= []).Add($"issuer {name}: {problem}");
        }

        return Task.FromResult(problems is null ? HealthCheckResult.Healthy() : HealthCheckResult.Degraded(string.Join("; ", problems)));
    }
}
