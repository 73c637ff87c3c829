using BitFaster.Caching.Lru;
using StackExchange.Redis;

namespace Portcullis.Traffic;

/// <summary>
/// Approximate mode of one sliding-window policy on Redis: each decision is made here, with no round
/// trip, from the global counts last read from Redis plus what this gateway admitted since; a timer every
/// <c>syncEvery</c> pushes those local counts (one <see cref="RedisScripts.SlidingSync"/> per active key,
/// pipelined) and reads the global counts back.
/// </summary>
/// <remarks>
/// <para>Error bound. Another gateway's admissions reach this one's view at most two sync intervals
/// later (up to one until that gateway pushes them, up to one more until this one reads them back). So
/// with N gateways, on top of the sliding window's own approximation, a window admits at most
/// (N − 1) × (requests one gateway admits in 3 × syncEvery) more than the limit (a key whose view is
/// older than 3 × syncEvery is decided strictly, with a round trip, until a sync refreshes it); with the load spread
/// evenly at R requests per second in total that is about 2 × syncEvery × R × (N − 1) / N. A key nobody
/// used for a while starts from a view that may be that old, so the mode suits hot keys, for which it is
/// meant. It never admits fewer than strict mode would, except that counts of a key evicted from the
/// bounded cell cache before its next sync are lost.</para>
/// <para>Windows follow Redis server time: each sync measures the server clock against this machine's,
/// and local decisions use the corrected clock, so gateways with skewed clocks still agree on windows
/// (to within a network round trip).</para>
/// </remarks>
internal sealed class RedisApproximateCounters : IDisposable
{
    /// <summary>Distinct keys counted per approximate policy; the least recently used are forgotten beyond this.</summary>
    internal const int MaxKeys = 10_000;

    // A key not decided on for this many sync intervals stops being synchronised (its view goes stale).
    private const int RefreshIntervals = 10;

    // A sync waits this long for calls that outlived the store timeout before it gives up on their counts.
    private static readonly TimeSpan StragglerLimit = TimeSpan.FromSeconds(30);

    private readonly RedisCounterStore _store;
    private readonly CompiledRateLimit _policy;
    private readonly long _per;
    private readonly long _ttlMillis;
    private readonly long _refreshMicros;
    private readonly TimeSpan _forgetAfter;
    private readonly ConcurrentLru<string, Cell> _cells = new(MaxKeys);
    private readonly TimeSpan _every;
    private readonly long _staleMicros;
    private ITimer? _timer;
    private int _started;
    private DateTimeOffset _lastActive;
    private int _syncing;
    private int _disposed;

    public RedisApproximateCounters(RedisCounterStore store, CompiledRateLimit policy)
    {
        _store = store;
        _policy = policy;
        _per = RedisCounterStore.PerMicros(policy);
        _ttlMillis = RedisCounterStore.SlidingTtlMillis(_per);
        var every = policy.SyncEvery > TimeSpan.Zero ? policy.SyncEvery : TimeSpan.FromMilliseconds(100);
        _refreshMicros = every.Ticks / 10 * RefreshIntervals;
        _forgetAfter = TimeSpan.FromTicks(Math.Max(2 * policy.Per.Ticks, TimeSpan.TicksPerMinute));
        _lastActive = store.Time.GetUtcNow();
        _every = every;
        _staleMicros = every.Ticks / 10 * StaleIntervals;
    }

    // The timer starts with the first decision, not in the constructor: a concurrent GetOrAdd may build an
    // instance that loses the race and is never used, and it must not leave a timer running.
    private void Start()
    {
        if (Interlocked.CompareExchange(ref _started, 1, 0) != 0) return;
        Interlocked.Exchange(ref _timer, _store.Time.CreateTimer(static state => ((RedisApproximateCounters)state!).OnTimer(), this, _every, _every));
        if (Volatile.Read(ref _disposed) != 0) Interlocked.Exchange(ref _timer, null)?.Dispose();
    }

