using System.Collections.Frozen;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Upstream;

/// <summary>
/// Every cluster's client-credentials token source, keyed by its settings' fingerprint (also in the cluster's
/// YARP metadata). Follows the snapshot: unchanged settings keep their source and cached token; new sources
/// fetch at once in the background; removed ones stop refreshing.
/// </summary>
internal sealed class UpstreamCredentialsStore : IDisposable, ISnapshotParticipant
{
    private readonly IHttpClientFactory _clients;
    private readonly TimeProvider _time;
    private readonly Func<string, string?> _environment;
    private readonly ILoggerFactory _loggers;
    private readonly Lock _lock = new();
    private volatile FrozenDictionary<string, ClientCredentialsTokenSource> _sources = FrozenDictionary<string, ClientCredentialsTokenSource>.Empty;
    private bool _disposed;

    public UpstreamCredentialsStore(SnapshotStore store, PortcullisOptions options, IHttpClientFactory clients, TimeProvider time, ILoggerFactory loggers)
    {
        _clients = clients;
        _time = time;
        _environment = options.Environment ?? Environment.GetEnvironmentVariable;
        _loggers = loggers;
        Sync(store.Current);
    }

    public string Name => "upstream-credentials";

    public ClientCredentialsTokenSource? Get(string fingerprint) => _sources.GetValueOrDefault(fingerprint);

    /// <summary>Start-up: the first snapshot's token sources.</summary>
    public void Sync(GatewaySnapshot snapshot) => Plan(snapshot).Commit();

    /// <summary>
    /// New sources are made here and start fetching at the commit; removed ones stop refreshing then.
    /// Unchanged settings keep their source and cached token.
    /// </summary>
    public PreparedChange Prepare(GatewaySnapshot next, GatewaySnapshot current) => Plan(next);

    private PreparedChange Plan(GatewaySnapshot snapshot)
    {
        var existing = _sources;
        var next = new Dictionary<string, ClientCredentialsTokenSource>(StringComparer.Ordinal);
        var created = new List<ClientCredentialsTokenSource>();
        foreach (var settings in snapshot.UpstreamCredentials)
        {
            if (next.ContainsKey(settings.Fingerprint)) continue;
            if (!existing.TryGetValue(settings.Fingerprint, out var source))
            {
                source = new ClientCredentialsTokenSource(settings, _clients, _time, _environment, _loggers.CreateLogger<ClientCredentialsTokenSource>());
                created.Add(source);
            }

            next[settings.Fingerprint] = source;
        }

        void Commit()
        {
            List<ClientCredentialsTokenSource> removed;
            lock (_lock)
            {
                if (_disposed) return;
                removed = [.. _sources.Where(s => !next.ContainsKey(s.Key)).Select(s => s.Value)];
                _sources = next.ToFrozenDictionary(StringComparer.Ordinal);
                foreach (var source in next.Values) source.Start();
            }

            // A request of the previous snapshot may still read a removed source's cached token; it only stops refreshing.
            foreach (var source in removed) source.Dispose();
        }

        void Abort()
        {
            foreach (var source in created) source.Dispose();
        }

        return created.Count == 0 && next.Count == existing.Count ? PreparedChange.Unchanged(Commit) : PreparedChange.Applied(Commit, Abort);
    }

    /// <summary>GET /admin/upstream-credentials.</summary>
    public void WriteStatus(Utf8JsonWriter w)
    {
        w.WriteStartArray("clusters");
        foreach (var source in _sources.Values.OrderBy(s => s.Settings.Cluster, StringComparer.Ordinal)) source.WriteStatus(w);
        w.WriteEndArray();
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
        }

        foreach (var source in _sources.Values) source.Dispose();
    }
}
