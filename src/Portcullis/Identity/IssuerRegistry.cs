using System.Collections.Frozen;
using Microsoft.Extensions.Logging;

namespace Portcullis.Identity;

/// <summary>
/// Keeps one key cache per issuer across reloads: an issuer whose key source did not change keeps its
/// cache (and its keys); new issuers start fetching; removed ones stop.
/// </summary>
internal sealed class IssuerRegistry : IDisposable
{
    private readonly IHttpClientFactory _httpClients;
    private readonly TimeProvider _time;
    private readonly ILoggerFactory _loggers;
    private readonly Lock _lock = new();
    private volatile FrozenDictionary<string, IssuerKeyCache> _caches = FrozenDictionary<string, IssuerKeyCache>.Empty;

    public IssuerRegistry(IHttpClientFactory httpClients, TimeProvider time, ILoggerFactory loggers)
    {
        _httpClients = httpClients;
        _time = time;
        _loggers = loggers;
    }

    public const string HttpClientName = "Portcullis.Identity";

    public IReadOnlyDictionary<string, IssuerKeyCache> Caches => _caches;

    public IssuerKeyCache? Get(string issuerName) => _caches.GetValueOrDefault(issuerName);

    /// <summary>Brings the caches in line with a new snapshot's issuers.</summary>
    public void Sync(IEnumerable<IssuerKeySource> sources)
    {
        lock (_lock)
        {
            var next = new Dictionary<string, IssuerKeyCache>(StringComparer.Ordinal);
            var current = _caches;
            foreach (var source in sources)
            {
                IssuerKeySet? seed = null;
                if (current.TryGetValue(source.Name, out var existing))
                {
                    if (existing.Source == source)
                    {
                        next[source.Name] = existing;

                        // A reload may have been caused by the JWKS file changing: read it again now.
                        if (source.JwksFile is not null) existing.TriggerRefresh();
                        continue;
                    }

                    // Only timings changed: keep serving the keys we have (with their age) instead of
                    // answering 503 until the new cache's first fetch, or until the provider returns.
                    if (SameLocation(existing.Source, source)) seed = existing.Keys;
                }

                var logger = _loggers.CreateLogger("Portcullis.Identity.IssuerKeyCache");
                next[source.Name] = new IssuerKeyCache(source, _httpClients.CreateClient(HttpClientName), _time, logger, seed);
            }

            _caches = next.ToFrozenDictionary(StringComparer.Ordinal);
            foreach (var (name, cache) in current)
            {
                if (!next.TryGetValue(name, out var kept) || !ReferenceEquals(kept, cache)) cache.Dispose();
            }
        }
    }

    private static bool SameLocation(IssuerKeySource a, IssuerKeySource b) =>
        string.Equals(a.Authority, b.Authority, StringComparison.Ordinal)
        && string.Equals(a.JwksUri, b.JwksUri, StringComparison.Ordinal)
        && string.Equals(a.JwksFile, b.JwksFile, StringComparison.Ordinal);

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var cache in _caches.Values) cache.Dispose();
            _caches = FrozenDictionary<string, IssuerKeyCache>.Empty;
        }
    }
}

/// <summary>
/// Before the listeners open, give every issuer one chance to fetch its keys (as Envoy does for JWKS),
/// so the first requests are not refused while keys load; an unreachable issuer does not block start-up.
/// </summary>
internal sealed class IssuerStartup(IssuerRegistry registry) : Microsoft.Extensions.Hosting.IHostedService
{
    private static readonly TimeSpan MaxWait = TimeSpan.FromSeconds(5);

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var attempts = registry.Caches.Values.Select(c => c.FirstAttempt).ToArray();
        if (attempts.Length == 0) return;
        await Task.WhenAny(Task.WhenAll(attempts), Task.Delay(MaxWait, cancellationToken)).ConfigureAwait(false);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
