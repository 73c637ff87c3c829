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
/// </summary>
internal static class RateLimitReplay
{
    public static ReplayResult Run(KeyHistory key, RatePolicy policy)
    {
        var limit = policy.Limit;
        var per = policy.Per.Ticks;
        var emission = per / limit;
        var capacity = policy.Capacity;
        var sliding = policy.Algorithm == RateLimitAlgorithm.SlidingWindow;
        long tat = 0, window = 0, previous = 0, current = 0, refused = 0, requests = 0;
        for (var i = 0; i < key.Seconds.Length; i++)
        {
            var count = key.Counts[i];
            var start = key.Seconds[i] * TimeSpan.TicksPerSecond;
            var step = TimeSpan.TicksPerSecond / count;
            for (var j = 0; j < count; j++)
            {
                var now = start + (j * step);
                var decision = sliding
                    ? RateLimitMath.SlidingWindow(window, previous, current, now, per, limit, out window, out previous, out current)
                    : RateLimitMath.Gcra(tat, now, emission, capacity, limit, out tat);
                if (decision.Outcome == RateOutcome.Limited) refused++;
            }

            requests += count;
        }

        return new ReplayResult(requests, refused);
    }

    /// <summary>Refused requests summed over keys.</summary>
    public static long Refused(IEnumerable<KeyHistory> keys, RatePolicy policy)
    {
        long refused = 0;
        foreach (var key in keys) refused += Run(key, policy).Refused;
        return refused;
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
