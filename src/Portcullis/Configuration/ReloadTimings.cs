using System.Diagnostics;

namespace Portcullis.Configuration;

/// <summary>
/// Where a reload's time went, phase by phase, in the order they run: reading and parsing the files, binding them
/// to the config records, compiling the snapshot, the restart-required diff, preparing the participants, and the
/// swap (YARP's apply, the endpoints and the route table). Shown in the reload answer and its log line: at tens of
/// thousands of routes it says which part of a slow reload is the file and which is the gateway.
/// </summary>
internal sealed class ReloadTimings
{
    public static readonly string[] Phases = ["parse", "bind", "compile", "restartDiff", "prepare", "swap"];

    private readonly TimeSpan[] _elapsed = new TimeSpan[Phases.Length];
    private readonly bool[] _measured = new bool[Phases.Length];
    private readonly long[] _allocated = new long[Phases.Length];
    private long _allocatedMark = GC.GetTotalAllocatedBytes();
    private readonly TimeSpan _pausedBefore = GC.GetTotalPauseDuration();
    private readonly int[] _collectionsBefore = [GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2)];
    private TimeSpan _paused;
    private readonly int[] _collections = new int[3];

    /// <summary>
    /// How long the garbage collector paused the process while the reload ran (set by <see cref="Stop"/>).
    /// Process-wide: it includes collections that traffic alone would have caused, so it is an upper bound on
    /// what the reload cost in pauses. At tens of thousands of routes most of a reload's time is here.
    /// </summary>
    public TimeSpan GcPause => _paused;

    /// <summary>Collections of each generation (0, 1, 2) while the reload ran (gen 1 counts gen 2's too, as the runtime does).</summary>
    public IReadOnlyList<int> Collections => _collections;

    /// <summary>Takes the garbage collector's pauses and collections since the reload began.</summary>
    public void Stop()
    {
        _paused = GC.GetTotalPauseDuration() - _pausedBefore;
        for (var gen = 0; gen < 3; gen++) _collections[gen] = GC.CollectionCount(gen) - _collectionsBefore[gen];
    }

    /// <summary>
    /// What the process allocated during each phase measured (the phases run back to back, so this is what each
    /// allocated, plus whatever traffic allocated meanwhile): at tens of thousands of routes, what a phase
    /// allocates is what it costs in collections.
    /// </summary>
    public IEnumerable<(string Phase, long Bytes)> Allocated
    {
        get
        {
            for (var i = 0; i < Phases.Length; i++)
            {
                if (_measured[i]) yield return (Phases[i], _allocated[i]);
            }
        }
    }

    /// <summary>Each phase measured so far, by name (phases a rejected or unchanged reload never reached are absent).</summary>
    public IEnumerable<(string Phase, TimeSpan Elapsed)> Measured
    {
        get
        {
            for (var i = 0; i < Phases.Length; i++)
            {
                if (_measured[i]) yield return (Phases[i], _elapsed[i]);
            }
        }
    }

    /// <summary>Adds the time since <paramref name="startedTimestamp"/> (a <see cref="Stopwatch"/> timestamp) to <paramref name="phase"/>; returns now's timestamp.</summary>
    public long Add(string phase, long startedTimestamp)
    {
        var now = Stopwatch.GetTimestamp();
        var index = Array.IndexOf(Phases, phase);
        if (index < 0) throw new ArgumentOutOfRangeException(nameof(phase), phase, "not a reload phase");
        _elapsed[index] += Stopwatch.GetElapsedTime(startedTimestamp, now);
        var allocated = GC.GetTotalAllocatedBytes();
        _allocated[index] += allocated - _allocatedMark;
        _allocatedMark = allocated;
        _measured[index] = true;
        return now;
    }

    /// <summary>"parse 812 ms, bind 455 ms, …" for the log line.</summary>
    public override string ToString() =>
        string.Join(", ", Measured.Select(m => $"{m.Phase} {m.Elapsed.TotalMilliseconds:F0} ms"))
        + $"; GC paused {_paused.TotalMilliseconds:F0} ms (collections: gen0 {_collections[0]}, gen1 {_collections[1]}, gen2 {_collections[2]})";
}
