using System.Threading.RateLimiting;
using Portcullis.Configuration;
using Portcullis.Pipeline;
using StackExchange.Redis;

namespace Portcullis.Traffic;

/// <summary>
/// A route's or cluster's in-flight limit: System.Threading.RateLimiting's ConcurrencyLimiter (permits,
/// oldest-first queue). The limiter carries in-flight counts, so a reload that keeps the settings hands
/// the same limiter to the new snapshot (<see cref="TakeOver"/>); changed settings start a fresh one while
/// requests already holding the old one finish against it. With store: redis the limit is one for the
/// whole fleet (<see cref="RedisSlots"/>); the in-process limiter then only counts this instance's share,
/// used while Redis cannot answer (onStoreFailure: local).
/// </summary>
internal sealed class ConcurrencyGate
{
    public ConcurrencyGate(string scope, ConcurrencyOptions options, int instances = 1)
    {
        Scope = scope;
        Options = options;
        Shared = options.Store == TrafficStore.Redis;
        LocalShare = Shared ? (options.Max + Math.Max(1, instances) - 1) / Math.Max(1, instances) : options.Max;
        _keySuffix = "cc:{" + scope + "}";
        RetryAfterSeconds = TrafficMiddleware.Seconds(options.RetryAfter);
        // Compiled with the gate: the refusal depends only on its settings ("This route serves at most ...").
        var kind = scope.StartsWith("cluster:", StringComparison.Ordinal) ? "cluster" : "route";
        RefusalDetail = $"This {kind} serves at most {options.Max} requests at once; retry after {RetryAfterSeconds} s.";
        Limiter = new ConcurrencyLimiter(new ConcurrencyLimiterOptions
        {
            PermitLimit = LocalShare,
            QueueLimit = options.Queue,
            QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
        });
    }

    /// <summary>"route:NAME" or "cluster:NAME".</summary>
    public string Scope { get; }

    public ConcurrencyOptions Options { get; }

    /// <summary>The Retry-After value of a refusal, in whole seconds.</summary>
    public string RetryAfterSeconds { get; }

    /// <summary>The problem detail of a refusal.</summary>
    public string RefusalDetail { get; }

    public ConcurrencyLimiter Limiter { get; private set; }

    /// <summary>store: redis — one limit across every instance sharing the Redis.</summary>
    public bool Shared { get; }

    /// <summary>What the in-process limiter allows: max, or for a shared limit this instance's share (max ÷ instances, rounded up).</summary>
    public int LocalShare { get; }

    private readonly string _keySuffix;
    private KeyCache? _key;

    private sealed record KeyCache(string Prefix, RedisKey Key);

    /// <summary>The limit's sorted set: {prefix}cc:{route:NAME}; the hash tag keeps it in one Redis Cluster slot.</summary>
    internal RedisKey RedisKeyFor(RedisCounterStore store)
    {
        if (Volatile.Read(ref _key) is { } cached && ReferenceEquals(cached.Prefix, store.Options.KeyPrefix)) return cached.Key;
        var key = (RedisKey)(store.Options.KeyPrefix + _keySuffix);
        Volatile.Write(ref _key, new KeyCache(store.Options.KeyPrefix, key));
        return key;
    }

    /// <summary>Keeps the previous generation's limiter when nothing about it changed.</summary>
    public void TakeOver(ConcurrencyGate? previous)
    {
        if (previous is not null && previous.Scope == Scope && previous.Options == Options && previous.LocalShare == LocalShare && !ReferenceEquals(previous.Limiter, Limiter))
        {
            Limiter.Dispose();
            Limiter = previous.Limiter;
        }
    }

