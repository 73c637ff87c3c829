using System.Collections.Frozen;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Portcullis.Configuration;
using Portcullis.Files;
using Portcullis.Pipeline;

namespace Portcullis.Upstream;

/// <summary>
/// Every cluster's upstream TLS runtime, keyed by its settings' fingerprint (the cluster's YARP metadata
/// carries the same key, so a changed `tls` section gets a new HTTP client). Follows the snapshot: unchanged
/// settings keep their runtime (and its loaded certificate). Watches the CA and client-certificate files
/// (file events plus a 2 s stat poll); a good replacement is swapped in for new connections, a bad one is
/// logged and reported while the previous certificate keeps being presented.
/// </summary>
internal sealed partial class UpstreamTlsStore : IDisposable, ISnapshotParticipant
{
    private static readonly TimeSpan ExpiryCheckInterval = TimeSpan.FromHours(1);
    private static readonly TimeSpan Debounce = TimeSpan.FromMilliseconds(250);
    private static readonly TimeSpan ExpiryWarning = TimeSpan.FromDays(14);

    /// <summary>Pooled upstream connections of a TLS cluster are closed after this, so a rotation reaches every connection within it.</summary>
    public static readonly TimeSpan ConnectionLifetime = TimeSpan.FromMinutes(5);

    private readonly TimeProvider _time;
    private readonly ILogger<UpstreamTlsStore> _logger;
    private readonly Func<string, string?> _environment;
    private readonly Lock _lock = new();
    private volatile FrozenDictionary<string, ClusterTls> _clusters = FrozenDictionary<string, ClusterTls>.Empty;
    private FrozenSet<string> _files = FrozenSet<string>.Empty;
    private FileChangeWatcher? _watcher;
    private ITimer? _expiryTimer;
    private bool _disposed;

    public UpstreamTlsStore(SnapshotStore store, PortcullisOptions options, TimeProvider time, ILogger<UpstreamTlsStore> logger)
        : this(options.Environment ?? Environment.GetEnvironmentVariable, time, logger)
    {
        Sync(store.Current);
    }

    internal UpstreamTlsStore(Func<string, string?> environment, TimeProvider time, ILogger<UpstreamTlsStore> logger)
    {
        _environment = environment;
        _time = time;
        _logger = logger;
    }

    public ClusterTls? Get(string fingerprint) => _clusters.GetValueOrDefault(fingerprint);

    public IEnumerable<ClusterTls> Clusters => _clusters.Values;

    public string Name => "upstream-tls";

    /// <summary>Makes a runtime for every cluster with `tls` in the snapshot (reusing unchanged ones), at start-up.</summary>
    public void Sync(GatewaySnapshot snapshot)
    {
        lock (_lock)
        {
            if (_disposed) return;
            var now = _time.GetUtcNow();
            var next = new Dictionary<string, ClusterTls>(StringComparer.Ordinal);
            foreach (var settings in snapshot.UpstreamTls)
            {
                next[settings.Fingerprint] = _clusters.TryGetValue(settings.Fingerprint, out var existing) ? existing : Create(settings, now);
            }

            Publish(next);
        }
    }

    /// <summary>
    /// Loads the files of new or changed `tls` sections. Validation loaded them moments ago: one that
    /// cannot be loaded now changed in between, and the reload is rejected (the running clusters keep
    /// theirs) rather than going live with a cluster that trusts nothing.
    /// </summary>
    public PreparedChange Prepare(GatewaySnapshot next, GatewaySnapshot current)
    {
        var now = _time.GetUtcNow();
        var clusters = new Dictionary<string, ClusterTls>(StringComparer.Ordinal);
        var created = new List<ClusterTls>();
        var existing = _clusters;
        foreach (var settings in next.UpstreamTls)
        {
            if (clusters.ContainsKey(settings.Fingerprint)) continue;
            if (existing.TryGetValue(settings.Fingerprint, out var kept))
            {
                clusters[settings.Fingerprint] = kept;
                continue;
            }

            var cluster = Create(settings, now);
            created.Add(cluster);
            if ((cluster.Trust.LastError ?? cluster.Client.LastError) is { } error)
            {
                Release(created);
                return PreparedChange.Failed($"cluster {settings.Cluster}: {error}");
            }

            clusters[settings.Fingerprint] = cluster;
        }

        void Commit()
        {
            lock (_lock)
            {
                if (!_disposed) Publish(clusters);
            }
        }

        return created.Count == 0 && clusters.Count == existing.Count
            ? PreparedChange.Unchanged(Commit)
            : PreparedChange.Applied(Commit, abort: () => Release(created));
    }

