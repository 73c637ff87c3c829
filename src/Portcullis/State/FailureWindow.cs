namespace Portcullis.State;

/// <summary>When the circuit breaker opens: at least <paramref name="MinFailures"/> failed calls and at least <paramref name="Ratio"/> of all calls failed within <paramref name="Window"/>.</summary>
/// <remarks><paramref name="Grace"/>: a call the caller stopped waiting for counts as failed only if Redis has not answered
/// it within this much more time (the caller got onStoreFailure at the timeout either way); zero counts it at once.</remarks>
internal readonly record struct BreakerPolicy(int MinFailures, double Ratio, TimeSpan Window, TimeSpan Grace)
{
    /// <summary>The counters' store: several failures and half the calls, over 10 s, so one late answer never opens it; an answer up to 500 ms late is no failure.</summary>
    public static readonly BreakerPolicy Ratio50 = new(5, 0.5, TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(500));

    /// <summary>Any failure opens (the session store: a caller there waits out the whole timeout, and no local fallback exists).</summary>
    public static readonly BreakerPolicy FirstFailure = new(1, 0, TimeSpan.FromSeconds(10), TimeSpan.Zero);
}

/// <summary>
/// Calls and failures over a sliding window of ten buckets, lock-free on the request path (a bucket is
/// reset under a lock only when its second has passed). Counts are approximate at bucket boundaries,
/// which a breaker threshold does not mind.
/// </summary>
internal sealed class FailureWindow(TimeProvider time, BreakerPolicy policy)
{
    private const int Buckets = 10;
    private readonly long _bucketTicks = Math.Max(1, policy.Window.Ticks / Buckets);
    private readonly long[] _epochs = new long[Buckets];
    private readonly long[] _calls = new long[Buckets];
    private readonly long[] _failures = new long[Buckets];
    private readonly Lock _roll = new();

    public BreakerPolicy Policy => policy;

    public void Record(bool failed)
    {
        var epoch = time.GetUtcNow().UtcTicks / _bucketTicks;
        var i = (int)(epoch % Buckets);
        if (Volatile.Read(ref _epochs[i]) != epoch)
        {
            lock (_roll)
            {
                if (_epochs[i] != epoch)
                {
                    Volatile.Write(ref _calls[i], 0);
                    Volatile.Write(ref _failures[i], 0);
                    Volatile.Write(ref _epochs[i], epoch);
                }
            }
        }

        Interlocked.Increment(ref _calls[i]);
        if (failed) Interlocked.Increment(ref _failures[i]);
    }

    /// <summary>Whether the failures within the window reach the policy's count and ratio.</summary>
    public bool ShouldOpen()
    {
        var (calls, failures) = Totals();
        return failures >= policy.MinFailures && failures >= policy.Ratio * calls;
    }

    /// <summary>Calls and failures recorded within the window.</summary>
    public (long Calls, long Failures) Totals()
    {
        var epoch = time.GetUtcNow().UtcTicks / _bucketTicks;
        long calls = 0, failures = 0;
        for (var i = 0; i < Buckets; i++)
        {
            if (epoch - Volatile.Read(ref _epochs[i]) >= Buckets) continue;
            calls += Volatile.Read(ref _calls[i]);
            failures += Volatile.Read(ref _failures[i]);
        }

        return (calls, failures);
    }

    /// <summary>Forgets everything (the circuit closed again: old failures must not reopen it).</summary>
    public void Reset()
    {
        lock (_roll)
        {
            Array.Clear(_epochs);
            Array.Clear(_calls);
            Array.Clear(_failures);
        }
    }
}