    /// <summary>
    /// Decides locally, in microseconds of (estimated) Redis server time; false when this key's view of the
    /// global counts is missing or older than <see cref="StaleIntervals"/> sync intervals (a new key, or
    /// syncs delayed by a starved thread pool or a slow Redis), and the caller must decide strictly.
    /// That keeps the documented bound true whatever the timer does: a view is never older than that.
    /// </summary>
    public bool TryDecide(string key, out RateDecision decision)
    {
        if (Volatile.Read(ref _started) == 0) Start();
        var now = NowMicros();
        var cell = _cells.GetOrAdd(key, static _ => new Cell());
        lock (cell.Gate)
        {
            cell.LastUsed = now;
            if (now - cell.SyncedAt > _staleMicros)
            {
                decision = default;
                return false;
            }

            var window = now / _per;
            decision = RateLimitMath.SlidingWindow(window, cell.Count(window - 1), cell.Count(window), now, _per, _policy.Limit, out _, out _, out _);
            if (decision.Outcome == RateOutcome.Allowed) cell.Pending.Add(window, 1);
            return true;
        }
    }

    // Views older than this many sync intervals are not trusted for local decisions.
    private const int StaleIntervals = 3;

    private long NowMicros() => ((_store.Time.GetUtcNow().UtcTicks - DateTime.UnixEpoch.Ticks) / 10) + Volatile.Read(ref _store.ClockOffsetMicros);

    private void OnTimer()
    {
        if (Volatile.Read(ref _disposed) != 0) return;
        _ = FlushAsync();
    }

    /// <summary>One synchronisation round (skipped while the previous one is still running).</summary>
    public async Task FlushAsync()
    {
        if (Interlocked.CompareExchange(ref _syncing, 1, 0) != 0) return;
        try
        {
            await SyncAsync().ConfigureAwait(false);
        }
        finally
        {
            Volatile.Write(ref _syncing, 0);
        }
    }

    private async Task SyncAsync()
    {
        var batch = TakePending(NowMicros());
        var wallNow = _store.Time.GetUtcNow();
        if (batch.Count == 0)
        {
            // Nobody has used this policy for a while (a reload replaced it, say): stop the timer and free the cells.
            if (wallNow - _lastActive > _forgetAfter) _store.Forget(_policy.Identity, this);
            return;
        }

        _lastActive = wallNow;
        if (!_store.Breaker.TryEnter(out var probe))
        {
            foreach (var item in batch) Revert(item.Cell);
            return;
        }

        var tasks = new Task<RedisResult>[batch.Count];
        var database = _store.Database;
        for (var i = 0; i < batch.Count; i++)
        {
            tasks[i] = Evaluate(database, batch[i].Key, batch[i].Args);
        }

        var all = Task.WhenAll(tasks);
        try
        {
            await all.WaitAsync(_store.Options.Timeout, _store.Time).ConfigureAwait(false);
            _store.Breaker.Succeeded(probe);
        }
        catch (TimeoutException) when (all.IsCompletedSuccessfully)
        {
            // Answered in time; only this continuation ran late (a starved thread pool): not a failure.
            _store.Breaker.Succeeded(probe);
        }
        catch (Exception ex)
        {
            _store.Breaker.Failed(ex, probe);
        }

        try
        {
            // Calls past our timeout still end (the library's own timeout); only then is it known whether
            // their counts reached Redis, so they are applied or put back, never both.
            await all.WaitAsync(StragglerLimit, _store.Time).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // Inspected one by one below.
        }

        Apply(batch, tasks);
    }

    /// <summary>Moves every cell's pending counts in flight, with the script arguments that send them; idle cells only when due a refresh.</summary>
    private List<(Cell Cell, RedisKey Key, RedisValue[] Args)> TakePending(long now)
    {
        var batch = new List<(Cell Cell, RedisKey Key, RedisValue[] Args)>();
        foreach (var (key, cell) in _cells)
        {
            lock (cell.Gate)
            {
                if (cell.Pending.IsEmpty && now - cell.LastUsed > _refreshMicros) continue;
                cell.Inflight = cell.Pending;
                cell.Pending = default;
                var sent = cell.Inflight;
                batch.Add((cell, _store.RateKey(_policy, key, "sw"), [_per, _ttlMillis, sent.Window1, sent.Count1, sent.Window2, sent.Count2]));
            }
        }

        return batch;
    }