    /// <summary>
    /// Disposes the certificates loaded for runtimes that never went live (the reload was rejected): no
    /// connection was made with them, unlike a replaced certificate, which pooled connections may still use.
    /// </summary>
    internal static void Release(List<ClusterTls> neverPublished)
    {
        foreach (var cluster in neverPublished)
        {
            cluster.Client.Current?.Certificate.Dispose();
            if (cluster.Trust.Current is { } trust)
            {
                foreach (var root in trust.Roots) root.Dispose();
            }
        }
    }

    private void Publish(Dictionary<string, ClusterTls> next)
    {
        _clusters = next.ToFrozenDictionary(StringComparer.Ordinal);
        Watch();
    }

    private ClusterTls Create(UpstreamTlsSettings settings, DateTimeOffset now)
    {
        var stamps = Stamps(settings);
        var trust = new TrustState(null, null, null);
        if (settings.CaFile is { } ca)
        {
            // Validation loaded these moments ago; failing now means the file changed in between. The
            // cluster then trusts nothing (fails closed) until a good file arrives.
            var bundle = UpstreamFiles.LoadTrust(ca, now, out var error);
            if (bundle is null) Log.LoadFailed(_logger, "CA bundle", settings.Cluster, error!.Message);
            trust = new TrustState(bundle, error?.Message, error is null ? null : now);
        }

        var client = new ClientCertificateState(null, null, null);
        if (settings.ClientCertificate is { } source)
        {
            var loaded = UpstreamFiles.LoadClient(source, _environment, now, out var error);
            if (loaded is null) Log.LoadFailed(_logger, "client certificate", settings.Cluster, error!.Message);
            client = new ClientCertificateState(loaded, error?.Message, error is null ? null : now);
        }

        var cluster = new ClusterTls(settings, client, trust, _time, _logger) { Stamps = stamps };
        CheckExpiry(cluster, now);
        return cluster;
    }

    /// <summary>Checks every watched file now and reloads what changed (also run by the file watcher, after events or its poll).</summary>
    public void Refresh()
    {
        lock (_lock)
        {
            if (_disposed) return;
            var now = _time.GetUtcNow();
            foreach (var cluster in _clusters.Values)
            {
                // Stamped before reading: a file replaced while it is read differs again at the next look.
                var stamps = Stamps(cluster.Settings);
                if (!stamps.SequenceEqual(cluster.Stamps))
                {
                    cluster.Stamps = stamps;
                    Reload(cluster, now);
                }

                CheckExpiry(cluster, now);
            }
        }
    }

