using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Portcullis.Configuration;
using Portcullis.State;
using StackExchange.Redis;

namespace Portcullis.Traffic;

/// <summary>
/// Rate-limit and quota counters in Redis (single node or Redis Cluster), shared by every gateway.
/// Strict decisions are one atomic Lua script each (<see cref="RedisScripts"/>) on Redis server time;
/// approximate sliding windows decide locally and synchronise in the background
/// (<see cref="RedisApproximateCounters"/>).
/// </summary>
/// <remarks>
/// Trouble never reaches the request path as an exception or a wait: the connection is made in the
/// background, every call is cut off at <see cref="RedisStoreOptions.Timeout"/>, and once failures reach
/// the <see cref="BreakerPolicy"/> (for the counters: at least 5 failures and half the calls within 10 s,
/// so one late answer never opens it) a circuit breaker answers <see cref="RateOutcome.StoreUnavailable"/>
/// at once for <see cref="RedisStoreOptions.RetryAfter"/>, then lets one probe through (a request, or the
/// background health check when there are none). Only a probe's success closes the circuit again, so
/// calls that were already in flight when Redis failed cannot flap the state. An answer that arrived in
/// time but whose continuation ran late (a starved thread pool) is a success, not a timeout.
/// </remarks>
internal sealed partial class RedisCounterStore : ICounterStore, IAsyncDisposable
{
    private readonly TimeProvider _time;
    private readonly ILogger<RedisCounterStore> _logger;
    private readonly ConcurrentDictionary<string, RedisApproximateCounters> _approximate = new(StringComparer.Ordinal);
    private readonly RedisCircuitBreaker _breaker;
    private ITimer? _healthTimer;
    private ConnectionMultiplexer? _connection;
    private IDatabase? _database;
    private int _healthChecking;
    private int _disposed;

    public RedisCounterStore(RedisStoreOptions options, TimeProvider time, ILogger<RedisCounterStore> logger, BreakerPolicy? breaker = null)
    {
        Options = options;
        _time = time;
        _logger = logger;
        Slots = new RedisSlots(this, time);
        var policy = breaker ?? BreakerPolicy.Ratio50;
        ConfigurationOptions? configuration = null;
        string? invalid = null;
        try
        {
            configuration = Configure(options, policy);
        }
        catch (Exception ex) when (ex is ArgumentException or FormatException or NotSupportedException)
        {
            // The message may quote the offending option (a password, say): say only what kind of problem it is.
            invalid = ex.GetType().Name;
        }

        _breaker = new RedisCircuitBreaker(options, time, logger, policy, configuration?.Password, invalid is null ? null : "invalid connection string");
        if (invalid is not null) Log.InvalidConnection(_logger, invalid);

        // Never block the constructor (it runs while a snapshot is built) on a network round trip.
        if (configuration is not null) _ = Task.Run(() => ConnectAsync(configuration));
    }

    public RedisStoreOptions Options { get; }

    /// <summary>Slots of shared concurrency limits (leases this instance holds, renewed in the background).</summary>
    internal RedisSlots Slots { get; }

    /// <summary>Up or Down, since when, and the last error (never the connection string or password).</summary>
    public StoreHealth Health => _breaker.Health;

    /// <summary>The circuit breaker every Redis call goes through (the approximate counters' syncs too).</summary>
    internal RedisCircuitBreaker Breaker => _breaker;

    /// <summary>Redis server time minus this machine's clock (µs), learned by approximate-mode syncs.</summary>
    internal long ClockOffsetMicros;

    internal TimeProvider Time => _time;

    internal IDatabase? Database => Volatile.Read(ref _database);

    /// <summary>The connection once made (for pub/sub); null before that and after disposal.</summary>
    internal ConnectionMultiplexer? Connection => Volatile.Read(ref _connection);

