using Microsoft.Extensions.Time.Testing;
using Portcullis.State;
using Portcullis.Traffic;

namespace Portcullis.Tests.Traffic;

/// <summary>The Redis circuit breaker's trip rule (issue 14): a failure ratio over a window, never one slow answer.</summary>
public sealed class BreakerWindowTests
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 4, 8, 0, 0, TimeSpan.Zero));

    [Fact]
    public void One_failure_among_successes_does_not_open()
    {
        var window = new FailureWindow(_time, BreakerPolicy.Ratio50);
        for (var i = 0; i < 50; i++) window.Record(failed: false);
        window.Record(failed: true);
        Assert.False(window.ShouldOpen());
    }

    [Fact]
    public void A_lone_failure_with_no_other_traffic_does_not_open()
    {
        // 1 of 1 failed is 100 %, but below the minimum of 5 failures: a single late answer never trips it.
        var window = new FailureWindow(_time, BreakerPolicy.Ratio50);
        window.Record(failed: true);
        Assert.False(window.ShouldOpen());
    }

    [Fact]
    public void Sustained_failures_open()
    {
        var window = new FailureWindow(_time, BreakerPolicy.Ratio50);
        for (var i = 0; i < 4; i++) window.Record(failed: false);
        for (var i = 0; i < 4; i++)
        {
            window.Record(failed: true);
            _time.Advance(TimeSpan.FromMilliseconds(100));
        }

        Assert.False(window.ShouldOpen());
        window.Record(failed: true);
        Assert.True(window.ShouldOpen());
    }

    [Fact]
    public void Failures_below_half_of_the_calls_do_not_open()
    {
        var window = new FailureWindow(_time, BreakerPolicy.Ratio50);
        for (var i = 0; i < 20; i++)
        {
            window.Record(failed: i % 3 == 0); // 7 of 20 fail: 35 %
        }

        Assert.False(window.ShouldOpen());
    }

    [Fact]
    public void Failures_older_than_the_window_are_forgotten()
    {
        var window = new FailureWindow(_time, BreakerPolicy.Ratio50);
        for (var i = 0; i < 4; i++) window.Record(failed: true);
        _time.Advance(TimeSpan.FromSeconds(11));
        window.Record(failed: true);
        Assert.Equal((1, 1), window.Totals());
        Assert.False(window.ShouldOpen());
    }

    [Fact]
    public void Failures_spread_over_the_window_still_add_up()
    {
        var window = new FailureWindow(_time, BreakerPolicy.Ratio50);
        for (var i = 0; i < 5; i++)
        {
            window.Record(failed: true);
            _time.Advance(TimeSpan.FromSeconds(1.9));
        }

        Assert.True(window.ShouldOpen());
    }

    [Fact]
    public void Reset_forgets_failures_so_a_closed_circuit_starts_clean()
    {
        var window = new FailureWindow(_time, BreakerPolicy.Ratio50);
        for (var i = 0; i < 10; i++) window.Record(failed: true);
        Assert.True(window.ShouldOpen());
        window.Reset();
        window.Record(failed: true);
        Assert.False(window.ShouldOpen());
    }

    [Fact]
    public void The_session_policy_opens_at_the_first_failure()
    {
        var window = new FailureWindow(_time, BreakerPolicy.FirstFailure);
        for (var i = 0; i < 50; i++) window.Record(failed: false);
        window.Record(failed: true);
        Assert.True(window.ShouldOpen());
    }

    [Theory]
    [InlineData(300, 3, 100)]
    [InlineData(300, 1, 300)]
    [InlineData(100, 3, 34)]
    [InlineData(1, 5, 1)]
    public void The_local_share_is_the_limit_divided_by_instances_rounded_up(long limit, int instances, long share) =>
        Assert.Equal(share, CompiledRateLimit.ShareOf(limit, instances));
}
