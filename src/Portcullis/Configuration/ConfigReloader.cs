using System.Collections.Frozen;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Portcullis.Files;
using Portcullis.Pipeline;

namespace Portcullis.Configuration;

/// <summary>
/// Reloads the configuration on file change, SIGHUP or request: builds and validates a new snapshot off
/// the request path, prepares every <see cref="ISnapshotParticipant"/> with it, and only when the file is
/// valid and every participant prepared commits them all and swaps the snapshot in (last known good
/// otherwise: nothing applied).
/// </summary>
internal sealed partial class ConfigReloader : IHostedService, IDisposable
{
    private static readonly TimeSpan Debounce = TimeSpan.FromMilliseconds(150);

    private readonly SnapshotStore _store;
    private readonly SnapshotBuilder _builder;
    private readonly ILogger<ConfigReloader> _logger;
    private readonly TimeProvider _time;
    private readonly GatewaySnapshot _running;

    // Settings of the serving snapshot that differ from what the gateway started with (applied only at restart).
    private IReadOnlyList<string> _pendingRestart = [];

    // What the serving snapshot was built from, and its diagnostics (warnings): a reload that finds the same inputs
    // answers with them without rebuilding. Null until the reloader starts.
    private Files.InputDigest? _inputs;
    private IReadOnlyList<ConfigDiagnostic> _builtDiagnostics = [];
    private readonly ISnapshotParticipant[] _participants;
    private readonly Observability.AuditLog? _audit;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly Lock _watchLock = new();
    private FileChangeWatcher? _watcher;
    private Dictionary<string, FileStamp> _fileStamps = [];
    private PosixSignalRegistration? _sighup;
    private bool _disposed;

    public ConfigReloader(SnapshotStore store, SnapshotBuilder builder, ILogger<ConfigReloader> logger, TimeProvider time)
        : this(store, builder, logger, time, [], null)
    {
    }

    internal ConfigReloader(SnapshotStore store, SnapshotBuilder builder, ILogger<ConfigReloader> logger, TimeProvider time,
        IEnumerable<ISnapshotParticipant> participants, Observability.AuditLog? audit)
    {
        _participants = [.. participants];
        _audit = audit;
        _store = store;
        _builder = builder;
        _logger = logger;
        _time = time;
        // Listeners and Kestrel's limits are set up from the snapshot the gateway started with; they stay
        // that way until a restart, however many reloads happen in between.
        _running = store.Current;
        LastResult = new ReloadResult(true, true, store.Current.Generation, "startup", store.Current.LoadedAt, [], []);
    }

    public ReloadResult LastResult { get; private set; }

    /// <summary>Gives a large reload's garbage back to the operating system once the new snapshot serves; null: never.</summary>
    public HeapTrim? Trim { get; init; }

    private long _applied;
    private long _rejected;

    /// <summary>Reloads that kept the new file (changed or not), since start; read by metrics.</summary>
    public long AppliedCount => Interlocked.Read(ref _applied);

    /// <summary>Reloads rejected (the previous configuration kept serving), since start; read by metrics.</summary>
    public long RejectedCount => Interlocked.Read(ref _rejected);

    public string ConfigPath => _store.Current.Source.Path;