    private static ConfigurationOptions Configure(RedisStoreOptions options, BreakerPolicy breaker)
    {
        var configuration = ConfigurationOptions.Parse(options.Connection);
        var timeout = (int)Math.Clamp(Math.Ceiling(options.Timeout.TotalMilliseconds), 1, int.MaxValue);
        configuration.AbortOnConnectFail = false;
        // The library's own timeouts back up ours (they also clean up calls we stopped waiting for). Its
        // reader runs on SocketManager.Shared's dedicated threads, not the thread pool, so an answer is
        // recorded when it arrives even while the pool is starved; RunAsync trusts that over its own late
        // timer (issue 14). The connect timeout is not on the request path, so it may be longer than a
        // request's patience, which keeps a remote TLS Redis reachable with a 100 ms request timeout.
        // It must not cut off an answer within the breaker's grace, which judges late answers (RunAsync).
        configuration.AsyncTimeout = (int)Math.Min(int.MaxValue, timeout + (long)breaker.Grace.TotalMilliseconds);
        // Only the session key ring (Data Protection's Redis repository) calls synchronously: rarely (start-up,
        // then a refresh a day), and a blocked thread must not fail it at a request timeout of 100 ms.
        configuration.SyncTimeout = Math.Max(timeout, 2000);
        configuration.ConnectTimeout = Math.Clamp(timeout * 10, 1000, 5000);
        // While disconnected, fail calls at once instead of queueing them for a reconnect that may be slow.
        configuration.BacklogPolicy = BacklogPolicy.FailFast;
        configuration.ReconnectRetryPolicy = new LinearRetry((int)Math.Clamp(options.RetryAfter.TotalMilliseconds / 2, 100, 5000));
        configuration.ClientName ??= "portcullis";
        return configuration;
    }

    private async Task ConnectAsync(ConfigurationOptions configuration)
    {
        try
        {
            var connection = await ConnectionMultiplexer.ConnectAsync(configuration).ConfigureAwait(false);
            // A restored connection may mean Redis is back: check now rather than at the next probe time.
            connection.ConnectionRestored += (_, _) =>
            {
                _breaker.ProbeNow();
                _ = CheckHealthAsync();
            };
            Volatile.Write(ref _database, connection.GetDatabase());
            var period = Options.RetryAfter > TimeSpan.Zero ? Options.RetryAfter : TimeSpan.FromSeconds(1);
            Interlocked.Exchange(ref _healthTimer, _time.CreateTimer(static state => _ = ((RedisCounterStore)state!).CheckHealthAsync(), this, period, period));
            Interlocked.Exchange(ref _connection, connection);
            if (Volatile.Read(ref _disposed) != 0)
            {
                // Disposed while connecting: DisposeAsync did not wait for us, so close what we just made.
                await CloseConnectionAsync().ConfigureAwait(false);
                return;
            }

            await CheckHealthAsync().ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            // AbortOnConnectFail=false makes this rare (a bad endpoint name, say); nothing would retry it.
            _breaker.Failed(ex, probe: false);
        }
    }

    /// <summary>
    /// A PING through the breaker, in the background: it is the probe while the circuit is open and there
    /// are no requests, and it notices a dead Redis while Up without waiting for a request to fail.
    /// </summary>
    private async Task CheckHealthAsync()
    {
        if (Interlocked.CompareExchange(ref _healthChecking, 1, 0) != 0) return;
        try
        {
            await RunAsync(static (db, _) => db.PingAsync(), 0, CancellationToken.None).ConfigureAwait(false);
        }
        finally
        {
            Volatile.Write(ref _healthChecking, 0);
        }
    }

    public ValueTask<RateDecision> RateAsync(CompiledRateLimit policy, string key, CancellationToken cancellationToken)
    {
        if (policy.Algorithm == RateLimitAlgorithm.SlidingWindow)
        {
            if (policy.Mode != RedisCountingMode.Approximate) return SlidingWindowAsync(policy, key, cancellationToken);
            var (decided, decision) = ApproximateRate(policy, key);
            return decided ? ValueTask.FromResult(decision) : SlidingWindowAsync(policy, key, cancellationToken);
        }

        return GcraAsync(policy, key, cancellationToken);
    }

    private async ValueTask<RateDecision> GcraAsync(CompiledRateLimit policy, string key, CancellationToken cancellationToken)
    {
        var emission = policy.EmissionTicks;
        var (ok, result) = await RunAsync(
            static (db, call) => db.ScriptEvaluateAsync(RedisScripts.Gcra, [call.Key], [call.Emission, call.Capacity]),
            (Key: RateKey(policy, key, "g"), Emission: emission, policy.Capacity),
            cancellationToken).ConfigureAwait(false);
        if (!ok) return RateDecision.Unavailable(policy.Limit);
        var values = (long[])result!;
        // The script decided; the numbers of the answer come from the same function the local store uses.
        var decision = RateLimitMath.Gcra(values[1], 0, emission, policy.Capacity, policy.Limit, out _);
        return Agree(decision, values[0] == 1);
    }

