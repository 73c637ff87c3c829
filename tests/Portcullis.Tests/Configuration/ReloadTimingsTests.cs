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
        timings.Stop();
        Assert.Matches(@"^parse \d+ ms, bind \d+ ms; GC paused \d+ ms \(collections: gen0 \d+, gen1 \d+, gen2 \d+\)$", timings.ToString());
        Assert.Throws<ArgumentOutOfRangeException>(() => timings.Add("yaml", now));
    }

    [Fact]
    public void The_collections_and_pauses_while_the_reload_ran_are_counted()
    {
        var timings = new ReloadTimings();
        GC.Collect(0, GCCollectionMode.Forced, blocking: true);
        timings.Stop();

        // Process-wide counts: other tests' collections may add to them, never take away.
        Assert.True(timings.Collections[0] >= 1, $"gen0 collections: {timings.Collections[0]}");
        Assert.True(timings.GcPause >= TimeSpan.Zero);
        Assert.Equal(3, timings.Collections.Count);
    }
}