    private void Reload(ClusterTls cluster, DateTimeOffset now)
    {
        var settings = cluster.Settings;
        if (settings.CaFile is { } ca)
        {
            var state = cluster.Trust;
            var bundle = UpstreamFiles.LoadTrust(ca, now, out var error);
            if (bundle is null)
            {
                if (state.LastError != error!.Message) Log.ReloadRejected(_logger, "CA bundle", settings.Cluster, error.Message);
                cluster.Trust = state with { LastError = error.Message, LastErrorAt = now };
            }
            else if (bundle.ContentHash != state.Current?.ContentHash)
            {
                cluster.Trust = new TrustState(bundle, null, null);
                Log.TrustReloaded(_logger, settings.Cluster, bundle.Roots.Count);
            }
            else if (state.LastError is not null)
            {
                cluster.Trust = state with { LastError = null, LastErrorAt = null };
            }
        }

        if (settings.ClientCertificate is { } source)
        {
            var state = cluster.Client;
            var loaded = UpstreamFiles.LoadClient(source, _environment, now, out var error);
            if (loaded is null)
            {
                var message = $"{error!.Message} (clusters.{settings.Cluster}.tls.clientCertificate.{error.Key})";
                if (state.LastError != message) Log.ReloadRejected(_logger, "client certificate", settings.Cluster, message);
                cluster.Client = state with { LastError = message, LastErrorAt = now };
            }
            else if (loaded.ContentHash == state.Current?.ContentHash)
            {
                loaded.Certificate.Dispose();
                if (state.LastError is not null) cluster.Client = state with { LastError = null, LastErrorAt = null };
            }
            else
            {
                // The replaced certificate is not disposed: pooled connections made with it still use it.
                cluster.Client = new ClientCertificateState(loaded, null, null);
                cluster.LastExpiryWarning = null;
                Log.ClientCertificateRotated(_logger, settings.Cluster, loaded.Certificate.Subject, UpstreamFiles.Format(loaded.NotAfter), loaded.Fingerprint);
            }
        }
    }

    /// <summary>Warns (once a day per certificate) about client certificates that expire within 14 days.</summary>
    private void CheckExpiry()
    {
        lock (_lock)
        {
            if (_disposed) return;
            var now = _time.GetUtcNow();
            foreach (var cluster in _clusters.Values) CheckExpiry(cluster, now);
        }
    }

    private void CheckExpiry(ClusterTls cluster, DateTimeOffset now)
    {
        if (cluster.Client.Current is not { } current) return;
        var left = current.NotAfter - now;
        if (left >= ExpiryWarning) return;
        if (cluster.LastExpiryWarning is { } last && now - last < TimeSpan.FromDays(1)) return;
        cluster.LastExpiryWarning = now;
        Log.ClientCertificateExpiring(_logger, cluster.Settings.Cluster, current.Certificate.Subject, (int)Math.Floor(left.TotalDays), UpstreamFiles.Format(current.NotAfter));
    }

    /// <summary>GET /admin/upstream-tls.</summary>
    public void WriteStatus(Utf8JsonWriter w)
    {
        var now = _time.GetUtcNow();
        w.WriteStartArray("clusters");
        foreach (var cluster in _clusters.Values.OrderBy(c => c.Settings.Cluster, StringComparer.Ordinal))
        {
            var settings = cluster.Settings;
            w.WriteStartObject();
            w.WriteString("cluster", settings.Cluster);
            w.WriteString("verify", settings.InsecureSkipVerify ? "insecure-skip-verify" : settings.CaFile is null ? "system" : "ca");
            if (settings.ServerName is { } serverName) w.WriteString("serverName", serverName);
            else w.WriteNull("serverName");
            w.WriteNumber("pins", settings.Pins.Count);
            if (settings.CaFile is { } ca)
            {
                var trust = cluster.Trust;
                w.WriteStartObject("ca");
                w.WriteString("file", ca);
                w.WriteString("state", trust.LastError is not null ? "error" : "ok");
                w.WriteNumber("certificates", trust.Current?.Roots.Count ?? 0);
                if (trust.Current is { } bundle) w.WriteString("loadedAt", bundle.LoadedAt);
                WriteError(w, trust.LastError, trust.LastErrorAt);
                w.WriteEndObject();
            }

            if (settings.ClientCertificate is { } source)
            {
                var client = cluster.Client;
                w.WriteStartObject("clientCertificate");
                var current = client.Current;
                var left = current is null ? TimeSpan.Zero : current.NotAfter - now;
                w.WriteString("state", client.LastError is not null ? "error" : current is null ? "missing" : left <= TimeSpan.Zero ? "expired" : left < ExpiryWarning ? "expiring" : "ok");
                if (current is not null)
                {
                    w.WriteString("subject", current.Certificate.Subject);
                    w.WriteString("issuer", current.Certificate.Issuer);
                    w.WriteString("notBefore", current.NotBefore);
                    w.WriteString("notAfter", current.NotAfter);
                    w.WriteNumber("daysToExpiry", (int)Math.Floor(left.TotalDays));
                    w.WriteString("fingerprintSha256", current.Fingerprint);
                    w.WriteString("loadedAt", current.LoadedAt);
                }

                w.WriteStartArray("files");
                foreach (var file in source.Files) w.WriteStringValue(file);
                w.WriteEndArray();
                WriteError(w, client.LastError, client.LastErrorAt);
                w.WriteEndObject();
            }

            w.WriteNumber("handshakes", cluster.Handshakes);
            w.WriteNumber("handshakeFailures", cluster.Failures);
            if (cluster.LastFailure is { } failure)
            {
                w.WriteStartObject("lastHandshakeFailure");
                w.WriteString("host", failure.Host);
                w.WriteString("reason", failure.Reason);
                w.WriteString("at", failure.At);
                w.WriteEndObject();
            }

            w.WriteEndObject();
        }

        w.WriteEndArray();
    }

