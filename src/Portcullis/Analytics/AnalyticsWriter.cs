using System.Diagnostics;
using DuckDB.NET.Data;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Analytics;

/// <summary>
/// The store's background writer: every flush interval it takes the rollups recorded so far and the queued
/// samples and appends them in one transaction (DuckDB Appender); on shutdown it writes what is left. While
/// the store cannot be written (corrupt file, locked by another process, full disk, directory gone) the
/// gateway keeps proxying: the batch is kept in memory (bounded; beyond it dropped and counted), the store is
/// reported unhealthy, the error is logged once, and the write is retried with backoff until it succeeds.
/// </summary>
internal sealed partial class AnalyticsWriter : BackgroundService
{
    /// <summary>Rollup rows kept across failed flushes; beyond it further rows are dropped and counted.</summary>
    internal const int MaxPendingRollups = 200_000;

    /// <summary>Arrival rows kept across failed flushes; beyond it further rows are dropped and counted.</summary>
    internal const int MaxPendingArrivals = 200_000;

    internal static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);

    private readonly AnalyticsDatabase _database;
    private readonly AnalyticsRecorder _recorder;
    private readonly SnapshotStore _store;
    private readonly CompiledAnalytics _started;
    private readonly TimeProvider _time;
    private readonly ILogger<AnalyticsWriter> _logger;
    private readonly AnalyticsMaintenance _maintenance;
    private readonly object _gate = new();
    private Dictionary<RollupKey, RollupCell> _pendingRollups = [];
    private readonly List<AnalyticsSample> _pendingSamples = [];
    private Dictionary<ArrivalKey, ArrivalCell> _pendingArrivals = [];
    private long _arrivalRows;
    private long _arrivalsDropped;
    private DuckDBConnection? _connection;
    private int _failures;
    private DateTimeOffset _nextAttempt;
    private long _rollupRows;
    private long _sampleRows;
    private long _rollupsDropped;
    private long _samplesDropped;
    private long _fileSize;
    private long _failedAttempts;

    public AnalyticsWriter(AnalyticsDatabase database, AnalyticsRecorder recorder, SnapshotStore store, TimeProvider time, ILogger<AnalyticsWriter> logger)
    {
        _database = database;
        _recorder = recorder;
        _store = store;
        _started = store.Current.Analytics ?? throw new InvalidOperationException("analytics is off");
        _time = time;
        _logger = logger;
        _maintenance = new AnalyticsMaintenance(database, logger);
        Health = new AnalyticsHealth(time.GetUtcNow());
    }

    public AnalyticsHealth Health { get; }

    internal AnalyticsMaintenance Maintenance => _maintenance;

    /// <summary>Called with the seconds each successful flush took (the flush-duration histogram).</summary>
    public Action<double>? FlushTimed { get; set; }

    /// <summary>Failed write attempts since start.</summary>
    public long FailedAttempts => Interlocked.Read(ref _failedAttempts);

    public long RollupRowsFlushed => Interlocked.Read(ref _rollupRows);

    public long SampleRowsFlushed => Interlocked.Read(ref _sampleRows);

    public long ArrivalRowsFlushed => Interlocked.Read(ref _arrivalRows);

    /// <summary>Arrival rows lost because the store failed longer than the pending buffer holds.</summary>
    public long ArrivalsDropped => Interlocked.Read(ref _arrivalsDropped);

    /// <summary>Rollup rows lost because the store failed longer than the pending buffer holds.</summary>
    public long RollupsDropped => Interlocked.Read(ref _rollupsDropped);

    /// <summary>Samples lost because the store failed longer than the pending buffer holds.</summary>
    public long PendingSamplesDropped => Interlocked.Read(ref _samplesDropped);

    /// <summary>The store file plus its WAL, in bytes, as of the last flush.</summary>
    public long FileSize => Interlocked.Read(ref _fileSize);

    // Interval, retention and size follow reloads; the file is the one opened at start (a new path needs a restart).
    private CompiledAnalytics Options => _store.Current.Analytics ?? _started;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await Task.Yield();
        Flush(); // opens the store at start: a bad file shows on /readyz at once
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                await Task.Delay(Options.FlushInterval, _time, stoppingToken);
                Flush();
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        // Requests have finished (the server stops first): write the rest, one last try regardless of backoff.
        Flush(final: true);
        lock (_gate)
        {
            _connection?.Dispose();
            _connection = null;
        }
    }

    public override void Dispose()
    {
        lock (_gate)
        {
            _connection?.Dispose();
            _connection = null;
        }

        base.Dispose();
    }

    /// <summary>One flush: everything recorded and queued so far into the store (or kept pending when it fails).</summary>
    internal void Flush(bool final = false)
    {
        lock (_gate)
        {
            Collect();
            var now = _time.GetUtcNow();
            if (!final && _failures > 0 && now < _nextAttempt) return;
            var started = Stopwatch.GetTimestamp();
            try
            {
                var connection = _connection ??= _database.OpenConnection();
                Append(connection);
                _maintenance.RunIfDue(connection, Options, now);
                Interlocked.Exchange(ref _fileSize, AnalyticsMaintenance.FileSize(_database.Path));
                FlushTimed?.Invoke(Stopwatch.GetElapsedTime(started).TotalSeconds);
                if (_failures > 0) LogRecovered(_logger, _database.Path, _failures);
                else if (!Health.Opened) LogOpened(_logger, _database.Path);
                _failures = 0;
                Health.Up(now);
            }
            catch (Exception ex) when (ex is DuckDBException or IOException or UnauthorizedAccessException or InvalidOperationException or NotSupportedException)
            {
                Fail(ex, now);
            }
        }
    }

    // Moves the recorder's rollups and samples into the pending batch (bounded).
    private void Collect()
    {
        var rollups = _recorder.Rollups.Swap();
        if (_pendingRollups.Count == 0)
        {
            _pendingRollups = rollups;
        }
        else
        {
            foreach (var (key, cell) in rollups)
            {
                if (_pendingRollups.TryGetValue(key, out var into)) into.MergeFrom(cell);
                else if (_pendingRollups.Count < MaxPendingRollups) _pendingRollups[key] = cell;
                else Interlocked.Add(ref _rollupsDropped, 1);
            }
        }

        CollectArrivals();
        var reader = _recorder.Samples;
        var limit = _started.QueueSize;
        while (reader.TryRead(out var sample))
        {
            if (_pendingSamples.Count < limit) _pendingSamples.Add(sample);
            else Interlocked.Increment(ref _samplesDropped);
        }
    }

    private void CollectArrivals()
    {
        var arrivals = _recorder.Arrivals.Swap();
        if (_pendingArrivals.Count == 0)
        {
            _pendingArrivals = arrivals;
            return;
        }

        foreach (var (key, cell) in arrivals)
        {
            if (_pendingArrivals.TryGetValue(key, out var into)) into.MergeFrom(cell);
            else if (_pendingArrivals.Count < MaxPendingArrivals) _pendingArrivals[key] = cell;
            else Interlocked.Increment(ref _arrivalsDropped);
        }
    }

    private void Append(DuckDBConnection connection)
    {
        if (_pendingRollups.Count == 0 && _pendingSamples.Count == 0 && _pendingArrivals.Count == 0) return;
        using (var transaction = connection.BeginTransaction())
        {
            if (_pendingRollups.Count > 0)
            {
                using var appender = connection.CreateAppender(AnalyticsSchema.Rollups);
                foreach (var (key, cell) in _pendingRollups) AnalyticsRows.AppendRollup(appender, key, cell);
            }

            if (_pendingSamples.Count > 0)
            {
                using var appender = connection.CreateAppender(AnalyticsSchema.Samples);
                foreach (var sample in _pendingSamples) AnalyticsRows.AppendSample(appender, sample);
            }

            if (_pendingArrivals.Count > 0)
            {
                using var appender = connection.CreateAppender(AnalyticsSchema.Arrivals);
                foreach (var (key, cell) in _pendingArrivals) ArrivalTables.Append(appender, key, cell);
            }

            transaction.Commit();
        }

        Interlocked.Add(ref _arrivalRows, _pendingArrivals.Count);
        _pendingArrivals = [];

        Interlocked.Add(ref _rollupRows, _pendingRollups.Count);
        Interlocked.Add(ref _sampleRows, _pendingSamples.Count);
        _pendingRollups = [];
        _pendingSamples.Clear();
    }

    private void Fail(Exception ex, DateTimeOffset now)
    {
        _connection?.Dispose();
        _connection = null;
        _database.ResetSchema(); // a replaced or recreated file needs its tables again
        var backoff = TimeSpan.FromSeconds(Math.Min(MaxBackoff.TotalSeconds, Math.Pow(2, Math.Min(_failures, 5))));
        _failures++;
        Interlocked.Increment(ref _failedAttempts);
        _nextAttempt = now + backoff;
        // Once per outage, not per flush: the health check and metrics carry the rest.
        if (Health.Down(now, FirstLine(ex))) LogUnavailable(_logger, _database.Path, Health.LastError ?? "", ex);
    }

    // DuckDB's messages name the file and the cause (lock holder's pid, corrupt header, no space); first line only.
    private static string FirstLine(Exception ex)
    {
        var message = ex.Message;
        var newline = message.IndexOf('\n', StringComparison.Ordinal);
        return newline > 0 ? message[..newline].Trim() : message.Trim();
    }

    [LoggerMessage(EventId = 8200, Level = LogLevel.Information, Message = "Analytics store {Path} opened")]
    private static partial void LogOpened(ILogger logger, string path);

    [LoggerMessage(EventId = 8201, Level = LogLevel.Error, Message = "Analytics store {Path} cannot be written: {Error}. Requests are still proxied; rollups and samples are kept in memory (bounded) and the write is retried with backoff")]
    private static partial void LogUnavailable(ILogger logger, string path, string error, Exception exception);

    [LoggerMessage(EventId = 8202, Level = LogLevel.Information, Message = "Analytics store {Path} written again after {Failures} failed attempts")]
    private static partial void LogRecovered(ILogger logger, string path, int failures);
}

/// <summary>The store's state for /readyz and /metrics: up, or down since when and why.</summary>
internal sealed class AnalyticsHealth(DateTimeOffset created)
{
    private volatile bool _down;
    private volatile bool _opened;
    private volatile string? _lastError;
    private long _sinceTicks = created.UtcTicks;

    /// <summary>Written at least once since start, and not failing now.</summary>
    public bool IsUp => _opened && !_down;

    public bool IsDown => _down;

    public bool Opened => _opened;

    public string? LastError => _lastError;

    /// <summary>When the current state (up or down) began.</summary>
    public DateTimeOffset Since => new(Interlocked.Read(ref _sinceTicks), TimeSpan.Zero);

    public void Up(DateTimeOffset now)
    {
        if (_down || !_opened) Interlocked.Exchange(ref _sinceTicks, now.UtcTicks);
        _lastError = null;
        _opened = true;
        _down = false;
    }

    /// <summary>True when this starts an outage (the one time it is logged).</summary>
    public bool Down(DateTimeOffset now, string error)
    {
        _lastError = error;
        if (_down) return false;
        Interlocked.Exchange(ref _sinceTicks, now.UtcTicks);
        _down = true;
        return true;
    }
}
