using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Portcullis.Configuration;
using Portcullis.State;
using StackExchange.Redis;

namespace Portcullis.Tests.Traffic;

/// <summary>
/// What the Redis store's health says when it goes down: the operator reads "no answer within 100 ms" whether
/// our timer or the library's own (timeout + grace) noticed first — on a busy machine either can win.
/// </summary>
public sealed class RedisBreakerErrorTests
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 4, 8, 0, 0, TimeSpan.Zero));

    private RedisCircuitBreaker Breaker() =>
        new(new RedisStoreOptions { Timeout = TimeSpan.FromMilliseconds(100) }, _time, NullLogger.Instance, BreakerPolicy.Ratio50, password: "s3cret", invalid: null);

    [Fact]
    public void Our_timeout_names_the_configured_timeout()
    {
        var breaker = Breaker();
        breaker.Failed(new TimeoutException(), probe: true);
        Assert.Equal(StoreState.Down, breaker.Health.State);
        Assert.Equal("no answer within 100 ms", breaker.Health.LastError);
    }

    [Fact]
    public void The_library_timeout_reads_as_the_same_failure_with_its_detail()
    {
        var breaker = Breaker();
        breaker.Failed(new RedisTimeoutException(CommandFlags.None, "Timeout awaiting response (outbound=0KiB, inbound=0KiB, 602ms elapsed, timeout is 600ms); command=EVALSHA", CommandStatus.Sent), probe: true);
        Assert.Equal(StoreState.Down, breaker.Health.State);
        Assert.StartsWith("no answer within 100 ms (RedisTimeoutException: Timeout awaiting response", breaker.Health.LastError, StringComparison.Ordinal);
        Assert.DoesNotContain("command=", breaker.Health.LastError, StringComparison.Ordinal);
    }

    [Fact]
    public void A_password_echoed_in_an_error_is_masked()
    {
        var breaker = Breaker();
        breaker.Failed(new RedisServerException(RedisErrorKind.Unknown, CommandFlags.None, "ERR invalid password s3cret"), probe: true);
        Assert.DoesNotContain("s3cret", breaker.Health.LastError, StringComparison.Ordinal);
        Assert.Contains("***", breaker.Health.LastError, StringComparison.Ordinal);
    }
}