    private async ValueTask<RateDecision> SlidingWindowAsync(CompiledRateLimit policy, string key, CancellationToken cancellationToken)
    {
        var per = PerMicros(policy);
        var (ok, result) = await RunAsync(
            static (db, call) => db.ScriptEvaluateAsync(RedisScripts.SlidingWindow, [call.Key], [call.Per, call.Limit, call.Ttl]),
            (Key: RateKey(policy, key, "sw"), Per: per, policy.Limit, Ttl: SlidingTtlMillis(per)),
            cancellationToken).ConfigureAwait(false);
        if (!ok) return RateDecision.Unavailable(policy.Limit);
        var values = (long[])result!;
        // now = elapsed with window 0 is the same position in the window as the server's.
        var decision = RateLimitMath.SlidingWindow(0, values[1], values[2], values[3], per, policy.Limit, out _, out _, out _);
        return MicrosToTicks(Agree(decision, values[0] == 1));
    }

    // Decided locally, or (false) the key's view is stale and the caller decides strictly.
    private (bool Decided, RateDecision Decision) ApproximateRate(CompiledRateLimit policy, string key)
    {
        // An open circuit means the global counts are stale: the policy's onStoreFailure decides, as in strict mode.
        if (Health.State != StoreState.Up || Volatile.Read(ref _disposed) != 0) return (true, RateDecision.Unavailable(policy.Limit));
        var counters = _approximate.GetOrAdd(policy.Identity, static (_, state) => new RedisApproximateCounters(state.Store, state.Policy), (Store: this, Policy: policy));
        return counters.TryDecide(key, out var decision) ? (true, MicrosToTicks(decision)) : (false, default);
    }

    /// <summary>Drops the approximate counters of a policy nobody used for a while (called by the counters themselves).</summary>
    internal void Forget(string identity, RedisApproximateCounters counters)
    {
        _approximate.TryRemove(new KeyValuePair<string, RedisApproximateCounters>(identity, counters));
        counters.Dispose();
    }

    public async ValueTask<RateDecision> QuotaAsync(CompiledQuota quota, string key, QuotaWindow window, CancellationToken cancellationToken)
    {
        var expireAt = (window.End + TimeSpan.FromDays(1)).ToUnixTimeMilliseconds();
        var (ok, result) = await RunAsync(
            static (db, call) => db.ScriptEvaluateAsync(RedisScripts.Quota, [call.Key], [call.Limit, call.ExpireAt]),
            (Key: QuotaKey(quota, key, window), quota.Limit, ExpireAt: expireAt),
            cancellationToken).ConfigureAwait(false);
        if (!ok) return RateDecision.Unavailable(quota.Limit);
        var values = (long[])result!;
        var reset = window.End - _time.GetUtcNow();
        if (reset < TimeSpan.Zero) reset = TimeSpan.Zero;
        return values[0] == 1
            ? new RateDecision(RateOutcome.Allowed, quota.Limit, Math.Max(0, quota.Limit - values[1]), TimeSpan.Zero, reset)
            : new RateDecision(RateOutcome.Limited, quota.Limit, 0, reset, reset);
    }

    public async ValueTask<long?> QuotaUsedAsync(CompiledQuota quota, string key, QuotaWindow window, CancellationToken cancellationToken)
    {
        var (ok, result) = await RunAsync(
            static (db, key) => db.StringGetAsync(key),
            QuotaKey(quota, key, window),
            cancellationToken).ConfigureAwait(false);
        if (!ok) return null;
        return result.IsNull ? 0 : (long)result;
    }

    /// <summary>
    /// Runs one Redis call through the circuit breaker, bounded by the timeout. Null when the store could
    /// not answer (circuit open, not connected, timeout, error) or the caller gave up; never throws.
    /// </summary>
    internal async ValueTask<(bool Ok, T Value)> RunAsync<T, TState>(Func<IDatabase, TState, Task<T>> call, TState state, CancellationToken cancellationToken)
    {
        var database = Volatile.Read(ref _database);
        if (database is null || !_breaker.TryEnter(out var probe)) return default;
        Task<T>? task = null;
        try
        {
            task = call(database, state);
            T result;
            try
            {
                result = await task.WaitAsync(Options.Timeout, _time, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException) when (task.IsCompletedSuccessfully)
            {
                // The answer came in time (the library's reader threads are not the thread pool's); only our
                // continuation ran late, on a starved pool. That is not a Redis failure.
                result = task.Result;
            }

            _breaker.Succeeded(probe);
            return (true, result);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The caller went away: that says nothing about Redis.
            if (probe) _breaker.ReleaseProbe();
            Observe(task);
            return default;
        }
        catch (TimeoutException ex) when (ex.GetType() == typeof(TimeoutException) && task is not null && !probe && _breaker.Grace > TimeSpan.Zero)
        {
            // The caller applies onStoreFailure now; whether Redis failed is decided by whether the answer
            // still comes within the grace (a busy machine), so late answers do not trip the breaker.
            _ = JudgeLateAsync(task, ex);
            return default;
        }
        catch (Exception ex)
        {
            _breaker.Failed(ex, probe);
            Observe(task);
            return default;
        }
    }

    private async Task JudgeLateAsync(Task task, TimeoutException timeout)
    {
        try
        {
            await task.WaitAsync(_breaker.Grace, _time).ConfigureAwait(false);
            _breaker.Succeeded(probe: false);
        }
        catch (Exception ex)
        {
            _breaker.Failed(ex is TimeoutException && ex.GetType() == typeof(TimeoutException) ? timeout : ex, probe: false);
            Observe(task);
        }
    }

    // The call we stopped waiting for still ends (the library's own timeout): observe its fault.
    private static void Observe(Task? task) =>
        task?.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);

