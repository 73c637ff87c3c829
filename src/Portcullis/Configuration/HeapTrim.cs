using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace Portcullis.Configuration;

/// <summary>
/// Gives back to the operating system the memory that configuration builds grew the heap into. Loading and
/// compiling tens of thousands of routes allocates about a gigabyte that is garbage once the snapshot is swapped in
/// (the YAML model, the bound records of the old generation), and the server GC keeps the memory it grew into: an
/// idle gateway allocates little, so no collection ever shrinks it (at 50,000 routes: 970 MB resident for a 250 MB
/// live heap, indefinitely). Once builds (start, reloads, the advisor's runs) allocated <see cref="Threshold"/>
/// since the last collection, one blocking, compacting collection that decommits what it frees
/// (<see cref="GCCollectionMode.Aggressive"/>) brings the process back to its live size. Builds add up because the
/// advisor's runs each leave a little that no collection takes while nothing else allocates, so resident memory
/// would otherwise climb for as long as the gateway idles (~14 MB a minute at 50,000 routes before the service
/// checks stopped rebuilding per-cluster lists). Any other collection restarts the count: a gateway under traffic
/// collects its own garbage, the advisor's with it, and is not paused for it. The trim pauses requests for about as
/// long as a gen-2 collection of the live heap (0.2–0.6 s at 50,000 routes on two cores), so it runs at start before
/// the listeners open, and otherwise once builds have stopped for <see cref="QuietPeriod"/>: a burst of reloads keeps
/// the grown heap (a reload into a trimmed heap spends about half its time waiting for the collections that grow it
/// again).
/// </summary>
internal sealed partial class HeapTrim : IDisposable
{
    /// <summary>Bytes builds must have allocated since the last collection before a trim pays for its pause (measured: a reload allocates ~14 MB at 1,000 routes, ~71 MB at 5,000, ~142 MB at 10,000).</summary>
    public const long Threshold = 128L << 20;

    /// <summary>How long after the last build the trim waits.</summary>
    public static readonly TimeSpan QuietPeriod = TimeSpan.FromSeconds(10);

    private readonly ILogger<HeapTrim> _logger;
    private readonly ITimer _timer;
    private readonly Lock _lock = new();
    // Builds since the last collection: how many, the last one's name, and what they allocated together.
    private readonly Func<int> _collections;
    private int _collectionsSeen;
    private int _builds;
    private string? _lastWhat;
    private long _sinceTrim;
    private bool _pending;
    private long _trims;

    private readonly long _threshold;
    private readonly TimeSpan _quietPeriod;

    /// <param name="threshold">Bytes builds must allocate to be trimmed after; <see cref="Threshold"/> but in tests.</param>
    /// <param name="quietPeriod">How long after the last build to trim; <see cref="QuietPeriod"/> but in tests.</param>
    /// <param name="collections">How many collections the process has run (<see cref="GC.CollectionCount"/> of gen 0, which counts them all); given in tests.</param>
    /// <param name="store">Whose serving snapshot says whether trimming is on (limits.trimHeapAfterBuilds); null: always on.</param>
    public HeapTrim(ILogger<HeapTrim> logger, TimeProvider time, long threshold = Threshold, TimeSpan? quietPeriod = null, Func<int>? collections = null,
        SnapshotStore? store = null)
    {
        if (store is not null) Enabled = () => store.Current.Config.Limits.TrimHeapAfterBuilds;
        _collections = collections ?? (static () => GC.CollectionCount(0));
        _collectionsSeen = _collections();
        _logger = logger;
        _threshold = threshold;
        _quietPeriod = quietPeriod ?? QuietPeriod;
        _timer = time.CreateTimer(static state => ((HeapTrim)state!).TrimPending(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    /// <summary>Whether trimming is on (limits.trimHeapAfterBuilds of the serving snapshot); always on when null.</summary>
    public Func<bool>? Enabled { get; init; }

    private bool Off => Enabled is { } enabled && !enabled();

    /// <summary>Trims done since start.</summary>
    public long Trims => Interlocked.Read(ref _trims);

    /// <summary>Whether a trim waits for the quiet period to pass.</summary>
    public bool Pending
    {
        get
        {
            lock (_lock) return _pending;
        }
    }

    /// <summary>
    /// <paramref name="what"/> allocated <paramref name="allocatedBytes"/>. Once builds allocated <see cref="Threshold"/>
    /// since the last collection, a trim runs <see cref="QuietPeriod"/> from now, unless another build comes first (it then
    /// waits for that one).
    /// </summary>
    public void AfterBuild(string what, long allocatedBytes)
    {
        lock (_lock)
        {
            if (Off)
            {
                Cancel();
                return;
            }

            Add(what, allocatedBytes);
            if (_sinceTrim < _threshold) return;
            _pending = true;
            _timer.Change(_quietPeriod, Timeout.InfiniteTimeSpan);
        }
    }

    /// <summary>
    /// The first generation was built and nothing is served yet: trims at once when builds reached
    /// <see cref="Threshold"/>, and otherwise counts the start's allocation with the builds that follow.
    /// </summary>
    public void Now(string what, long allocatedBytes)
    {
        lock (_lock)
        {
            if (Off)
            {
                Cancel();
                return;
            }

            Add(what, allocatedBytes);
            if (_sinceTrim < _threshold) return;
        }

        TrimPending();
    }

    // Under _lock. A collection since the last build took what the builds before it left (or will, being under way):
    // count from this build on, unless a trim already waits for the quiet period.
    private void Add(string what, long allocatedBytes)
    {
        var collections = _collections();
        if (collections != _collectionsSeen && !_pending) (_builds, _lastWhat, _sinceTrim) = (0, null, 0);
        _collectionsSeen = collections;
        _builds++;
        _lastWhat = what;
        _sinceTrim += allocatedBytes;
    }

    // Under _lock: trimming was turned off; nothing counted so far is trimmed for later.
    private void Cancel()
    {
        (_builds, _lastWhat, _sinceTrim, _pending) = (0, null, 0, false);
        _timer.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    private void TrimPending()
    {
        string what;
        long bytes;
        lock (_lock)
        {
            if (Off) Cancel();
            if (_lastWhat is null) return;
            what = _builds == 1 ? _lastWhat : $"{_builds} builds (the last: {_lastWhat})";
            bytes = _sinceTrim;
            (_builds, _lastWhat, _sinceTrim, _pending) = (0, null, 0, false);
        }

        Collect(what, bytes);
        lock (_lock) _collectionsSeen = _collections();
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
