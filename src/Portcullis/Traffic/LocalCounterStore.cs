using System.Collections.Concurrent;
using BitFaster.Caching.Lru;
using Portcullis.Configuration;

namespace Portcullis.Traffic;

/// <summary>
/// In-process counters (the embedded default). Each key's state is one <see cref="long"/> updated by
/// compare-and-swap, so deciding takes no lock and allocates nothing once the key is known. Keys live in
/// a bounded LRU per policy; evicting an idle key forgets its count (at worst it is admitted as new).
/// </summary>
internal sealed class LocalCounterStore(TimeProvider time) : ICounterStore
{
    /// <summary>Distinct keys remembered per policy.</summary>
    public const int KeysPerPolicy = 100_000;

    // Counters by policy identity, so a reload that leaves a policy's settings alone keeps its counts.
    private readonly ConcurrentDictionary<string, LocalRateCounters> _rates = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, LocalQuotaCounters> _quotas = new(StringComparer.Ordinal);

    /// <summary>Attaches counters to a snapshot's policies before it goes live; drops those of removed policies.</summary>
    public void Bind(IEnumerable<CompiledRateLimit> rateLimits, IEnumerable<CompiledQuota> quotas)
    {
        var liveRates = new HashSet<string>(StringComparer.Ordinal);
        foreach (var policy in rateLimits)
        {
            liveRates.Add(policy.Identity);
            policy.LocalCounters = _rates.GetOrAdd(policy.Identity, static _ => new LocalRateCounters());
        }

        var liveQuotas = new HashSet<string>(StringComparer.Ordinal);
        foreach (var quota in quotas)
        {
            liveQuotas.Add(quota.Identity);
            quota.LocalCounters = _quotas.GetOrAdd(quota.Identity, static _ => new LocalQuotaCounters());
        }

        foreach (var stale in _rates.Keys.Where(k => !liveRates.Contains(k))) _rates.TryRemove(stale, out _);
        foreach (var stale in _quotas.Keys.Where(k => !liveQuotas.Contains(k))) _quotas.TryRemove(stale, out _);
    }

    public ValueTask<RateDecision> RateAsync(CompiledRateLimit policy, string key, CancellationToken cancellationToken) =>
        ValueTask.FromResult(Rate(policy, key));

    public RateDecision Rate(CompiledRateLimit policy, string key)
    {
        var counters = policy.LocalCounters ?? _rates.GetOrAdd(policy.Identity, static _ => new LocalRateCounters());
        var cell = counters.Cells.GetOrAdd(key, static _ => new Cell());
        var now = time.GetUtcNow().UtcTicks;
        return policy.Algorithm == RateLimitAlgorithm.SlidingWindow
            ? SlidingWindow(cell, policy, now)
            : Gcra(cell, policy, now);
    }

    private static RateDecision Gcra(Cell cell, CompiledRateLimit policy, long now)
    {
        while (true)
        {
            var tat = Volatile.Read(ref cell.State);
            var decision = RateLimitMath.Gcra(tat, now, policy.EmissionTicks, policy.Capacity, policy.Limit, out var next);
            if (decision.Outcome != RateOutcome.Allowed || Interlocked.CompareExchange(ref cell.State, next, tat) == tat) return decision;
        }
    }

    // State layout: window index (low 22 bits) | previous count (21 bits) | current count (21 bits).
    // Counts therefore stop at 2^21 - 1 per window, which validation keeps limits below.
    private const int CountBits = 21;
    private const long CountMask = (1L << CountBits) - 1;
    private const long WindowMask = (1L << 22) - 1;
    internal const long MaxSlidingWindowLimit = CountMask - 1;

    private static RateDecision SlidingWindow(Cell cell, CompiledRateLimit policy, long now)
    {
        var per = policy.Per.Ticks;
        var nowWindow = now / per;
        while (true)
        {
            var state = Volatile.Read(ref cell.State);
            var storedWindow = state & WindowMask;
            // Only the low bits are kept: rebuild the absolute index closest below now's.
            var window = nowWindow - ((nowWindow - storedWindow) & WindowMask);
            var previous = (state >> 22) & CountMask;
            var current = (state >> (22 + CountBits)) & CountMask;
            if (state == 0) window = nowWindow;
            var decision = RateLimitMath.SlidingWindow(window, previous, current, now, per, policy.Limit, out var newWindow, out var newPrevious, out var newCurrent);
            if (decision.Outcome != RateOutcome.Allowed) return decision;
            var next = (newWindow & WindowMask) | (Math.Min(newPrevious, CountMask) << 22) | (Math.Min(newCurrent, CountMask) << (22 + CountBits));
            if (Interlocked.CompareExchange(ref cell.State, next, state) == state) return decision;
        }
    }

    // State layout: window index (low 24 bits) | count (high 40 bits).
    private const long QuotaWindowMask = (1L << 24) - 1;

    public ValueTask<RateDecision> QuotaAsync(CompiledQuota quota, string key, QuotaWindow window, CancellationToken cancellationToken)
    {
        var counters = quota.LocalCounters ?? _quotas.GetOrAdd(quota.Identity, static _ => new LocalQuotaCounters());
        var cell = counters.Cells.GetOrAdd(key, static _ => new Cell());
        var reset = window.End - time.GetUtcNow();
        while (true)
        {
            var state = Volatile.Read(ref cell.State);
            var used = (state & QuotaWindowMask) == (window.Index & QuotaWindowMask) ? state >> 24 : 0;
            if (used >= quota.Limit)
            {
                return ValueTask.FromResult(new RateDecision(RateOutcome.Limited, quota.Limit, 0, reset, reset));
            }

            var next = ((used + 1) << 24) | (window.Index & QuotaWindowMask);
            if (Interlocked.CompareExchange(ref cell.State, next, state) == state)
            {
                return ValueTask.FromResult(new RateDecision(RateOutcome.Allowed, quota.Limit, quota.Limit - used - 1, TimeSpan.Zero, reset));
            }
        }
    }

    public ValueTask<long?> QuotaUsedAsync(CompiledQuota quota, string key, QuotaWindow window, CancellationToken cancellationToken)
    {
        var counters = quota.LocalCounters ?? _quotas.GetOrAdd(quota.Identity, static _ => new LocalQuotaCounters());
        if (!counters.Cells.TryGet(key, out var cell)) return ValueTask.FromResult<long?>(0);
        var state = Volatile.Read(ref cell.State);
        return ValueTask.FromResult<long?>((state & QuotaWindowMask) == (window.Index & QuotaWindowMask) ? state >> 24 : 0);
    }

    internal sealed class Cell
    {
        public long State;
    }
}

/// <summary>One rate-limit policy's in-process counters (bounded).</summary>
internal sealed class LocalRateCounters
{
    public ConcurrentLru<string, LocalCounterStore.Cell> Cells { get; } = new(LocalCounterStore.KeysPerPolicy);
}

/// <summary>One quota's in-process counters (bounded).</summary>
internal sealed class LocalQuotaCounters
{
    public ConcurrentLru<string, LocalCounterStore.Cell> Cells { get; } = new(LocalCounterStore.KeysPerPolicy);
}
