using Microsoft.Extensions.Logging;

namespace Portcullis.Identity;

/// <summary>
/// An issuer's discovery document and JWKS, fetched and refreshed in the background. An unknown kid
/// triggers at most one refresh per interval, which the request that saw the kid (and any other request
/// arriving meanwhile) awaits for a bounded time: the first token after a provider's key rotation passes.
/// When the provider is down, or serves a key set without any usable signing key, the last good keys keep
/// serving for a bounded stale window, then the issuer fails closed.
/// </summary>
internal sealed partial class IssuerKeyCache : IDisposable
{
    private readonly IssuerKeyFetcher _fetcher;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ITimer _timer;
    /// <summary>Longest time a request waits for an on-demand refresh caused by its unknown kid.</summary>
    internal static readonly TimeSpan UnknownKidWait = TimeSpan.FromSeconds(2);

    private volatile IssuerKeySet? _keys;

    // The refresh running now (completes when it ends, failed or not); null when none is. Single flight.
    private Task? _inflight;
    private readonly TaskCompletionSource _firstAttempt = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes when the first fetch has succeeded or failed (start-up waits for it, briefly).</summary>
    public Task FirstAttempt => _firstAttempt.Task;
    private int _retryScheduled;
    private long _lastOnDemandTicks = long.MinValue;
    private long _fetches;
    private long _failures;
    private volatile bool _failing;
    private volatile string? _lastError;
    private long _nextRefreshTicks;
    private long _failingSinceTicks;