    public Task StartAsync(CancellationToken cancellationToken)
    {
        Watch(_store.Current);
        _inputs = Files.InputDigest.Of(_store.Current.Files);
        _builtDiagnostics = _store.StartupDiagnostics;
        _ = Task.Run(() =>
        {
            try
            {
                ConfigDiff.WarmUp(_running);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // Only a head start: the first reload's diff reports whatever this would have.
                Log.WarmUpFailed(_logger, ex);
            }
        }, CancellationToken.None);
        try
        {
            // Right before registering: with SIGHUP inherited as ignored, the registration would install nothing.
            SighupDisposition.RestoreIfIgnored(_logger);
            _sighup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, context =>
            {
                context.Cancel = true;
                _ = ReloadAsync("SIGHUP", CancellationToken.None);
            });
        }
        catch (PlatformNotSupportedException)
        {
            // Windows has no SIGHUP; file watching and the admin endpoint still reload.
        }

        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        Dispose();
        return Task.CompletedTask;
    }

    public Task<ReloadResult> ReloadAsync(string trigger, CancellationToken cancellationToken) =>
        ReloadAsync(trigger, onlyIfChanged: false, cancellationToken);

    /// <param name="onlyIfChanged">
    /// For file-change triggers: one write is seen by both the watcher and the stat poll (a poll that
    /// ticks between the write and the end of the first reload), so whichever runs second finds the
    /// stamps it would act on already remembered by the first, and does nothing — one write, one
    /// reload, one rejection at most.
    /// </param>
    private async Task<ReloadResult> ReloadAsync(string trigger, bool onlyIfChanged, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var timings = new ReloadTimings();
        try
        {
            var current = _store.Current;
            // Stamped before reading: a file changed while it is being read still differs at the next poll.
            var stamps = StampAll(current.Files);
            if (onlyIfChanged && !DiffersFromRemembered(stamps)) return LastResult;

            // Every input as the serving snapshot read it: nothing to rebuild (a touched file, a forced reload).
            var inputs = Files.InputDigest.Of(current.Files);
            if (_inputs is { } built && built.SameAs(inputs))
            {
                RememberStamps(stamps);
                Interlocked.Increment(ref _applied);
                LastResult = new ReloadResult(true, false, current.Generation, trigger, _time.GetUtcNow(), _builtDiagnostics, _pendingRestart) { Duration = Elapsed(), Timings = timings };
                return LastResult;
            }

            var (build, builtBytes) = await BuildAsync(current, trigger, timings, cancellationToken).ConfigureAwait(false);
            var now = _time.GetUtcNow();
            if (build.Snapshot is not { } next) return Rejected(build, current, trigger, now, stamps, Elapsed(), timings);

            if (next.Fingerprint == current.Fingerprint)
            {
                // Same inputs, same snapshot: what waits for a restart is what waited before (the diff of a whole
                // config is seconds at tens of thousands of routes, so it is not redone for nothing).
                RememberStamps(stamps);
                Interlocked.Increment(ref _applied);
                _inputs = Files.InputDigest.Of(next.Files);
                _builtDiagnostics = build.Diagnostics;
                LastResult = new ReloadResult(true, false, current.Generation, trigger, now, build.Diagnostics, _pendingRestart) { Duration = Elapsed(), Timings = timings };
                return LastResult;
            }

            // Relative to what the gateway runs with, not to the previous snapshot: a change to a setting
            // read at start-up stays pending (and reported) until a restart, and undoing it needs none.
            var phase = System.Diagnostics.Stopwatch.GetTimestamp();
            var pending = ConfigDiff.PendingRestart(_running, next);
            var restart = pending.Select(p => p.Setting).ToList();
            phase = timings.Add("restartDiff", phase);

            var readied = TryPrepare(next, current, out var prepared, out var results);
            phase = timings.Add("prepare", phase);
            if (!readied)
            {
                var (failed, reason) = (results[^1].Participant, results[^1].Reason);
                Log.PrepareFailed(_logger, trigger, failed, reason ?? "", current.Generation);
                RememberStamps(stamps);
                Interlocked.Increment(ref _rejected);
                var diagnostics = build.Diagnostics.Append(new ConfigDiagnostic(current.Source.Path, 1, 1,
                    $"the reload could not be prepared: {failed}: {reason}",
                    "nothing was applied and the previous configuration keeps serving; fix the cause and reload again")).ToList();
                LastResult = new ReloadResult(false, false, current.Generation, trigger, now, diagnostics, []) { Participants = results, Duration = Elapsed(), Timings = timings };
                return LastResult;
            }

            // Committed before the swap, as the participants' state must be in place when the first request of
            // the new snapshot arrives (a new issuer's key cache, a new cluster's TLS runtime ...).
            Commit(prepared);
            phase = timings.Add("prepare", phase);
            // YARP applies the new routes and the route table is rebuilt inside the swap, on this thread.
            var swapStarted = GC.GetAllocatedBytesForCurrentThread();
            _store.Swap(next);
            timings.Add("swap", phase);
            var allocated = builtBytes + GC.GetAllocatedBytesForCurrentThread() - swapStarted;
            _pendingRestart = restart;
            // After the build: an edit made while it ran is the file watcher's to reload (its stamps were taken before).
            _inputs = Files.InputDigest.Of(next.Files);
            _builtDiagnostics = build.Diagnostics;
            Watch(next, stamps);
            foreach (var (setting, reason) in pending) Log.RestartRequired(_logger, setting, reason);
            foreach (var result in results.Where(r => r.Outcome == "restart-required")) Log.ParticipantRestartRequired(_logger, result.Participant, result.Reason ?? "");
            var duration = Elapsed();
            Log.ReloadApplied(_logger, trigger, next.Generation, next.Routes.Count, next.Clusters.Count,
                string.Join(", ", results.Select(r => r.Participant + " " + r.Outcome)), duration.TotalMilliseconds, timings.ToString());
            Interlocked.Increment(ref _applied);
            LastResult = new ReloadResult(true, true, next.Generation, trigger, now, build.Diagnostics, restart) { Participants = results, Duration = duration, Timings = timings };
            _audit?.RecordConfigChange(current, next, LastResult);
            Trim?.AfterBuild($"the reload to generation {next.Generation}", allocated);
            return LastResult;
        }
        finally
        {
            _gate.Release();
        }

        TimeSpan Elapsed()
        {
            timings.Stop();
            return System.Diagnostics.Stopwatch.GetElapsedTime(started);
        }
    }

    // The build, and what it allocated on its own thread (for HeapTrim).
    private async Task<(BuildResult Build, long AllocatedBytes)> BuildAsync(GatewaySnapshot current, string trigger, ReloadTimings timings, CancellationToken cancellationToken)
    {
        try
        {
            return await Task.Run(() =>
            {
                var started = GC.GetAllocatedBytesForCurrentThread();
                var result = _builder.Build(current.Source.Paths, current.Generation + 1, current, timings);
                return (result, GC.GetAllocatedBytesForCurrentThread() - started);
            }, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // A bug in loading must not lose the reload silently (a file-change reload has nobody to
            // throw to) nor take the gateway down: reject it like any invalid file.
            Log.ReloadFailed(_logger, trigger, ex);
            return (new BuildResult(null, [new ConfigDiagnostic(current.Source.Path, 1, 1,
                $"the configuration could not be loaded: {ex.GetType().Name}: {ex.Message}",
                "this is a bug in Portcullis; please report it with the file. The previous configuration keeps serving")]), 0);
        }
    }

    private ReloadResult Rejected(BuildResult build, GatewaySnapshot current, string trigger, DateTimeOffset now, Dictionary<string, FileStamp> stamps, TimeSpan duration, ReloadTimings timings)
    {
        var errors = build.Errors.ToList();
        Log.ReloadRejected(_logger, trigger, errors.Count, current.Generation);
        foreach (var error in errors) Log.ConfigError(_logger, error.ToString());
        // Remember what was rejected, so the stat poll does not reject the same files every interval.
        RememberStamps(stamps);
        Interlocked.Increment(ref _rejected);
        LastResult = new ReloadResult(false, false, current.Generation, trigger, now, build.Diagnostics, []) { Duration = duration, Timings = timings };
        return LastResult;
    }

    private static Dictionary<string, FileStamp> StampAll(IEnumerable<string> files) =>
        files.Select(Path.GetFullPath).Distinct(StringComparer.Ordinal).ToDictionary(f => f, Stamp, StringComparer.Ordinal);

    private bool DiffersFromRemembered(Dictionary<string, FileStamp> stamps)
    {
        Dictionary<string, FileStamp> remembered;
        lock (_watchLock) remembered = _fileStamps;
        foreach (var (file, stamp) in stamps)
        {
            if (!remembered.TryGetValue(file, out var known) || known != stamp) return true;
        }

        return false;
    }

    private void RememberStamps(Dictionary<string, FileStamp> stamps)
    {
        lock (_watchLock)
        {
            // Only for the files still watched; a file not stamped keeps its previous stamp.
            var updated = new Dictionary<string, FileStamp>(_fileStamps, StringComparer.Ordinal);
            foreach (var (file, stamp) in stamps)
            {
                if (updated.ContainsKey(file)) updated[file] = stamp;
            }

            _fileStamps = updated;
        }
    }

    private void Watch(GatewaySnapshot snapshot, Dictionary<string, FileStamp>? stamps = null)
    {
        lock (_watchLock)
        {
            if (_disposed) return;
            var files = snapshot.Files.Select(Path.GetFullPath).ToFrozenSet(StringComparer.Ordinal);
            _fileStamps = files.ToDictionary(f => f, f => stamps is not null && stamps.TryGetValue(f, out var s) ? s : Stamp(f), StringComparer.Ordinal);
            if (_watcher is not null && files.SetEquals(_watcher.Files)) return;
            _watcher?.Dispose();
            // Watcher events and its stat poll (which catches symlink swaps as in Kubernetes ConfigMaps) end in one debounced reload.
            _watcher = new FileChangeWatcher(files, Debounce, _time, () => _ = ReloadAsync("file change", onlyIfChanged: true, CancellationToken.None), _logger, _fileStamps);
        }
    }

    private static FileStamp Stamp(string file) => FileStamp.Of(file);

    public void Dispose()
    {
        lock (_watchLock)
        {
            if (_disposed) return;
            _disposed = true;
            _watcher?.Dispose();
            _sighup?.Dispose();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(1001, LogLevel.Information, "Configuration reloaded ({Trigger}): generation {Generation}, {Routes} routes, {Clusters} clusters; {Participants}; in {DurationMs:F0} ms ({Phases})")]
        public static partial void ReloadApplied(ILogger logger, string trigger, long generation, int routes, int clusters, string participants, double durationMs, string phases);

        [LoggerMessage(1002, LogLevel.Error, "Configuration reload ({Trigger}) rejected with {Errors} error(s); generation {Generation} keeps serving")]
        public static partial void ReloadRejected(ILogger logger, string trigger, int errors, long generation);

        [LoggerMessage(1003, LogLevel.Error, "{Diagnostic}")]
        public static partial void ConfigError(ILogger logger, string diagnostic);

        [LoggerMessage(1004, LogLevel.Warning, "Changes to {Section} take effect only after a restart ({Reason})")]
        public static partial void RestartRequired(ILogger logger, string section, string reason);

        [LoggerMessage(1010, LogLevel.Error, "Configuration reload ({Trigger}) rejected: {Participant} could not prepare it: {Reason}; nothing was applied, generation {Generation} keeps serving")]
        public static partial void PrepareFailed(ILogger logger, string trigger, string participant, string reason, long generation);

        [LoggerMessage(1011, LogLevel.Error, "Reload participant {Participant} failed to commit; this is a bug in Portcullis")]
        public static partial void CommitFailed(ILogger logger, string participant, Exception exception);

        [LoggerMessage(1012, LogLevel.Warning, "Reload participant {Participant} failed to release what it prepared")]
        public static partial void AbortFailed(ILogger logger, string participant, Exception exception);

        [LoggerMessage(1013, LogLevel.Warning, "Reload: {Participant} needs a restart to apply its change ({Reason})")]
        public static partial void ParticipantRestartRequired(ILogger logger, string participant, string reason);

        [LoggerMessage(1014, LogLevel.Debug, "Warming the reload's restart diff failed; the first reload does it")]
        public static partial void WarmUpFailed(ILogger logger, Exception exception);

        [LoggerMessage(1005, LogLevel.Error, "Configuration reload ({Trigger}) failed unexpectedly; the previous configuration keeps serving")]
        public static partial void ReloadFailed(ILogger logger, string trigger, Exception exception);
    }
}
