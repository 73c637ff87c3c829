using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Portcullis.Observability;

namespace Portcullis.Identity;

/// <summary>
/// The identity capability's instruments: issuer key sets (JWKS fetches, failures, age, availability) and the
/// token caches. The services are looked up when a reader collects, so a host without them has no series.
/// </summary>
internal sealed class IdentityMetrics(IServiceProvider services, TimeProvider time) : IMetricsContributor
{
    public void Register(Meter meter)
    {
        meter.CreateObservableCounter("portcullis.jwks.fetches", ObserveJwksFetches, "{fetch}", "Key-set (JWKS) fetch attempts per issuer.");
        meter.CreateObservableCounter("portcullis.jwks.fetch.failures", ObserveJwksFailures, "{fetch}", "Failed key-set (JWKS) fetches per issuer.");
        meter.CreateObservableGauge("portcullis.jwks.age", ObserveJwksAge, "s", "Seconds since the issuer's keys were last fetched successfully (staleness).");
        meter.CreateObservableGauge("portcullis.jwks.available", ObserveJwksAvailable, "{issuer}", "1 while the issuer's keys are usable, 0 before the first fetch or after staleFor.");
        meter.CreateObservableCounter("portcullis.token_cache.lookups", ObserveTokenCaches, "{lookup}", "Token cache lookups by cache (jwt, introspection) and result (hit, miss).");
    }

    private IEnumerable<Measurement<long>> ObserveJwksFetches() => Issuers(c => c.Fetches);

    private IEnumerable<Measurement<long>> ObserveJwksFailures() => Issuers(c => c.Failures);

    private IEnumerable<Measurement<long>> Issuers(Func<IssuerKeyCache, long> value)
    {
        if (services.GetService<IssuerRegistry>() is not { } issuers) yield break;
        foreach (var (name, cache) in issuers.Caches) yield return new Measurement<long>(value(cache), new KeyValuePair<string, object?>("issuer", name));
    }

    private IEnumerable<Measurement<double>> ObserveJwksAge()
    {
        if (services.GetService<IssuerRegistry>() is not { } issuers) yield break;
        var now = time.GetUtcNow();
        foreach (var (name, cache) in issuers.Caches)
        {
            if (cache.Keys is { } keys) yield return new Measurement<double>(Math.Max(0, (now - keys.FetchedAt).TotalSeconds), new KeyValuePair<string, object?>("issuer", name));
        }
    }

    private IEnumerable<Measurement<int>> ObserveJwksAvailable()
    {
        if (services.GetService<IssuerRegistry>() is not { } issuers) yield break;
        foreach (var (name, cache) in issuers.Caches)
        {
            yield return new Measurement<int>(cache.Availability == KeyAvailability.Available ? 1 : 0, new KeyValuePair<string, object?>("issuer", name));
        }
    }

    private IEnumerable<Measurement<long>> ObserveTokenCaches()
    {
        var jwt = services.GetService<JwtAuthenticator>()?.CacheMetrics;
        var introspection = services.GetService<TokenIntrospector>()?.CacheMetrics;
        foreach (var (name, metrics) in new[] { ("jwt", jwt), ("introspection", introspection) })
        {
            if (metrics is null) continue;
            yield return new Measurement<long>(metrics.Hits, new TagList { { "cache", name }, { "result", "hit" } });
            yield return new Measurement<long>(metrics.Misses, new TagList { { "cache", name }, { "result", "miss" } });
        }
    }
}
