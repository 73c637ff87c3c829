using System.Collections.Frozen;
using Microsoft.Extensions.Logging;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Identity;

/// <summary>
/// Keeps one key cache per issuer across reloads: an issuer whose key source did not change keeps its
/// cache (and its keys); new issuers start fetching; removed ones stop.
/// </summary>
internal sealed class IssuerRegistry : IDisposable, ISnapshotParticipant
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

    public string Name => "issuers";

    /// <summary>The issuers of a snapshot whose keys are fetched (those verified only with a shared secret have none).</summary>
    public static IEnumerable<IssuerKeySource> Fetched(GatewaySnapshot snapshot) =>
        snapshot.Issuers.Select(i => i.KeySource).Where(k => k.Authority is not null || k.JwksUri is not null || k.JwksFile is not null);

    /// <summary>Brings the caches in line with a snapshot's issuers at once (start-up).</summary>
    public void Sync(IEnumerable<IssuerKeySource> sources) => Plan(sources).Commit();

    /// <summary>
    /// New issuers' caches are made (and start fetching) here, before their routes go live; the commit
    /// publishes them and stops the caches of removed or changed issuers. Unchanged issuers keep their keys.
    /// </summary>
    public PreparedChange Prepare(GatewaySnapshot next, GatewaySnapshot current) => Plan(Fetched(next));

    private PreparedChange Plan(IEnumerable<IssuerKeySource> sources)
    {
        var next = new Dictionary<string, IssuerKeyCache>(StringComparer.Ordinal);
        var created = new List<IssuerKeyCache>();
        var refresh = new List<IssuerKeyCache>();
        var current = _caches;
        foreach (var source in sources)
        {
            IssuerKeySet? seed = null;
            if (current.TryGetValue(source.Name, out var existing))
            {
                if (existing.Source == source)
                {
                    next[source.Name] = existing;

                    // A reload may have been caused by the JWKS file changing: read it again (at commit).
                    if (source.JwksFile is not null) refresh.Add(existing);
                    continue;
                }

                // Only timings changed: keep serving the keys we have (with their age) instead of
                // answering 503 until the new cache's first fetch, or until the provider returns.
                if (SameLocation(existing.Source, source)) seed = existing.Keys;
            }

            var logger = _loggers.CreateLogger("Portcullis.Identity.IssuerKeyCache");
            var cache = new IssuerKeyCache(source, _httpClients.CreateClient(HttpClientName), _time, logger, seed);
            next[source.Name] = cache;
            created.Add(cache);
        }

        void Commit()
        {
            lock (_lock)
            {
                var replaced = _caches;
                _caches = next.ToFrozenDictionary(StringComparer.Ordinal);
                foreach (var (name, cache) in replaced)
                {
                    if (!next.TryGetValue(name, out var kept) || !ReferenceEquals(kept, cache)) cache.Dispose();
                }
            }

            foreach (var cache in refresh) cache.TriggerRefresh();
        }

        void Abort()
        {
            foreach (var cache in created) cache.Dispose();
        }

        return created.Count == 0 && next.Count == current.Count ? PreparedChange.Unchanged(Commit) : PreparedChange.Applied(Commit, Abort);
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
