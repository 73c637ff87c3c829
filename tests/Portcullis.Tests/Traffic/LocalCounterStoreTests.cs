using Microsoft.Extensions.Time.Testing;
using Portcullis.Configuration;
using Portcullis.Routing;
using Portcullis.State;
using Portcullis.Traffic;
using Portcullis.Pipeline;

namespace Portcullis.Tests.Traffic;

/// <summary>Each algorithm's admissions over time, driven by a fake clock through the in-process store.</summary>
public sealed class LocalCounterStoreTests
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 26, 12, 0, 0, TimeSpan.Zero));

    private static CompiledRateLimit Policy(RateLimitAlgorithm algorithm, long limit, TimeSpan per, long? burst = null) => new()
    {
        Name = "p",
        Algorithm = algorithm,
        Limit = limit,
        Per = per,
        Capacity = CompiledRateLimit.CapacityFor(algorithm, limit, burst),
        Store = TrafficStore.Local,
        Key = new TrafficKey([new RequestSource(RequestSourceKind.Consumer, "", 0)]),
    };

    private static int Admit(LocalCounterStore store, CompiledRateLimit policy, int attempts, string key = "alice")
    {
        var admitted = 0;
        for (var i = 0; i < attempts; i++)
        {
            if (store.Rate(policy, key).Outcome == RateOutcome.Allowed) admitted++;
        }

        return admitted;
    }

    [Fact]
    public void Token_bucket_admits_its_burst_at_once_then_refills_at_the_steady_rate()
    {
        var store = new LocalCounterStore(_time);
        var policy = Policy(RateLimitAlgorithm.TokenBucket, limit: 10, per: TimeSpan.FromSeconds(1), burst: 5);

        Assert.Equal(5, Admit(store, policy, 20));
        var refused = store.Rate(policy, "alice");
        Assert.Equal(RateOutcome.Limited, refused.Outcome);
        Assert.Equal(TimeSpan.FromMilliseconds(100), refused.RetryAfter); // one emission interval: 1 s / 10

        _time.Advance(TimeSpan.FromMilliseconds(99));
        Assert.Equal(0, Admit(store, policy, 1));
        _time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(1, Admit(store, policy, 5));

        // A quiet second refills the bucket only up to the burst, never beyond.
        _time.Advance(TimeSpan.FromSeconds(10));
        Assert.Equal(5, Admit(store, policy, 20));
    }

    [Fact]
    public void Token_bucket_over_a_long_run_admits_the_limit_per_period_plus_the_burst()
    {
        var store = new LocalCounterStore(_time);
        var policy = Policy(RateLimitAlgorithm.TokenBucket, limit: 100, per: TimeSpan.FromSeconds(1), burst: 20);
        var admitted = 0;
        for (var ms = 0; ms < 10_000; ms++)
        {
            admitted += Admit(store, policy, 3);
            _time.Advance(TimeSpan.FromMilliseconds(1));
        }

        // 10 s at 100/s, plus the initial burst.
        Assert.InRange(admitted, 1000, 1020);
    }

    [Fact]
    public void Token_bucket_remaining_counts_down_and_reset_says_when_the_bucket_is_full_again()
    {
        var store = new LocalCounterStore(_time);
        var policy = Policy(RateLimitAlgorithm.TokenBucket, limit: 4, per: TimeSpan.FromSeconds(4));
        var remaining = Enumerable.Range(0, 4).Select(_ => store.Rate(policy, "k").Remaining).ToList();
        Assert.Equal([3, 2, 1, 0], remaining);
        Assert.Equal(TimeSpan.FromSeconds(4), store.Rate(policy, "k").Reset);
    }

    [Fact]
    public void Keys_are_counted_separately()
    {
        var store = new LocalCounterStore(_time);
        var policy = Policy(RateLimitAlgorithm.TokenBucket, limit: 2, per: TimeSpan.FromMinutes(1));
        Assert.Equal(2, Admit(store, policy, 5, "alice"));
        Assert.Equal(2, Admit(store, policy, 5, "bob"));
    }

    [Fact]
    public void Spike_arrest_spaces_requests_evenly_and_never_bursts()
    {
        var store = new LocalCounterStore(_time);
        var policy = Policy(RateLimitAlgorithm.SpikeArrest, limit: 10, per: TimeSpan.FromSeconds(1)); // one per 100 ms

        Assert.Equal(1, Admit(store, policy, 10));
        // Even after a long quiet spell only one gets through at once.
        _time.Advance(TimeSpan.FromMinutes(5));
        Assert.Equal(1, Admit(store, policy, 10));

        var admittedAt = new List<long>();
        for (var ms = 0; ms < 1000; ms++)
        {
            _time.Advance(TimeSpan.FromMilliseconds(1));
            if (Admit(store, policy, 1) == 1) admittedAt.Add(ms);
        }

        Assert.Equal(10, admittedAt.Count);
        Assert.All(admittedAt.Zip(admittedAt.Skip(1), (a, b) => b - a), gap => Assert.Equal(100, gap));
    }

    [Fact]
    public void Sliding_window_admits_the_limit_within_a_window_and_weights_the_previous_one()
    {
        var store = new LocalCounterStore(_time);
        var per = TimeSpan.FromSeconds(10);
        var policy = Policy(RateLimitAlgorithm.SlidingWindow, limit: 10, per: per);
        // Start exactly at a window edge.
        var now = _time.GetUtcNow().UtcTicks;
        _time.Advance(TimeSpan.FromTicks(per.Ticks - (now % per.Ticks)));

        Assert.Equal(10, Admit(store, policy, 15));
        var refused = store.Rate(policy, "alice");
        Assert.Equal(RateOutcome.Limited, refused.Outcome);

        // Into the next window by 30%: the previous 10 still weigh 7, so 3 more fit.
        _time.Advance(per + TimeSpan.FromSeconds(3));
        Assert.Equal(3, Admit(store, policy, 10));

        // Two windows later the old count no longer weighs anything.
        _time.Advance(per * 2);
        Assert.Equal(10, Admit(store, policy, 15));
    }

    [Fact]
    public void Sliding_window_edge_burst_is_bounded_unlike_a_fixed_window()
    {
        var store = new LocalCounterStore(_time);
        var per = TimeSpan.FromSeconds(1);
        var policy = Policy(RateLimitAlgorithm.SlidingWindow, limit: 100, per: per);
        var now = _time.GetUtcNow().UtcTicks;
        _time.Advance(TimeSpan.FromTicks(per.Ticks - (now % per.Ticks)));

        // 100 at the very end of one window, then as many as possible right after the edge.
        _time.Advance(TimeSpan.FromMilliseconds(990));
        Assert.Equal(100, Admit(store, policy, 200));
        _time.Advance(TimeSpan.FromMilliseconds(20));
        // A fixed window would admit another 100 here; the sliding window only what the weight frees (2%).
        Assert.InRange(Admit(store, policy, 200), 1, 2);
    }

    [Fact]
    public void Sliding_window_retry_after_points_to_when_a_request_fits_again()
    {
        var store = new LocalCounterStore(_time);
        var per = TimeSpan.FromSeconds(10);
        var policy = Policy(RateLimitAlgorithm.SlidingWindow, limit: 5, per: per);
        var now = _time.GetUtcNow().UtcTicks;
        _time.Advance(TimeSpan.FromTicks(per.Ticks - (now % per.Ticks)));
        Admit(store, policy, 5);
        var refused = store.Rate(policy, "alice");
        Assert.Equal(RateOutcome.Limited, refused.Outcome);

        _time.Advance(refused.RetryAfter - TimeSpan.FromMilliseconds(1));
        Assert.Equal(RateOutcome.Limited, store.Rate(policy, "alice").Outcome);
        _time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(RateOutcome.Allowed, store.Rate(policy, "alice").Outcome);
    }

    [Fact]
    public void Concurrent_callers_never_get_more_than_the_limit()
    {
        var store = new LocalCounterStore(_time);
        var policy = Policy(RateLimitAlgorithm.TokenBucket, limit: 1000, per: TimeSpan.FromHours(1));
        var admitted = 0;
        Parallel.For(0, 8, _ =>
        {
            for (var i = 0; i < 1000; i++)
            {
                if (store.Rate(policy, "shared").Outcome == RateOutcome.Allowed) Interlocked.Increment(ref admitted);
            }
        });
        Assert.Equal(1000, admitted);
    }

    [Fact]
    public void Counters_survive_a_reload_that_keeps_the_policy_and_restart_when_it_changes()
    {
        var store = new LocalCounterStore(_time);
        var before = Policy(RateLimitAlgorithm.TokenBucket, limit: 3, per: TimeSpan.FromMinutes(1));
        store.Bind([before], []);
        Assert.Equal(3, Admit(store, before, 5));

        var same = Policy(RateLimitAlgorithm.TokenBucket, limit: 3, per: TimeSpan.FromMinutes(1));
        store.Bind([same], []);
        Assert.Equal(0, Admit(store, same, 5));

        var changed = Policy(RateLimitAlgorithm.TokenBucket, limit: 4, per: TimeSpan.FromMinutes(1));
        store.Bind([changed], []);
        Assert.Equal(4, Admit(store, changed, 5));
    }
}