    /// <summary>
    /// <c>{prefix}rl:{policy␟key}:{kind}</c> (a plan's copy of a policy: <c>policy@plan</c>). The hash tag keeps everything of one policy and key in one
    /// Redis Cluster slot; the kind keeps GCRA strings and sliding-window hashes apart when a policy's
    /// algorithm changes.
    /// </summary>
    internal RedisKey RateKey(CompiledRateLimit policy, string key, string kind) =>
        string.Concat(Options.KeyPrefix, "rl:{", policy.Counter, "\u001f", RedisKeys.Bounded(key), "}:", kind);

    /// <summary><c>{prefix}q:{quota␟key}:{window id}</c>, e.g. portcullis:q:{daily␟alice}:2025-01-31 (a plan's copy: daily@pro).</summary>
    internal RedisKey QuotaKey(CompiledQuota quota, string key, QuotaWindow window) =>
        string.Concat(Options.KeyPrefix, "q:{", quota.Counter, "\u001f", RedisKeys.Bounded(key), "}:", window.Id);

    internal static long PerMicros(CompiledRateLimit policy) => Math.Max(1, policy.Per.Ticks / 10);

    // Two windows: the current one is read as the previous one during the next window, then never again.
    internal static long SlidingTtlMillis(long perMicros) => Math.Max(1, ((2 * perMicros) + 999) / 1000);

    // The sliding-window arithmetic runs in microseconds (Redis TIME); decisions speak ticks.
    internal static RateDecision MicrosToTicks(RateDecision decision) => decision with
    {
        RetryAfter = TimeSpan.FromTicks(decision.RetryAfter.Ticks * 10),
        Reset = TimeSpan.FromTicks(decision.Reset.Ticks * 10),
    };

    // The script and RateLimitMath run the same arithmetic on the same numbers, so they agree; should they
    // not (a script edited without the C#), the script's outcome wins because it is what was counted.
    private static RateDecision Agree(RateDecision decision, bool admitted)
    {
        if ((decision.Outcome == RateOutcome.Allowed) == admitted) return decision;
        return admitted
            ? decision with { Outcome = RateOutcome.Allowed, Remaining = 0, RetryAfter = TimeSpan.Zero }
            : decision with { Outcome = RateOutcome.Limited, Remaining = 0, RetryAfter = decision.RetryAfter > TimeSpan.Zero ? decision.RetryAfter : TimeSpan.FromTicks(1) };
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        Interlocked.Exchange(ref _healthTimer, null)?.Dispose();
        Slots.Dispose();
        // Push what approximate counters counted since their last sync, bounded like any other call.
        var flushes = new List<Task>();
        foreach (var counters in _approximate.Values)
        {
            counters.Dispose();
            flushes.Add(counters.FlushAsync());
        }

        try
        {
            await Task.WhenAll(flushes).WaitAsync(Options.Timeout + Options.Timeout, _time).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // Best effort: a gateway that stops while Redis is unreachable loses at most one sync interval.
        }

        _approximate.Clear();
        _breaker.Close();
        // A connect still in progress (Redis unreachable) is not waited for: it closes its own result.
        await CloseConnectionAsync().ConfigureAwait(false);
    }

    private async Task CloseConnectionAsync()
    {
        Interlocked.Exchange(ref _healthTimer, null)?.Dispose();
        if (Interlocked.Exchange(ref _connection, null) is not { } connection) return;
        try
        {
            await connection.CloseAsync(allowCommandsToComplete: false).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // Closing a connection to a dead server may fail; disposing below releases it all the same.
        }

        await connection.DisposeAsync().ConfigureAwait(false);
    }

    private static partial class Log
    {
        [LoggerMessage(5204, LogLevel.Error, "Redis store connection string is invalid ({Problem}); Redis-backed policies apply onStoreFailure")]
        public static partial void InvalidConnection(ILogger logger, string problem);
    }
}
