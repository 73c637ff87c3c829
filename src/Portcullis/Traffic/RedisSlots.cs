using System.Collections.Concurrent;
using System.Globalization;
using System.Security.Cryptography;
using System.Threading.RateLimiting;
using StackExchange.Redis;

namespace Portcullis.Traffic;

/// <summary>The answer of a shared concurrency limit.</summary>
internal enum SlotOutcome
{
    Admitted,
    Limited,
    Unavailable,
}

/// <summary>
/// Slots of shared (store: redis) concurrency limits: a distributed semaphore with leases. Each limit is a
/// sorted set of lease ids scored by expiry on Redis server time; acquiring is one Lua script (drop expired
/// leases, count, add if below max), releasing one ZREM. Leases expire after the limit's leaseTtl unless
/// renewed, so the slots of an instance that crashed or lost Redis come back on their own. This instance
/// renews the leases it holds every third of their TTL, all leases of one limit in one script, from one
/// timer (not one per request). Calls go through the store's circuit breaker and timeout.
/// </summary>
internal sealed class RedisSlots : IDisposable
{
    // How often due renewals are looked for; a lease is renewed a third of its TTL (at least 1 s) after it was last.
    private static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(200);

    private readonly RedisCounterStore _store;
    private readonly TimeProvider _time;
    // Lease ids are unique across the fleet: a random instance id and a counter.
    private readonly string _instance = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6)) + ":";
    private readonly ConcurrentDictionary<RedisSlotLease, byte> _held = new();
    private long _next;
    private ITimer? _timer;
    private int _renewing;
    private int _disposed;

    public RedisSlots(RedisCounterStore store, TimeProvider time)
    {
        _store = store;
        _time = time;
    }

    /// <summary>Leases this instance holds right now (all limits).</summary>
    public int Held => _held.Count;

    /// <summary>
    /// Takes a slot: one round trip. Not cancelled by the client going away, so the gateway always knows
    /// whether it holds a lease it must release.
    /// </summary>
    public async ValueTask<(SlotOutcome Outcome, RedisSlotLease? Lease)> AcquireAsync(RedisKey key, int max, TimeSpan ttl)
    {
        var id = string.Concat(_instance, Interlocked.Increment(ref _next).ToString(CultureInfo.InvariantCulture));
        var ttlMillis = (long)Math.Ceiling(ttl.TotalMilliseconds);
        var (ok, result) = await _store.RunAsync(
            static (db, call) => db.ScriptEvaluateAsync(RedisScripts.ConcurrencyAcquire, [call.Key], [call.Max, call.Ttl, call.Id]),
            (Key: key, Max: max, Ttl: ttlMillis, Id: id),
            CancellationToken.None).ConfigureAwait(false);
        if (!ok)
        {
            // A late answer may still have added the lease: a ZREM queued behind it on the same connection
            // takes it out again (without it, the slot would stay taken for leaseTtl).
            Remove(key, id);
            return (SlotOutcome.Unavailable, null);
        }

        var values = (long[])result!;
        if (values[0] != 1) return (SlotOutcome.Limited, null);
        var lease = new RedisSlotLease(this, key, id, ttlMillis, _time.GetTimestamp() + RenewEvery(ttlMillis));
        _held.TryAdd(lease, 0);
        if (Volatile.Read(ref _timer) is null) StartTimer();
        return (SlotOutcome.Admitted, lease);
    }

    /// <summary>Gives a slot back (in the background: the response is not held up by it).</summary>
    internal void Release(RedisSlotLease lease)
    {
        _held.TryRemove(lease, out _);
        Remove(lease.Key, lease.Id);
    }

    private void Remove(RedisKey key, string id) =>
        _ = _store.RunAsync(static (db, call) => db.SortedSetRemoveAsync(call.Key, call.Id), (Key: key, Id: id), CancellationToken.None).AsTask();

    private long RenewEvery(long ttlMillis) => (long)(TimeSpan.FromMilliseconds(ttlMillis / 3.0).TotalSeconds * _time.TimestampFrequency);

    private void StartTimer()
    {
        var timer = _time.CreateTimer(static state => _ = ((RedisSlots)state!).RenewAsync(), this, Tick, Tick);
        if (Interlocked.CompareExchange(ref _timer, timer, null) is not null || Volatile.Read(ref _disposed) != 0) timer.Dispose();
    }

    /// <summary>Renews the leases that are due, one script per limit.</summary>
    internal async Task RenewAsync()
    {
        if (_held.IsEmpty || Interlocked.CompareExchange(ref _renewing, 1, 0) != 0) return;
        try
        {
            var now = _time.GetTimestamp();
            Dictionary<(RedisKey Key, long Ttl), List<RedisSlotLease>>? due = null;
            foreach (var lease in _held.Keys)
            {
                if (lease.RenewDue > now) continue;
                due ??= [];
                if (!due.TryGetValue((lease.Key, lease.TtlMillis), out var list)) due[(lease.Key, lease.TtlMillis)] = list = [];
                list.Add(lease);
            }

            if (due is null) return;
            await Task.WhenAll(due.Select(async group =>
            {
                var arguments = new RedisValue[group.Value.Count + 1];
                arguments[0] = group.Key.Ttl;
                for (var i = 0; i < group.Value.Count; i++) arguments[i + 1] = group.Value[i].Id;
                var (ok, _) = await _store.RunAsync(
                    static (db, call) => db.ScriptEvaluateAsync(RedisScripts.ConcurrencyRenew, [call.Key], call.Arguments),
                    (group.Key.Key, Arguments: arguments),
                    CancellationToken.None).ConfigureAwait(false);
                // A failed renewal is tried again at the next tick; the lease stays valid until its TTL runs out.
                if (!ok) return;
                var next = _time.GetTimestamp() + RenewEvery(group.Key.Ttl);
                foreach (var lease in group.Value) lease.RenewDue = next;
            })).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // RunAsync does not throw; anything else must not take the timer down.
        }
        finally
        {
            Volatile.Write(ref _renewing, 0);
        }
    }

    public void Dispose()
    {
        Volatile.Write(ref _disposed, 1);
        Interlocked.Exchange(ref _timer, null)?.Dispose();
    }
}

/// <summary>One slot of a shared concurrency limit, released when disposed (once), with the local-share permit it may carry.</summary>
internal sealed class RedisSlotLease(RedisSlots owner, RedisKey key, string id, long ttlMillis, long renewDue) : RateLimitLease
{
    private long _renewDue = renewDue;
    private int _released;

    public RedisKey Key { get; } = key;

    public string Id { get; } = id;

    public long TtlMillis { get; } = ttlMillis;

    /// <summary>Stopwatch timestamp at which the lease is next renewed.</summary>
    public long RenewDue
    {
        get => Volatile.Read(ref _renewDue);
        set => Volatile.Write(ref _renewDue, value);
    }

    /// <summary>A permit of the limit's local share, held too so an outage counts what Redis admitted here.</summary>
    public RateLimitLease? Share { get; set; }

    public override bool IsAcquired => true;

    public override IEnumerable<string> MetadataNames => [];

    public override bool TryGetMetadata(string metadataName, out object? metadata)
    {
        metadata = null;
        return false;
    }

    protected override void Dispose(bool disposing)
    {
        if (Interlocked.Exchange(ref _released, 1) == 0)
        {
            Share?.Dispose();
            owner.Release(this);
        }

        base.Dispose(disposing);
    }
}
