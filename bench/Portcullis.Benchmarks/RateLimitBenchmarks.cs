using BenchmarkDotNet.Attributes;
using Portcullis.Configuration;
using Portcullis.Routing;
using Portcullis.State;
using Portcullis.Traffic;
using Portcullis.Pipeline;

namespace Portcullis.Benchmarks;

/// <summary>
/// The in-process rate-limit decision, <see cref="LocalCounterStore.Rate"/>, for a key the store already
/// knows (the hit path: LRU lookup of the key's cell, clock read, the algorithm's arithmetic, one
/// compare-and-swap). The policies are built as LocalCounterStoreTests does and always admit:
/// <list type="bullet">
/// <item>with a stepping clock (10 µs of simulated time per decision, i.e. 100,000 requests/s against a
/// limit of 1,000,000 per second): a valid config (validation allows at most one request per µs, and a
/// local sliding window at most 2,097,150 per window), so a tight loop never exhausts it;</item>
/// <item>with the real clock (<see cref="TimeProvider.System"/>): a token bucket whose burst is so large
/// that the loop cannot drain it, to show the cost of reading the system clock.</item>
/// </list>
/// Limited decisions are not measured here (they return early, before the compare-and-swap).
/// </summary>
[MemoryDiagnoser]
public class RateLimitBenchmarks
{
    private const string Key = "bench-user";
    private LocalCounterStore _stepping = null!;
    private LocalCounterStore _system = null!;
    private CompiledRateLimit _tokenBucket = null!;
    private CompiledRateLimit _slidingWindow = null!;
    private CompiledRateLimit _tokenBucketHugeBurst = null!;

    private static CompiledRateLimit Policy(string name, RateLimitAlgorithm algorithm, long limit, TimeSpan per, long? burst = null) => new()
    {
        Name = name,
        Algorithm = algorithm,
        Limit = limit,
        Per = per,
        Capacity = CompiledRateLimit.CapacityFor(algorithm, limit, burst),
        Store = TrafficStore.Local,
        Key = new TrafficKey([new RequestSource(RequestSourceKind.Consumer, "", 0)]),
    };

    [GlobalSetup]
    public void Setup()
    {
        _stepping = new LocalCounterStore(new SteppingClock(TimeSpan.FromMicroseconds(10)));
        _system = new LocalCounterStore(TimeProvider.System);
        _tokenBucket = Policy("tb", RateLimitAlgorithm.TokenBucket, 1_000_000, TimeSpan.FromSeconds(1));
        _slidingWindow = Policy("sw", RateLimitAlgorithm.SlidingWindow, 1_000_000, TimeSpan.FromSeconds(1));
        _tokenBucketHugeBurst = Policy("tb-system", RateLimitAlgorithm.TokenBucket, 1_000_000, TimeSpan.FromSeconds(1), burst: 1_000_000_000_000);
        _stepping.Bind([_tokenBucket, _slidingWindow], []);
        _system.Bind([_tokenBucketHugeBurst], []);

        // Make the key known (the first decision adds its cell) and check that the loop is all admissions.
        for (var i = 0; i < 3_000_000; i++)
        {
            if (_stepping.Rate(_tokenBucket, Key).Outcome != RateOutcome.Allowed) throw new InvalidOperationException("the token bucket refused");
            if (_stepping.Rate(_slidingWindow, Key).Outcome != RateOutcome.Allowed) throw new InvalidOperationException("the sliding window refused");
            if (_system.Rate(_tokenBucketHugeBurst, Key).Outcome != RateOutcome.Allowed) throw new InvalidOperationException("the system-clock token bucket refused");
        }
    }

    [Benchmark]
    public long TokenBucket() => _stepping.Rate(_tokenBucket, Key).Remaining;

    [Benchmark]
    public long SlidingWindow() => _stepping.Rate(_slidingWindow, Key).Remaining;

    [Benchmark]
    public long TokenBucketSystemClock() => _system.Rate(_tokenBucketHugeBurst, Key).Remaining;

    /// <summary>Simulated time that moves on by a fixed step at every read (single-threaded use only).</summary>
    private sealed class SteppingClock(TimeSpan step) : TimeProvider
    {
        private long _ticks = new DateTimeOffset(2026, 11, 26, 12, 0, 0, TimeSpan.Zero).UtcTicks;

        public override DateTimeOffset GetUtcNow() => new(_ticks += step.Ticks, TimeSpan.Zero);
    }
}
