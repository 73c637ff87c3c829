namespace Portcullis.Traffic;

/// <summary>
/// The counting rules, as pure functions over a little state, so the in-process store and the Redis
/// scripts (State/RedisScripts.cs, the same arithmetic in Lua) decide identically. Times are in ticks
/// (100 ns) here and in microseconds in Redis.
/// </summary>
internal static class RateLimitMath
{
    /// <summary>
    /// GCRA (generic cell rate algorithm, a token bucket kept as one timestamp): the theoretical arrival
    /// time <paramref name="tat"/> advances by the emission interval per admitted request; a request is
    /// admitted while the TAT stays within capacity × emission of now. Spike arrest is capacity 1.
    /// </summary>
    public static RateDecision Gcra(long tat, long now, long emission, long capacity, long limit, out long newTat)
    {
        var start = Math.Max(tat, now);
        var next = start + emission;
        var allowAt = next - (capacity * emission);
        if (now < allowAt)
        {
            newTat = tat;
            return new RateDecision(RateOutcome.Limited, limit, 0, TimeSpan.FromTicks(allowAt - now), TimeSpan.FromTicks(start - now));
        }

        newTat = next;
        var remaining = Math.Max(0, ((capacity * emission) - (next - now)) / emission);
        return new RateDecision(RateOutcome.Allowed, limit, remaining, TimeSpan.Zero, TimeSpan.FromTicks(next - now));
    }

    /// <summary>
    /// Sliding window counter (the Cloudflare/Kong approximation): the previous window's count weighted by
    /// how much of it still overlaps the sliding window, plus the current window's count.
    /// </summary>
    public static RateDecision SlidingWindow(long window, long previous, long current, long now, long per, long limit, out long newWindow, out long newPrevious, out long newCurrent)
    {
        var nowWindow = now / per;
        if (nowWindow != window)
        {
            previous = nowWindow == window + 1 ? current : 0;
            current = 0;
            window = nowWindow;
        }

        var elapsed = now - (nowWindow * per);
        var weight = (double)(per - elapsed) / per;
        var estimate = (previous * weight) + current;
        newWindow = window;
        newPrevious = previous;
        if (estimate + 1 > limit)
        {
            newCurrent = current;
            return new RateDecision(RateOutcome.Limited, limit, 0, TimeSpan.FromTicks(SlidingRetryAfter(previous, current, elapsed, per, limit)), TimeSpan.FromTicks(per - elapsed));
        }

        newCurrent = current + 1;
        var remaining = Math.Max(0, (long)Math.Floor(limit - estimate - 1));
        return new RateDecision(RateOutcome.Allowed, limit, remaining, TimeSpan.Zero, TimeSpan.FromTicks(per - elapsed));
    }

    // Time until the weighted estimate leaves room for one more request.
    private static long SlidingRetryAfter(long previous, long current, long elapsed, long per, long limit)
    {
        if (current + 1 <= limit && previous > 0)
        {
            // previous * (per - t) / per + current + 1 <= limit  ⇔  t >= per * (1 - (limit - current - 1) / previous)
            var t = (long)Math.Ceiling(per * (1 - ((double)(limit - current - 1) / previous)));
            return Math.Max(1, t - elapsed);
        }

        // The current window alone is full: next window, where it becomes the weighted previous one.
        var untilNext = per - elapsed;
        if (current == 0) return untilNext;
        var intoNext = (long)Math.Ceiling(per * (1 - ((double)(limit - 1) / current)));
        return untilNext + Math.Max(0, intoNext);
    }
}

internal enum RateOutcome
{
    Allowed,
    Limited,

    /// <summary>The store could not answer in time; the policy's onStoreFailure decides.</summary>
    StoreUnavailable,

    /// <summary>The store could not answer; this instance's local share admitted the request (onStoreFailure: local).</summary>
    FallbackAllowed,

    /// <summary>The store could not answer; this instance's local share is used up (onStoreFailure: local).</summary>
    FallbackLimited,
}

/// <summary>One counting decision: outcome, the limit, what remains, when to retry and when the window resets.</summary>
internal readonly record struct RateDecision(RateOutcome Outcome, long Limit, long Remaining, TimeSpan RetryAfter, TimeSpan Reset)
{
    public static RateDecision Unavailable(long limit) => new(RateOutcome.StoreUnavailable, limit, 0, TimeSpan.Zero, TimeSpan.Zero);
}