    /// <summary>
    /// A slot (Lease set), or a refusal (Lease null). Result and Reason say how a shared limit decided when
    /// Redis could not answer (TrafficResult.None otherwise).
    /// </summary>
    public ValueTask<ConcurrencyEntry> EnterAsync(TrafficStores stores, TimeProvider time, CancellationToken requestAborted)
    {
        if (!Shared) return Local(EnterAsync(time, requestAborted));
        return EnterSharedAsync(stores.Redis);

        static async ValueTask<ConcurrencyEntry> LocalAsync(ValueTask<RateLimitLease?> entering) =>
            await entering.ConfigureAwait(false) is { } lease ? new(lease, TrafficResult.None, null) : new(null, TrafficResult.Refused, ReasonCodes.ConcurrencyLimit);

        static ValueTask<ConcurrencyEntry> Local(ValueTask<RateLimitLease?> entering)
        {
            if (!entering.IsCompletedSuccessfully) return LocalAsync(entering);
            return ValueTask.FromResult(entering.Result is { } lease ? new ConcurrencyEntry(lease, TrafficResult.None, null) : new ConcurrencyEntry(null, TrafficResult.Refused, ReasonCodes.ConcurrencyLimit));
        }
    }

    private async ValueTask<ConcurrencyEntry> EnterSharedAsync(RedisCounterStore? store)
    {
        var (outcome, slot) = store is null ? (SlotOutcome.Unavailable, null) : await store.Slots.AcquireAsync(RedisKeyFor(store), Options.Max, Options.LeaseTtl).ConfigureAwait(false);
        switch (outcome)
        {
            case SlotOutcome.Admitted:
                // The local share counts what Redis admitted here too, so an outage adds to it only up to the share.
                if (Options.OnStoreFailure == StoreFailureMode.Local)
                {
                    var share = Limiter.AttemptAcquire();
                    if (share.IsAcquired) slot!.Share = share;
                    else share.Dispose();
                }

                return new(slot, TrafficResult.None, null);
            case SlotOutcome.Limited:
                return new(null, TrafficResult.Refused, ReasonCodes.ConcurrencyLimit);
        }

        switch (Options.OnStoreFailure)
        {
            case StoreFailureMode.Open:
                return new(NoSlot.Instance, TrafficResult.FailOpen, ReasonCodes.ConcurrencyStoreUnavailableOpen);
            case StoreFailureMode.Closed:
                return new(null, TrafficResult.StoreUnavailableRefused, ReasonCodes.ConcurrencyStoreUnavailable);
            default:
                var lease = Limiter.AttemptAcquire();
                if (lease.IsAcquired) return new(lease, TrafficResult.FallbackAdmitted, ReasonCodes.ConcurrencyStoreUnavailableLocal);
                lease.Dispose();
                return new(null, TrafficResult.FallbackRefused, ReasonCodes.ConcurrencyStoreUnavailableLocalExceeded);
        }
    }

    /// <summary>A slot now, or after queueing for at most queueTimeout; null when refused.</summary>
    public ValueTask<RateLimitLease?> EnterAsync(TimeProvider time, CancellationToken requestAborted)
    {
        var lease = Limiter.AttemptAcquire();
        if (lease.IsAcquired) return ValueTask.FromResult<RateLimitLease?>(lease);
        lease.Dispose();
        return Options.Queue == 0 ? ValueTask.FromResult<RateLimitLease?>(null) : QueueAsync(time, requestAborted);
    }

    private async ValueTask<RateLimitLease?> QueueAsync(TimeProvider time, CancellationToken requestAborted)
    {
        using var timeout = new CancellationTokenSource(Options.QueueTimeout, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, requestAborted);
        try
        {
            var lease = await Limiter.AcquireAsync(1, linked.Token);
            if (lease.IsAcquired) return lease;
            lease.Dispose();
            return null;
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }
}

/// <summary>How a concurrency limit answered: a lease to dispose when the request ends, or none (refused).</summary>
internal readonly record struct ConcurrencyEntry(RateLimitLease? Lease, TrafficResult Result, ReasonCode? Reason);

/// <summary>The "lease" of a request admitted without a slot (a shared limit failing open).</summary>
internal sealed class NoSlot : RateLimitLease
{
    public static readonly NoSlot Instance = new();

    public override bool IsAcquired => true;

    public override IEnumerable<string> MetadataNames => [];

    public override bool TryGetMetadata(string metadataName, out object? metadata)
    {
        metadata = null;
        return false;
    }

    // Shared by every such request: nothing to give back.
    protected override void Dispose(bool disposing) => base.Dispose(disposing);
}