    /// <param name="seed">Keys already fetched from the same place (a reload that only changed timings): they
    /// keep serving, with their original fetch time, until the first fetch of this cache replaces them.</param>
    public IssuerKeyCache(IssuerKeySource source, HttpClient http, TimeProvider time, ILogger logger, IssuerKeySet? seed = null)
    {
        Source = source;
        _time = time;
        _logger = logger;
        _keys = seed;
        _fetcher = new IssuerKeyFetcher(source, http, time);
        // Armed only once assigned: the first fetch re-arms it (ScheduleNext) and may run before the constructor returns.
        _timer = time.CreateTimer(_ => TriggerRefresh(), null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        _timer.Change(TimeSpan.Zero, source.RefreshInterval);
    }

    public IssuerKeySource Source { get; }

    public IssuerKeySet? Keys => _keys;

    /// <summary>When the next regular refresh is due (after the latest successful fetch, from its Cache-Control max-age within bounds).</summary>
    public DateTimeOffset? NextRefreshAt => Interlocked.Read(ref _nextRefreshTicks) is var ticks and > 0 ? new DateTimeOffset(ticks, TimeSpan.Zero) : null;

    public long Fetches => Interlocked.Read(ref _fetches);

    public long Failures => Interlocked.Read(ref _failures);

    /// <summary>True while the latest refresh failed (unreachable, bad answer, or a key set without usable keys).</summary>
    public bool Failing => _failing;

    /// <summary>Why the latest refresh failed (for /readyz); null after a successful one. Never holds key material.</summary>
    public string? LastError => _lastError;

    /// <summary>When the current failing streak began (its first failed fetch); null while the latest refresh succeeded.</summary>
    public DateTimeOffset? FailingSince => _failing && Interlocked.Read(ref _failingSinceTicks) is var ticks and > 0 ? new DateTimeOffset(ticks, TimeSpan.Zero) : null;

    public KeyAvailability Availability
    {
        get
        {
            var keys = _keys;
            if (keys is null) return KeyAvailability.NotYetLoaded;
            return _time.GetUtcNow() - keys.FetchedAt > Source.StaleFor + Source.RefreshInterval ? KeyAvailability.Expired : KeyAvailability.Available;
        }
    }

    /// <summary>
    /// A token named a kid we do not know: maybe the provider rotated. Waits (at most <see cref="UnknownKidWait"/>,
    /// never beyond the fetch timeout) for the refresh already running, else starts one if this issuer's
    /// on-demand slot allows (one per unknownKidRefreshInterval). True when the keys now hold the kid.
    /// </summary>
    public async ValueTask<bool> RefreshForUnknownKidAsync(string kid)
    {
        var started = _time.GetTimestamp();
        var bound = Source.Timeout < UnknownKidWait ? Source.Timeout : UnknownKidWait;

        // Twice at most: a refresh that was already running may have started before the rotation.
        for (var attempt = 0; attempt < 2; attempt++)
        {
            var running = Volatile.Read(ref _inflight);
            if (running is null)
            {
                running = StartOnDemandRefresh();
                if (running is null) return false;
            }

            var remaining = bound - _time.GetElapsedTime(started);
            if (remaining <= TimeSpan.Zero) return false;
            try
            {
                await running.WaitAsync(remaining, _time).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                return false; // the refresh goes on in the background; this request is refused
            }

            if (_keys?.ByKid.ContainsKey(kid) == true) return true;
        }

        return false;
    }

    /// <summary>Starts a refresh if the on-demand slot is free (rate limit per issuer); the running refresh, or null.</summary>
    private Task? StartOnDemandRefresh()
    {
        var now = _time.GetTimestamp();
        var last = Interlocked.Read(ref _lastOnDemandTicks);
        if (last != long.MinValue && _time.GetElapsedTime(last, now) < Source.UnknownKidRefreshInterval) return null;
        if (Interlocked.CompareExchange(ref _lastOnDemandTicks, now, last) != last) return Volatile.Read(ref _inflight);
        if (StartRefresh() is { } started)
        {
            Log.UnknownKidRefresh(_logger, Source.Name);
            return started;
        }

        // Lost a race with another fetch starting: give the slot back and wait for that one.
        Interlocked.CompareExchange(ref _lastOnDemandTicks, last, now);
        return Volatile.Read(ref _inflight);
    }

    /// <summary>Starts a refresh unless one is running (one request in flight per issuer). True when it started one.</summary>
    public bool TriggerRefresh() => StartRefresh() is not null;

    private Task? StartRefresh()
    {
        if (Volatile.Read(ref _inflight) is not null) return null;
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (Interlocked.CompareExchange(ref _inflight, done.Task, null) is not null) return null;
        _ = RefreshAsync(done);
        return done.Task;
    }

    /// <summary>Waits for keys to be loaded (start-up, tests).</summary>
    public async Task<bool> WaitForKeysAsync(TimeSpan timeout)
    {
        var deadline = _time.GetUtcNow() + timeout;
        while (_keys is null && _time.GetUtcNow() < deadline) await Task.Delay(20).ConfigureAwait(false);
        return _keys is not null;
    }

    private async Task RefreshAsync(TaskCompletionSource done)
    {
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
            timeout.CancelAfter(Source.Timeout);
            var (keys, lifetime) = await _fetcher.FetchAsync(timeout.Token).ConfigureAwait(false);
            // Scheduled before counting, so whoever sees the fetch counted also sees its schedule.
            ScheduleNext(RefreshDelay(lifetime, Source));
            Interlocked.Increment(ref _fetches);
            var wasFailing = _failing;
            _lastError = null;
            _failing = false;
            _keys = keys;
            if (wasFailing)
            {
                Log.Recovered(_logger, Source.Name, keys.All.Length);
            }
            else
            {
                Log.Fetched(_logger, Source.Name, keys.All.Length);
            }
        }
        catch (Exception ex) when (ex is not ObjectDisposedException && !_stopping.IsCancellationRequested)
        {
            Interlocked.Increment(ref _failures);
            var state = _keys is { } kept ? $"serving {kept.All.Length} keys fetched at {kept.FetchedAt:O}" : "no keys yet";
            if (ex is IssuerKeyFetcher.KeySetRejectedException rejected)
            {
                _lastError = "key set rejected: " + rejected.Message;
                if (!_failing) Log.KeySetRejected(_logger, Source.Name, rejected.Message, state);
            }
            else
            {
                _lastError = $"fetch failed: {ex.GetType().Name}: {(ex.Message.Length > 200 ? ex.Message[..200] + "…" : ex.Message)}";
                if (!_failing) Log.FetchFailed(_logger, Source.Name, state, ex.GetType().Name + ": " + ex.Message);
            }

            // Logged once per failing streak; the next success logs the recovery.
            if (!_failing) Interlocked.Exchange(ref _failingSinceTicks, _time.GetUtcNow().UtcTicks);
            _failing = true;

            // Retry sooner than the regular interval while failing.
            _ = RetrySoonAsync();
        }
        finally
        {
            // Cleared before completing, so a waiter that finds its kid still unknown may start the next one.
            Volatile.Write(ref _inflight, null);
            done.TrySetResult();
            _firstAttempt.TrySetResult();
        }
    }