    private static void WriteError(Utf8JsonWriter w, string? error, DateTimeOffset? at)
    {
        if (error is null)
        {
            w.WriteNull("lastError");
            return;
        }

        w.WriteString("lastError", error);
        w.WriteString("lastErrorAt", at!.Value);
    }

    private void Watch()
    {
        var files = _clusters.Values.SelectMany(c => c.Settings.Files).ToFrozenSet(StringComparer.Ordinal);
        if (files.SetEquals(_files)) return;
        _files = files;
        _watcher?.Dispose();
        // From the versions loaded, so a file replaced since is noticed by the watcher's first poll.
        var known = new Dictionary<string, FileStamp>(StringComparer.Ordinal);
        foreach (var cluster in _clusters.Values)
        {
            foreach (var (file, stamp) in cluster.Settings.Files.Zip(cluster.Stamps)) known.TryAdd(Path.GetFullPath(file), stamp);
        }

        _watcher = files.Count == 0 ? null : new FileChangeWatcher(files, Debounce, _time, Refresh, _logger, known);
        if (files.Count > 0) _expiryTimer ??= _time.CreateTimer(_ => CheckExpiry(), null, ExpiryCheckInterval, ExpiryCheckInterval);
    }

    private static FileStamp[] Stamps(UpstreamTlsSettings settings) => [.. settings.Files.Select(FileStamp.Of)];

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            _watcher?.Dispose();
            _expiryTimer?.Dispose();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(7102, LogLevel.Information, "Upstream client certificate of cluster {Cluster} reloaded: {Subject}, valid until {NotAfter}, SHA-256 {Fingerprint}; new connections present it")]
        public static partial void ClientCertificateRotated(ILogger logger, string cluster, string subject, string notAfter, string fingerprint);

        [LoggerMessage(7103, LogLevel.Error, "Upstream {What} of cluster {Cluster} was not replaced: {Error}; the previous one stays in use")]
        public static partial void ReloadRejected(ILogger logger, string what, string cluster, string error);

        [LoggerMessage(7104, LogLevel.Error, "Upstream {What} of cluster {Cluster} cannot be loaded: {Error}")]
        public static partial void LoadFailed(ILogger logger, string what, string cluster, string error);

        [LoggerMessage(7105, LogLevel.Information, "Upstream CA bundle of cluster {Cluster} reloaded ({Count} certificates); new connections are checked against it")]
        public static partial void TrustReloaded(ILogger logger, string cluster, int count);

        [LoggerMessage(7106, LogLevel.Warning, "Upstream client certificate of cluster {Cluster} ({Subject}) expires in {Days} day(s), on {NotAfter}")]
        public static partial void ClientCertificateExpiring(ILogger logger, string cluster, string subject, int days, string notAfter);
    }
}
