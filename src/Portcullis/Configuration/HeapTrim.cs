using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace Portcullis.Configuration;

/// <summary>
/// Gives back to the operating system the memory a large configuration build grew the heap into. Loading and
/// compiling tens of thousands of routes allocates about a gigabyte that is garbage once the snapshot is swapped in
/// (the YAML model, the bound records of the old generation), and the server GC keeps the memory it grew into: an
/// idle gateway allocates little, so no collection ever shrinks it (at 50,000 routes: 970 MB resident for a 250 MB
/// live heap, indefinitely). After a build that allocated at least <see cref="Threshold"/>, one blocking, compacting
/// collection that decommits what it frees (<see cref="GCCollectionMode.Aggressive"/>) brings the process back to
/// its live size. It pauses requests for about as long as a gen-2 collection of the live heap (0.2–0.6 s at 50,000
/// routes on two cores), so it runs at start before the listeners open, and otherwise once builds have stopped for
/// <see cref="QuietPeriod"/>: a burst of reloads keeps the grown heap (a reload into a trimmed heap spends about
/// half its time waiting for the collections that grow it again). Small configurations never reach the threshold.
/// </summary>
internal sealed partial class HeapTrim : IDisposable
{
    /// <summary>Bytes a build must have allocated before a trim pays for its pause (measured: a reload allocates ~14 MB at 1,000 routes, ~71 MB at 5,000, ~142 MB at 10,000).</summary>
    public const long Threshold = 128L << 20;

    /// <summary>How long after the last large build the trim waits.</summary>
    public static readonly TimeSpan QuietPeriod = TimeSpan.FromSeconds(10);

    private readonly ILogger<HeapTrim> _logger;
    private readonly ITimer _timer;
    private readonly Lock _lock = new();
    private string? _pendingWhat;
    private long _pendingBytes;
    private long _trims;

    private readonly long _threshold;
    private readonly TimeSpan _quietPeriod;

    /// <param name="threshold">Bytes a build must allocate to be trimmed after; <see cref="Threshold"/> but in tests.</param>
    /// <param name="quietPeriod">How long after the last large build to trim; <see cref="QuietPeriod"/> but in tests.</param>
    public HeapTrim(ILogger<HeapTrim> logger, TimeProvider time, long threshold = Threshold, TimeSpan? quietPeriod = null)
    {
        _logger = logger;
        _threshold = threshold;
        _quietPeriod = quietPeriod ?? QuietPeriod;
        _timer = time.CreateTimer(static state => ((HeapTrim)state!).TrimPending(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    /// <summary>Trims done since start.</summary>
    public long Trims => Interlocked.Read(ref _trims);

    /// <summary>Whether a trim waits for the quiet period to pass.</summary>
    public bool Pending
    {
        get
        {
            lock (_lock) return _pendingWhat is not null;
        }
    }

    /// <summary>
    /// <paramref name="what"/> allocated <paramref name="allocatedBytes"/>: at or above <see cref="Threshold"/>, a trim
    /// runs <see cref="QuietPeriod"/> from now, unless another large build comes first (it then waits for that one).
    /// </summary>
    public void AfterBuild(string what, long allocatedBytes)
    {
        if (allocatedBytes < _threshold) return;
        lock (_lock)
        {
            _pendingWhat = _pendingWhat is null ? what : $"{_pendingWhat}, {what}";
            _pendingBytes += allocatedBytes;
            _timer.Change(_quietPeriod, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>Trims at once when <paramref name="allocatedBytes"/> reached <see cref="Threshold"/> (at start, while nothing is served).</summary>
    public void Now(string what, long allocatedBytes)
    {
        if (allocatedBytes >= _threshold) Collect(what, allocatedBytes);
    }

    private void TrimPending()
    {
        string? what;
        long bytes;
        lock (_lock)
        {
            (what, bytes) = (_pendingWhat, _pendingBytes);
            (_pendingWhat, _pendingBytes) = (null, 0);
        }

        if (what is not null) Collect(what, bytes);
    }

    private void Collect(string what, long allocatedBytes)
    {
        var before = GC.GetGCMemoryInfo().TotalCommittedBytes;
        var started = Stopwatch.GetTimestamp();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        var pause = Stopwatch.GetElapsedTime(started);
        Interlocked.Increment(ref _trims);
        var after = GC.GetGCMemoryInfo();
        Log.Trimmed(_logger, what, allocatedBytes >> 20, before >> 20, after.TotalCommittedBytes >> 20, after.HeapSizeBytes >> 20, pause.TotalMilliseconds);
    }

    public void Dispose() => _timer.Dispose();

    private static partial class Log
    {
        [LoggerMessage(1045, LogLevel.Information,
            "Heap trimmed after {What}: {AllocatedMb} MB allocated; GC committed {BeforeMb} MB → {AfterMb} MB ({HeapMb} MB live), paused {PauseMs:F0} ms")]
        public static partial void Trimmed(ILogger logger, string what, long allocatedMb, long beforeMb, long afterMb, long heapMb, double pauseMs);
    }
}

/// <summary>What building the first generation allocated, on the thread that built it (the trim at start adds the warm-up's own).</summary>
internal sealed record StartBuildCost(long AllocatedBytes);
