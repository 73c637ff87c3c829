using System.Diagnostics;
using Portcullis.Configuration;

namespace Portcullis.Tests.Configuration;

public sealed class ReloadTimingsTests
{
    [Fact]
    public void Phases_are_listed_in_reload_order_only_once_measured_and_add_up()
    {
        var timings = new ReloadTimings();
        Assert.Empty(timings.Measured);
        var started = Stopwatch.GetTimestamp() - Stopwatch.Frequency; // a second ago
        var now = timings.Add("bind", started);
        timings.Add("parse", now);
        timings.Add("bind", Stopwatch.GetTimestamp() - Stopwatch.Frequency);

        Assert.Equal(["parse", "bind"], timings.Measured.Select(m => m.Phase));
        Assert.True(timings.Measured.Single(m => m.Phase == "bind").Elapsed >= TimeSpan.FromSeconds(2));
        Assert.Matches(@"^parse \d+ ms, bind \d+ ms$", timings.ToString());
        Assert.Throws<ArgumentOutOfRangeException>(() => timings.Add("yaml", now));
    }
}
