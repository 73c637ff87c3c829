using Microsoft.Extensions.Logging;
using Portcullis.Configuration;
using Portcullis.Traffic;
using StackExchange.Redis;

namespace Portcullis.State;

/// <summary>
/// The Redis store's circuit breaker and health: counts failures in a <see cref="FailureWindow"/>, opens
/// when the <see cref="BreakerPolicy"/> says so, lets one probe through after
/// <see cref="RedisStoreOptions.RetryAfter"/>, and closes only on a probe's success (see
/// <see cref="RedisCounterStore"/> for the whole story). Logs one line per state change.
/// </summary>
internal sealed partial class RedisCircuitBreaker
{
    private const string ConnectingError = "not connected yet";

    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly FailureWindow _failures;
    private readonly TimeSpan _timeout;
    private readonly TimeSpan _retryAfter;
    private readonly string? _password;
    private readonly Lock _stateLock = new();
    private StoreHealth _health;
    private long _openUntilTicks;
    private int _probing;
    private int _closed;

    /// <param name="password">Removed from error descriptions, should a server echo it.</param>
    /// <param name="invalid">Why the store can never connect (a bad connection string); null while connecting.</param>
    public RedisCircuitBreaker(RedisStoreOptions options, TimeProvider time, ILogger logger, BreakerPolicy policy, string? password, string? invalid)
    {
        _time = time;
        _logger = logger;
        _failures = new FailureWindow(time, policy);
        _timeout = options.Timeout;
        _retryAfter = options.RetryAfter;
        _password = password;
        _health = new StoreHealth("redis", StoreState.Down, time.GetUtcNow(), invalid ?? ConnectingError);
    }

    /// <summary>Up or Down, since when, and the last error (never the connection string or password).</summary>
    public StoreHealth Health => Volatile.Read(ref _health);

    /// <summary>How long a call that timed out may still answer before it counts as a failure.</summary>
    public TimeSpan Grace => _failures.Policy.Grace;

    /// <summary>The connection came back: the next call (or health check) is a probe, without waiting for retryAfter.</summary>
    public void ProbeNow() => Interlocked.Exchange(ref _openUntilTicks, 0);

    /// <summary>A probe that ended without saying anything about Redis (the caller went away): the next call may probe.</summary>
    public void ReleaseProbe() => Volatile.Write(ref _probing, 0);

    /// <summary>The store is disposed: no call goes to Redis any more.</summary>
    public void Close() => Volatile.Write(ref _closed, 1);

    /// <summary>Whether a call may go to Redis now; <paramref name="probe"/> is set for the one call let through an open circuit.</summary>
    public bool TryEnter(out bool probe)
    {
        probe = false;
        if (Volatile.Read(ref _closed) != 0) return false;
        if (Volatile.Read(ref _health).State == StoreState.Up) return true;
        if (_time.GetUtcNow().UtcTicks < Interlocked.Read(ref _openUntilTicks)) return false;
        if (Interlocked.CompareExchange(ref _probing, 1, 0) != 0) return false;
        probe = true;
        return true;
    }

    public void Succeeded(bool probe)
    {
        if (!probe)
        {
            _failures.Record(failed: false);
            return;
        }

        lock (_stateLock)
        {
            var health = _health;
            if (health.State != StoreState.Up)
            {
                _failures.Reset();
                var now = _time.GetUtcNow();
                Volatile.Write(ref _health, new StoreHealth("redis", StoreState.Up, now, null));
                if (health.LastError == ConnectingError) Log.Connected(_logger);
                else Log.Recovered(_logger, now - health.Since);
            }
        }

        Volatile.Write(ref _probing, 0);
    }

    public void Failed(Exception exception, bool probe)
    {
        var error = Describe(exception);
        _failures.Record(failed: true);
        lock (_stateLock)
        {
            var now = _time.GetUtcNow();
            var health = _health;
            if (health.State == StoreState.Up && !probe && !_failures.ShouldOpen())
            {
                // Below the breaker's threshold: the caller applies onStoreFailure, the circuit stays closed.
                return;
            }

            Interlocked.Exchange(ref _openUntilTicks, (now + _retryAfter).UtcTicks);
            // The first failure to connect is a state change too (from "connecting"), so it is logged.
            if (health.State == StoreState.Up || health.LastError == ConnectingError)
            {
                Volatile.Write(ref _health, new StoreHealth("redis", StoreState.Down, now, error));
                Log.Unavailable(_logger, error, _retryAfter);
            }
            else if (health.LastError != error)
            {
                // Still down, for a new reason: visible in Health, not logged again (one line per state change).
                Volatile.Write(ref _health, health with { LastError = error });
            }
        }

        if (probe) Volatile.Write(ref _probing, 0);
    }

    // A short, secret-free description: the library's messages carry endpoints and counters, never the
    // password, but it is removed anyway in case a server echoes it in an error.
    private string Describe(Exception exception)
    {
        var text = exception switch
        {
            TimeoutException when exception.GetType() == typeof(TimeoutException) => $"no answer within {_timeout.TotalMilliseconds:0} ms",
            // The library's own timeout (our timeout plus the breaker's grace) can win the race with the
            // late-answer judge on a busy machine; it is the same failure, so it reads the same, with the
            // library's detail after it.
            RedisTimeoutException => $"no answer within {_timeout.TotalMilliseconds:0} ms (RedisTimeoutException: {FirstClause(exception.Message)})",
            RedisConnectionException connection => $"{connection.FailureType}: {FirstClause(connection.Message)}",
            _ => $"{exception.GetType().Name}: {FirstClause(exception.Message)}",
        };
        if (!string.IsNullOrEmpty(_password)) text = text.Replace(_password, "***", StringComparison.Ordinal);
        return text;

        static string FirstClause(string message)
        {
            var end = message.IndexOfAny([';', '\n']);
            if (end > 0) message = message[..end];
            return message.Length > 200 ? message[..200] : message;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(5201, LogLevel.Information, "Redis store connected")]
        public static partial void Connected(ILogger logger);

        [LoggerMessage(5202, LogLevel.Warning, "Redis store unavailable ({Error}); policies apply onStoreFailure, and Redis is probed again every {RetryAfter}")]
        public static partial void Unavailable(ILogger logger, string error, TimeSpan retryAfter);

        [LoggerMessage(5203, LogLevel.Information, "Redis store recovered after {Downtime}")]
        public static partial void Recovered(ILogger logger, TimeSpan downtime);
    }
}