    // At most one pending retry: every failed fetch (timer, on-demand or retry) asks for one, and without
    // this each timer tick during an outage would start another retry chain that never ends until the
    // provider returns, so the fetch rate against a down provider would grow without bound.
    private async Task RetrySoonAsync()
    {
        if (Interlocked.Exchange(ref _retryScheduled, 1) != 0) return;
        try
        {
            var delay = Source.RefreshInterval < TimeSpan.FromSeconds(5) ? Source.RefreshInterval : TimeSpan.FromSeconds(5);
            await Task.Delay(delay, _time, _stopping.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return;
        }
        finally
        {
            Volatile.Write(ref _retryScheduled, 0);
        }

        TriggerRefresh();
    }

    /// <summary>
    /// How long until the next regular refresh: the JWKS response's freshness lifetime (Cache-Control max-age
    /// minus Age) within [minRefreshInterval, refreshInterval]; refreshInterval when the response said nothing.
    /// A long max-age never delays a refresh beyond refreshInterval: that bounds how long a withdrawn key verifies.
    /// </summary>
    internal static TimeSpan RefreshDelay(TimeSpan? lifetime, IssuerKeySource source)
    {
        var max = source.RefreshInterval;
        var min = source.MinRefreshInterval < max ? source.MinRefreshInterval : max;
        if (lifetime is not { } value) return max;
        return value < min ? min : value > max ? max : value;
    }

    // Re-arms the timer from now; it keeps ticking every refreshInterval after that, so a failed or
    // lost refresh is never the last one. A disposed timer (reload removed the issuer) is left alone.
    private void ScheduleNext(TimeSpan delay)
    {
        if (_stopping.IsCancellationRequested) return;
        try
        {
            _timer.Change(delay, Source.RefreshInterval);
            Interlocked.Exchange(ref _nextRefreshTicks, (_time.GetUtcNow() + delay).UtcTicks);
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>
    /// A refresh asked for by an operator (admin API): waits for one that starts now (after any running one,
    /// which may predate the provider's change), at most <paramref name="wait"/>. True when it finished in time.
    /// </summary>
    public async Task<bool> RefreshNowAsync(TimeSpan wait, CancellationToken cancellationToken)
    {
        var started = _time.GetTimestamp();
        while (true)
        {
            var running = Volatile.Read(ref _inflight);
            var mine = running is null ? StartRefresh() ?? Volatile.Read(ref _inflight) : null;
            var awaited = mine ?? running;
            var remaining = wait - _time.GetElapsedTime(started);
            if (remaining <= TimeSpan.Zero) return false;
            if (awaited is null)
            {
                // Lost a race with a refresh that ended meanwhile: try again.
                await Task.Yield();
                continue;
            }

            try
            {
                await awaited.WaitAsync(remaining, _time, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                return false;
            }

            // A refresh that was already running when asked may have fetched before the change: run our own.
            if (mine is not null) return true;
        }
    }

    public void Dispose()
    {
        // _stopping is cancelled, not disposed: a fetch or retry still running reads its token.
        _stopping.Cancel();
        _timer.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(4001, LogLevel.Information, "Issuer {Issuer}: fetched {Count} signing keys")]
        public static partial void Fetched(ILogger logger, string issuer, int count);

        [LoggerMessage(4002, LogLevel.Warning, "Issuer {Issuer}: fetching keys failed ({State}): {Error}")]
        public static partial void FetchFailed(ILogger logger, string issuer, string state, string error);

        [LoggerMessage(4003, LogLevel.Information, "Issuer {Issuer}: key fetch recovered, {Count} signing keys")]
        public static partial void Recovered(ILogger logger, string issuer, int count);

        [LoggerMessage(4004, LogLevel.Information, "Issuer {Issuer}: token with an unknown kid, refreshing keys")]
        public static partial void UnknownKidRefresh(ILogger logger, string issuer);

        [LoggerMessage(4005, LogLevel.Warning, "Issuer {Issuer}: refused the key set the provider served ({Reason}); keeping the last good keys ({State}) and retrying")]
        public static partial void KeySetRejected(ILogger logger, string issuer, string reason, string state);
    }

}
