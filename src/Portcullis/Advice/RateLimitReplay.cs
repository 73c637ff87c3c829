using Portcullis.Configuration;
using Portcullis.Traffic;

namespace Portcullis.Advice;

/// <summary>A rate-limit policy as the replay runs it: the config's algorithm, limit, per and burst.</summary>
internal sealed record RatePolicy(RateLimitAlgorithm Algorithm, long Limit, TimeSpan Per, long? Burst)
{
    /// <summary>Requests admitted at once, exactly as the gateway compiles it.</summary>
    public long Capacity => CompiledRateLimit.CapacityFor(Algorithm, Limit, Burst);

    /// <summary>Most requests one key can have admitted in any minute (what the suggestion minimises): a burst plus a minute's refill.</summary>
    public double PerMinuteCeiling => Algorithm == RateLimitAlgorithm.SlidingWindow
        ? Limit * Math.Max(1, 60 / Per.TotalSeconds)
        : Capacity + (Limit * 60 / Per.TotalSeconds);

    public static RatePolicy Of(CompiledRateLimit limit) =>
        new(limit.Algorithm, limit.Limit, limit.Per, limit.Algorithm == RateLimitAlgorithm.TokenBucket ? limit.Capacity : null);
}

/// <summary>What a replay of one key's history through a policy gave.</summary>
internal readonly record struct ReplayResult(long Requests, long Refused);

/// <summary>
/// Replays history through the gateway's own limiter arithmetic (<see cref="RateLimitMath.Gcra"/>,
/// <see cref="RateLimitMath.SlidingWindow"/>): the same functions the in-process store calls and the Redis
/// scripts mirror. The history has one-second resolution, so a second's requests are spread evenly over it
/// (request i of n at i/n s): a second's burst is replayed as evenly spaced, which a real burst within the
/// second may not be (a real client can send them all in one millisecond; the replay then admits as many or
/// more, never fewer, for a token bucket whose burst covers the second's count).
/// <para>
/// Incremental: a key whose history comes from <see cref="RateLimitHistoryCache"/> keeps each policy's replay
/// (<see cref="ReplayState"/>) between runs. A <em>reset point</em> is a second whose first request comes so long
/// after the previous request that any limiter state is as good as fresh there: for a token bucket (GCRA) at least
/// capacity × emission interval later (the theoretical arrival time never runs more than that ahead of the last
/// request), for a sliding window in a window two or more after the last request's (both counts are zero again).
/// From a reset point on, a replay that started earlier and one that starts fresh decide every request alike. So
/// appended arrivals continue the kept state; a window start that moved replays only up to the first reset point
/// after it and takes the kept count from there; arrivals re-read from some second replay from the last reset
/// point before it. The result is exactly a replay from scratch (RateLimitReplayTests compares them).
/// </para>
/// </summary>
internal static class RateLimitReplay
{
    public static ReplayResult Run(KeyHistory key, RatePolicy policy)
    {
        if (key.Replays is not { } replays)
        {
            var state = new ReplayState();
            Replay(key, policy, state, 0, long.MaxValue);
            return new ReplayResult(key.Total, state.Refused);
        }

        var kept = Synced(key, replays, policy, long.MaxValue)!;
        return new ReplayResult(key.Total, kept.Refused);
    }

    /// <summary>Refused requests summed over keys.</summary>
    public static long Refused(IEnumerable<KeyHistory> keys, RatePolicy policy)
    {
        long refused = 0;
        foreach (var key in keys) refused += Run(key, policy).Refused;
        return refused;
    }

    /// <summary>
    /// Whether replaying <paramref name="keys"/> through <paramref name="policy"/> refuses at most <paramref name="allowed"/>:
    /// the same answer as <c>Refused(keys, policy) &lt;= allowed</c>, but kept replays are counted first and a replay
    /// from scratch stops once the refusals are over.
    /// </summary>
    public static bool Fits(IReadOnlyList<KeyHistory> keys, RatePolicy policy, long allowed)
    {
        long refused = 0;
        List<KeyHistory>? missing = null;
        foreach (var key in keys)
        {
            if (key.Replays?.Find(policy) is null)
            {
                (missing ??= []).Add(key);
                continue;
            }

            refused += Run(key, policy).Refused;
            if (refused > allowed) return false;
        }

        foreach (var key in missing ?? [])
        {
            if (key.Replays is { } replays)
            {
                if (Synced(key, replays, policy, allowed - refused) is not { } state) return false;
                refused += state.Refused;
            }
            else
            {
                var state = new ReplayState();
                if (!Replay(key, policy, state, 0, allowed - refused)) return false;
                refused += state.Refused;
            }

            if (refused > allowed) return false;
        }

        return true;
    }

    // The key's kept replay for the policy brought up to date (or replayed from scratch and kept). Null when a replay
    // from scratch went over the budget (nothing kept then).
    private static ReplayState? Synced(KeyHistory key, KeyReplays replays, RatePolicy policy, long budget)
    {
        var state = replays.Find(policy);
        if (state is not null && state.Version == replays.Version) return state;
        if (state is not null && replays.ChangedSince(state.Version) is { } changedFrom && Update(key, policy, state, changedFrom))
        {
            state.Version = replays.Version;
            return state;
        }

        state = new ReplayState { Version = replays.Version };
        if (!Replay(key, policy, state, 0, budget)) return null;
        replays.Keep(policy, state);
        return state;
    }

