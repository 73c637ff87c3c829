using Microsoft.Extensions.Time.Testing;
using Portcullis.Configuration;
using Portcullis.Routing;
using Portcullis.State;
using Portcullis.Traffic;
using Portcullis.Pipeline;

namespace Portcullis.Tests.Traffic;

public sealed class QuotaWindowTests
{
    private static CompiledQuota Quota(QuotaPeriod period, string zone = "UTC", long limit = 3) => new()
    {
        Name = "q",
        Limit = limit,
        Period = period,
        Zone = TimeZoneInfo.FindSystemTimeZoneById(zone),
        Store = TrafficStore.Local,
        Key = new TrafficKey([new RequestSource(RequestSourceKind.Consumer, "", 0)]),
    };

    [Fact]
    public void Day_follows_the_configured_time_zone()
    {
        var quota = Quota(QuotaPeriod.Day, "Europe/Berlin");
        // 23:30 UTC on 26 Nov is already 27 Nov in Berlin (UTC+1).
        var window = quota.WindowAt(new DateTimeOffset(2026, 11, 26, 23, 30, 0, TimeSpan.Zero));
        Assert.Equal("2026-11-27", window.Id);
        Assert.Equal(new DateTimeOffset(2026, 11, 26, 23, 0, 0, TimeSpan.Zero), window.Start.ToUniversalTime());
        Assert.Equal(new DateTimeOffset(2026, 11, 27, 23, 0, 0, TimeSpan.Zero), window.End.ToUniversalTime());
    }

    [Fact]
    public void Month_is_calendar_aligned_across_a_daylight_saving_change()
    {
        var quota = Quota(QuotaPeriod.Month, "Europe/Berlin");
        var window = quota.WindowAt(new DateTimeOffset(2026, 3, 15, 12, 0, 0, TimeSpan.Zero));
        Assert.Equal("2026-03", window.Id);
        Assert.Equal(new DateTimeOffset(2026, 2, 28, 23, 0, 0, TimeSpan.Zero), window.Start.ToUniversalTime()); // CET
        Assert.Equal(new DateTimeOffset(2026, 3, 31, 22, 0, 0, TimeSpan.Zero), window.End.ToUniversalTime()); // CEST
    }

    [Fact]
    public void Week_starts_on_monday_and_hour_on_the_hour()
    {
        var now = new DateTimeOffset(2026, 11, 26, 12, 34, 56, TimeSpan.Zero); // a Thursday
        var week = Quota(QuotaPeriod.Week).WindowAt(now);
        Assert.Equal(new DateTimeOffset(2026, 11, 23, 0, 0, 0, TimeSpan.Zero), week.Start);
        Assert.Equal(TimeSpan.FromDays(7), week.End - week.Start);
        var hour = Quota(QuotaPeriod.Hour).WindowAt(now);
        Assert.Equal("2026-11-26T12", hour.Id);
        Assert.Equal(TimeSpan.FromHours(1), hour.End - hour.Start);
    }

    [Fact]
    public async Task Local_quota_refuses_past_the_limit_without_counting_and_renews_with_the_next_period()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 11, 26, 23, 59, 0, TimeSpan.Zero));
        var store = new LocalCounterStore(time);
        var quota = Quota(QuotaPeriod.Day);
        var window = quota.WindowAt(time.GetUtcNow());
        for (var i = 0; i < 3; i++) Assert.Equal(RateOutcome.Allowed, (await store.QuotaAsync(quota, "alice", window, default)).Outcome);
        var refused = await store.QuotaAsync(quota, "alice", window, default);
        Assert.Equal(RateOutcome.Limited, refused.Outcome);
        Assert.Equal(TimeSpan.FromMinutes(1), refused.RetryAfter);
        Assert.Equal(3, await store.QuotaUsedAsync(quota, "alice", window, default));
        Assert.Equal(0, await store.QuotaUsedAsync(quota, "bob", window, default));

        time.Advance(TimeSpan.FromMinutes(1));
        var tomorrow = quota.WindowAt(time.GetUtcNow());
        Assert.Equal(RateOutcome.Allowed, (await store.QuotaAsync(quota, "alice", tomorrow, default)).Outcome);
        Assert.Equal(1, await store.QuotaUsedAsync(quota, "alice", tomorrow, default));
    }
}
