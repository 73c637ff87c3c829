using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Admin;

/// <summary>
/// The /readyz answer: the shape it always had (status, generation, each issuer's key state, the Redis
/// store) plus `checks`, one entry per capability's health check (its status and, when not healthy, why).
/// </summary>
internal sealed class ReadinessWriter(SnapshotStore store, Identity.IssuerRegistry issuers, Identity.Sessions.SessionDiscoveryMonitor sessionProviders, Traffic.TrafficStores traffic,
    IHostApplicationLifetime lifetime)
{
    public Task WriteAsync(HttpContext context, HealthReport report)
    {
        var snapshot = store.Current;
        var redis = traffic.Redis?.Health;
        var status = lifetime.ApplicationStopping.IsCancellationRequested ? "stopping" : report.Status switch
        {
            HealthStatus.Healthy => "ready",
            HealthStatus.Degraded => "degraded",
            _ => "unhealthy",
        };
        return AdminApi.Json(context, context.Response.StatusCode, w =>
        {
            w.WriteString("status", status);
            w.WriteNumber("generation", snapshot.Generation);
            w.WriteString("loadedAt", snapshot.LoadedAt);
            WriteIssuers(w);
            WriteSessionProviders(w);
            if (redis is not null)
            {
                w.WritePropertyName("redis");
                AdminApi.WriteStoreHealth(w, redis);
            }

            w.WriteStartObject("checks");
            foreach (var (name, entry) in report.Entries)
            {
                w.WriteStartObject(name);
                w.WriteString("status", entry.Status switch
                {
                    HealthStatus.Healthy => "healthy",
                    HealthStatus.Degraded => "degraded",
                    _ => "unhealthy",
                });
                if (entry.Description is { } description) w.WriteString("description", description);
                w.WriteEndObject();
            }

            w.WriteEndObject();
        });
    }

    private void WriteIssuers(Utf8JsonWriter w)
    {
        w.WriteStartArray("issuers");
        foreach (var (name, cache) in issuers.Caches.OrderBy(c => c.Key, StringComparer.Ordinal))
        {
            w.WriteStartObject();
            w.WriteString("name", name);
            w.WriteString("keys", cache.Availability switch
            {
                Identity.KeyAvailability.Available => "available",
                Identity.KeyAvailability.NotYetLoaded when cache.Failures > 0 => "not loaded: no fetch has succeeded yet (see lastError)",
                Identity.KeyAvailability.NotYetLoaded => "not loaded yet: the provider has not answered",
                _ => "expired: the provider has been unreachable longer than staleFor",
            });
            // Only keys we may verify with are kept (asymmetric, `use: sig`, RSA >= 2048 bits): usable ones.
            w.WriteNumber("usableKeys", cache.Keys?.All.Length ?? 0);
            if (cache.Keys is { } keys)
            {
                w.WriteString("fetchedAt", keys.FetchedAt);
                w.WriteNumber("keyCount", keys.All.Length);
            }

            w.WriteNumber("fetches", cache.Fetches);
            w.WriteNumber("failures", cache.Failures);
            if (cache.FailingSince is { } failingSince) w.WriteString("failingSince", failingSince);
            if (cache.LastError is { } lastError) w.WriteString("lastError", lastError);
            w.WriteEndObject();
        }

        w.WriteEndArray();
    }

    // Each session provider (identity.sessions): whether its discovery document can be fetched from here.
    private void WriteSessionProviders(Utf8JsonWriter w)
    {
        var any = false;
        foreach (var (provider, status) in sessionProviders.Providers)
        {
            if (!any) w.WriteStartArray("sessionProviders");
            any = true;
            w.WriteStartObject();
            w.WriteString("name", provider.Name);
            w.WriteString("authority", provider.Authority.AbsoluteUri);
            w.WriteString("discovery", status.State switch
            {
                Identity.Sessions.DiscoveryState.Ok => "ok",
                Identity.Sessions.DiscoveryState.Failed => "failed",
                _ => "pending",
            });
            if (status.Since is { } since) w.WriteString("since", since);
            if (status.CheckedAt is { } checkedAt) w.WriteString("checkedAt", checkedAt);
            if (status.LastError is { } lastError) w.WriteString("lastError", lastError);
            w.WriteEndObject();
        }

        if (any) w.WriteEndArray();
    }
}

/// <summary>Unhealthy once the host is stopping: /readyz answers 503 so load balancers stop sending traffic.</summary>
internal sealed class LifetimeHealthCheck(IHostApplicationLifetime lifetime) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(lifetime.ApplicationStopping.IsCancellationRequested ? HealthCheckResult.Unhealthy("the gateway is stopping") : HealthCheckResult.Healthy());
}