    // Brings a kept replay to the key's current history; false when it must be replayed from scratch.
    private static bool Update(KeyHistory key, RatePolicy policy, ReplayState state, long changedFrom)
    {
        var seconds = key.Seconds;
        if (seconds.Length == 0) return false;
        var first = seconds[0];
        if (first < state.From) return false;
        var validFrom = 0; // the kept marks and count hold for seconds from index validFrom on
        if (first > state.From)
        {
            // The window start moved: replay fresh up to the first reset point (unchanged, already replayed), then the kept run.
            var reset = -1;
            for (var i = 1; i < seconds.Length && seconds[i] < changedFrom && seconds[i] <= state.To; i++)
            {
                if (IsReset(key, i, policy))
                {
                    reset = i;
                    break;
                }
            }

            if (reset < 0) return false;
            var head = new ReplayState();
            Replay(key, policy, head, 0, long.MaxValue, reset);
            var resetSecond = seconds[reset];
            var shift = head.Refused - state.Before(resetSecond);
            var marks = new List<(long Second, long Before)>(state.Marks.Count + 1);
            if (head.Refused != 0) marks.Add((resetSecond, head.Refused));
            foreach (var (second, before) in state.Marks)
            {
                if (second < resetSecond) continue;
                if (second == resetSecond && marks.Count > 0) continue;
                marks.Add((second, before + shift));
            }

            state.Marks = marks;
            state.Refused += shift;
            state.From = first;
            validFrom = reset;
        }

        if (changedFrom == long.MaxValue) return true;
        if (changedFrom > state.To)
        {
            // Only appended: continue from the kept state.
            var next = Array.BinarySearch(seconds, state.To + 1);
            if (next < 0) next = ~next;
            Replay(key, policy, state, next, long.MaxValue, continuing: true);
            return true;
        }

        // Re-read from changedFrom: replay from the last reset point before it.
        var changed = Array.BinarySearch(seconds, changedFrom);
        if (changed < 0) changed = ~changed;
        var from = -1;
        for (var i = changed - 1; i >= Math.Max(1, validFrom); i--)
        {
            if (IsReset(key, i, policy))
            {
                from = i;
                break;
            }
        }

        if (from < 0) return false;
        var at = seconds[from];
        state.Refused = state.Before(at);
        state.Marks.RemoveAll(m => m.Second > at);
        state.Fresh();
        Replay(key, policy, state, from, long.MaxValue, continuing: true);
        return true;
    }

    /// <summary>
    /// Whether second <paramref name="i"/> of the key is a reset point for the policy: its first request comes late
    /// enough after the previous second's last one that the limiter's state no longer matters.
    /// </summary>
    internal static bool IsReset(KeyHistory key, int i, RatePolicy policy)
    {
        if (i <= 0) return true;
        var previousCount = key.Counts[i - 1];
        var lastBefore = (key.Seconds[i - 1] * TimeSpan.TicksPerSecond) + ((previousCount - 1) * (TimeSpan.TicksPerSecond / previousCount));
        var now = key.Seconds[i] * TimeSpan.TicksPerSecond;
        var per = policy.Per.Ticks;
        return policy.Algorithm == RateLimitAlgorithm.SlidingWindow
            ? now / per >= (lastBefore / per) + 2
            : now - lastBefore >= policy.Capacity * (per / policy.Limit);
    }

    // Replays seconds [start, end) into the state (fresh unless continuing), noting a mark at each reset point where the
    // refusals changed. False when the refusals went over the budget (the state is then incomplete).
    private static bool Replay(KeyHistory key, RatePolicy policy, ReplayState state, int start, long budget, int end = -1, bool continuing = false)
    {
        var seconds = key.Seconds;
        var counts = key.Counts;
        if (end < 0) end = seconds.Length;
        if (!continuing)
        {
            state.Fresh();
            state.Refused = 0;
            state.Marks.Clear();
            state.From = seconds.Length > 0 ? seconds[0] : 0;
        }

        var limit = policy.Limit;
        var per = policy.Per.Ticks;
        var emission = per / limit;
        var capacity = policy.Capacity;
        var sliding = policy.Algorithm == RateLimitAlgorithm.SlidingWindow;
        long tat = state.Tat, window = state.Window, previous = state.Previous, current = state.Current, refused = state.Refused;
        var marked = state.Marks.Count == 0 ? 0 : state.Marks[^1].Before;
        for (var i = start; i < end; i++)
        {
            if (refused != marked && (i > start || continuing) && IsReset(key, i, policy))
            {
                state.Marks.Add((seconds[i], refused));
                marked = refused;
            }

            var count = counts[i];
            var second = seconds[i] * TimeSpan.TicksPerSecond;
            var step = TimeSpan.TicksPerSecond / count;
            for (var j = 0; j < count; j++)
            {
                var now = second + (j * step);
                var decision = sliding
                    ? RateLimitMath.SlidingWindow(window, previous, current, now, per, limit, out window, out previous, out current)
                    : RateLimitMath.Gcra(tat, now, emission, capacity, limit, out tat);
                if (decision.Outcome == RateOutcome.Limited) refused++;
            }

            if (refused > budget) return false;
        }

        (state.Tat, state.Window, state.Previous, state.Current, state.Refused) = (tat, window, previous, current, refused);
        if (end > start) state.To = seconds[end - 1];
        return true;
    }
}

/// <summary>Order statistics of per-key values (nearest rank).</summary>
internal static class Percentiles
{
    public static double Of(IReadOnlyList<double> sorted, double p)
    {
        if (sorted.Count == 0) return 0;
        var rank = (int)Math.Ceiling(p * sorted.Count) - 1;
        return sorted[Math.Clamp(rank, 0, sorted.Count - 1)];
    }

    public static double Median(IReadOnlyList<double> sorted) => sorted.Count == 0 ? 0
        : sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[(sorted.Count / 2) - 1] + sorted[sorted.Count / 2]) / 2;
}
