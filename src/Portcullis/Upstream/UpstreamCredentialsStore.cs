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
internal sealed class UpstreamCredentialsStore : IDisposable
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
        store.Swapping += Sync;
    }

    public ClientCredentialsTokenSource? Get(string fingerprint) => _sources.GetValueOrDefault(fingerprint);

    public void Sync(GatewaySnapshot snapshot)
    {
        List<ClientCredentialsTokenSource> removed;
        lock (_lock)
        {
            if (_disposed) return;
            var next = new Dictionary<string, ClientCredentialsTokenSource>(StringComparer.Ordinal);
            foreach (var settings in snapshot.Clusters.Values.Select(c => c.Credentials).OfType<ClientCredentialsSettings>())
            {
                if (!_sources.TryGetValue(settings.Fingerprint, out var source))
                {
                    source = new ClientCredentialsTokenSource(settings, _clients, _time, _environment, _loggers.CreateLogger<ClientCredentialsTokenSource>());
                }

                next[settings.Fingerprint] = source;
            }

            removed = [.. _sources.Where(s => !next.ContainsKey(s.Key)).Select(s => s.Value)];
            _sources = next.ToFrozenDictionary(StringComparer.Ordinal);
            foreach (var source in next.Values) source.Start();
        }

        // A request of the previous snapshot may still read a removed source's cached token; it only stops refreshing.
        foreach (var source in removed) source.Dispose();
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
