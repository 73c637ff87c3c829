namespace Portcullis.Advice;

/// <summary>
/// The replays already run over one key's history (one per policy), kept between advisor runs so a run replays
/// only what changed: the arrivals appended since, and the start of the window that slid forward. The history
/// cache (<see cref="RateLimitHistoryCache"/>) tells it each change: <see cref="Advance"/> with the earliest second
/// whose counts differ (appended or re-read); a dropped prefix is seen from the history's first second.
/// Only the advisor's one computation at a time touches it.
/// </summary>
internal sealed class KeyReplays
{
    // Changes remembered: a state more versions behind is replayed from scratch.
    private const int Remembered = 16;

    // States not used for this many runs are dropped (the fit's candidates drift; the memory stays bounded).
    private const int KeepUnused = 10;

    private readonly long[] _changedFrom = new long[Remembered];
    private readonly Dictionary<RatePolicy, ReplayState> _states = [];

    public long Version { get; private set; }

    /// <summary>The run counter of the cache (for dropping states no run used lately).</summary>
    public long Cycle { get; set; }

    public int Count => _states.Count;

    /// <summary>The history changed: seconds from <paramref name="changedFrom"/> on differ (<see cref="long.MaxValue"/>: only its start moved).</summary>
    public void Advance(long changedFrom)
    {
        Version++;
        _changedFrom[Version % Remembered] = changedFrom;
    }

    /// <summary>The earliest second changed after <paramref name="version"/>; null when too many changes ago to know.</summary>
    public long? ChangedSince(long version)
    {
        if (Version - version >= Remembered) return null;
        var min = long.MaxValue;
        for (var v = version + 1; v <= Version; v++) min = Math.Min(min, _changedFrom[v % Remembered]);
        return min;
    }

    public ReplayState? Find(RatePolicy policy)
    {
        if (!_states.TryGetValue(policy, out var state)) return null;
        state.LastUsed = Cycle;
        return state;
    }

    public void Keep(RatePolicy policy, ReplayState state)
    {
        state.LastUsed = Cycle;
        _states[policy] = state;
    }

    public void Sweep()
    {
        List<RatePolicy>? stale = null;
        foreach (var (policy, state) in _states)
        {
            if (Cycle - state.LastUsed > KeepUnused) (stale ??= []).Add(policy);
        }

        foreach (var policy in stale ?? []) _states.Remove(policy);
    }
}

/// <summary>
/// One policy's replay over one key's history as of <see cref="Version"/>: the refusals, the limiter state after
/// the last second, and the refusals counted before the reset points where that count changed
/// (<see cref="RateLimitReplay"/> explains reset points), which is what lets the start of the window move
/// without replaying what follows.
/// </summary>
internal sealed class ReplayState
{
    public long Version;

    /// <summary>First second replayed (the history's first then).</summary>
    public long From;

    /// <summary>Last second replayed.</summary>
    public long To;

    public long Refused;

    public long Tat;
    public long Window;
    public long Previous;
    public long Current;

    public long LastUsed;

    /// <summary>(reset second, refusals before it), ascending, added where the count changed since the previous mark.</summary>
    public List<(long Second, long Before)> Marks = [];

    /// <summary>Refusals before the reset point <paramref name="second"/>: the last mark at or before it.</summary>
    public long Before(long second)
    {
        long before = 0;
        var low = 0;
        var high = Marks.Count - 1;
        while (low <= high)
        {
            var mid = (low + high) / 2;
            if (Marks[mid].Second <= second)
            {
                before = Marks[mid].Before;
                low = mid + 1;
            }
            else
            {
                high = mid - 1;
            }
        }

        return before;
    }

    public void Fresh()
    {
        Tat = Window = Previous = Current = 0;
    }
}