    /// <summary>Takes the global counts from the answers; counts whose call failed go back to pending, unanswered ones are dropped.</summary>
    private void Apply(List<(Cell Cell, RedisKey Key, RedisValue[] Args)> batch, Task<RedisResult>[] tasks)
    {
        var offsetTaken = false;
        for (var i = 0; i < tasks.Length; i++)
        {
            var cell = batch[i].Cell;
            if (!tasks[i].IsCompleted)
            {
                lock (cell.Gate) cell.Inflight = default;
                continue;
            }

            if (!tasks[i].IsCompletedSuccessfully)
            {
                Revert(cell);
                continue;
            }

            var values = (long[])tasks[i].Result!;
            lock (cell.Gate)
            {
                cell.GlobalWindow = values[0];
                cell.GlobalPrevious = values[1];
                cell.GlobalCurrent = values[2];
                cell.Inflight = default;
                cell.SyncedAt = NowMicros();
            }

            if (!offsetTaken)
            {
                // Server time at the answer minus local time at its arrival: off by at most the round trip.
                offsetTaken = true;
                var server = (values[3] * 1_000_000) + values[4];
                var local = (_store.Time.GetUtcNow().UtcTicks - DateTime.UnixEpoch.Ticks) / 10;
                Volatile.Write(ref _store.ClockOffsetMicros, server - local);
            }
        }
    }

    private static Task<RedisResult> Evaluate(IDatabase? database, RedisKey key, RedisValue[] args)
    {
        try
        {
            return database is null
                ? Task.FromException<RedisResult>(new InvalidOperationException("not connected"))
                : database.ScriptEvaluateAsync(RedisScripts.SlidingSync, [key], args);
        }
        catch (Exception ex)
        {
            return Task.FromException<RedisResult>(ex);
        }
    }

    private static void Revert(Cell cell)
    {
        lock (cell.Gate)
        {
            var inflight = cell.Inflight;
            cell.Inflight = default;
            if (inflight.Count1 > 0) cell.Pending.Add(inflight.Window1, inflight.Count1);
            if (inflight.Count2 > 0) cell.Pending.Add(inflight.Window2, inflight.Count2);
        }
    }

    public void Dispose()
    {
        Interlocked.Exchange(ref _disposed, 1);
        Interlocked.Exchange(ref _timer, null)?.Dispose();
    }

    /// <summary>One key's view: the global counts last read, and local admissions not yet in them.</summary>
    private sealed class Cell
    {
        public readonly Lock Gate = new();
        public long GlobalWindow = long.MinValue;
        public long GlobalPrevious;
        public long GlobalCurrent;

        /// <summary>Admitted here, not yet sent.</summary>
        public WindowCounts Pending;

        /// <summary>Sent by the running sync, not yet in the global counts read back.</summary>
        public WindowCounts Inflight;

        public long LastUsed;

        /// <summary>When the global counts were last read back (µs of server time); never, at first.</summary>
        public long SyncedAt = long.MinValue / 2;

        public long Count(long window)
        {
            var global = window == GlobalWindow ? GlobalCurrent : window == GlobalWindow - 1 ? GlobalPrevious : 0;
            return global + Pending.Of(window) + Inflight.Of(window);
        }
    }

    /// <summary>Counts for up to two windows (the current and the previous one are all a sliding window reads).</summary>
    private struct WindowCounts
    {
        public long Window1;
        public long Count1;
        public long Window2;
        public long Count2;

        public readonly bool IsEmpty => Count1 == 0 && Count2 == 0;

        public readonly long Of(long window) => (Count1 > 0 && Window1 == window ? Count1 : 0) + (Count2 > 0 && Window2 == window ? Count2 : 0);

        public void Add(long window, long count)
        {
            if (Count1 > 0 && Window1 == window) Count1 += count;
            else if (Count2 > 0 && Window2 == window) Count2 += count;
            else if (Count1 == 0) (Window1, Count1) = (window, count);
            else if (Count2 == 0) (Window2, Count2) = (window, count);
            // Both slots hold other windows: the older one no longer matters to a sliding window.
            else if (Window1 < Window2) (Window1, Count1) = (window, count);
            else (Window2, Count2) = (window, count);
        }
    }
}
