using Microsoft.Extensions.Time.Testing;
using Portcullis.Configuration;
using Portcullis.Tests.Advice;

namespace Portcullis.Tests.Configuration;

/// <summary>
/// When the gateway gives a large build's memory back (issue 20: 970 MB resident for a 250 MB live heap at 50,000
/// routes): at once at start, and otherwise once large builds have stopped for the quiet period; never for small ones.
/// </summary>
public sealed class HeapTrimTests
{
    private readonly FakeTimeProvider _time = new();

    // The process's collection count as the trim sees it: other tests collect in this process at any time.
    private int _collections;

    private HeapTrim Trim(ListLogger<HeapTrim>? logs = null) =>
        new(logs ?? new ListLogger<HeapTrim>(), _time, collections: () => _collections);

    [Fact]
    public void A_small_build_does_not_trim()
    {
        using var trim = Trim();
        trim.Now("start", HeapTrim.Threshold / 4);
        trim.AfterBuild("a reload", HeapTrim.Threshold / 4);
        Assert.False(trim.Pending);
        _time.Advance(HeapTrim.QuietPeriod * 3);
        Assert.Equal(0, trim.Trims);
    }

    [Fact]
    public void Small_builds_add_up_to_a_trim_once_together_they_reached_the_threshold()
    {
        // The advisor's runs each leave ~15 MB at 50,000 routes, and no collection takes it: resident memory climbed
        // 364 → 421 MB in 3.5 idle minutes before builds added up.
        var logs = new ListLogger<HeapTrim>();
        using var trim = Trim(logs);
        trim.Now("start", HeapTrim.Threshold / 2);
        Assert.Equal(0, trim.Trims);
        trim.AfterBuild("the advisor's run", HeapTrim.Threshold / 4);
        _time.Advance(HeapTrim.QuietPeriod * 3);
        Assert.False(trim.Pending);

        trim.AfterBuild("the advisor's run", HeapTrim.Threshold / 4);
        Assert.True(trim.Pending);
        _time.Advance(HeapTrim.QuietPeriod);
        Assert.Equal(1, trim.Trims);
        Assert.Contains($"Heap trimmed after 3 builds (the last: the advisor's run): {HeapTrim.Threshold >> 20} MB allocated", string.Join("\n", logs.Lines.Select(l => l.Text)), StringComparison.Ordinal);

        // Counted from the trim on: the builds before it do not count again.
        trim.AfterBuild("the advisor's run", HeapTrim.Threshold / 2);
        _time.Advance(HeapTrim.QuietPeriod * 3);
        Assert.Equal(1, trim.Trims);
    }

    [Fact]
    public void A_collection_between_builds_restarts_the_count_but_not_a_trim_already_waiting()
    {
        // Under traffic the gateway collects its own garbage, the advisor's with it: no pause for what it took.
        using var trim = Trim();
        trim.AfterBuild("the advisor's run", HeapTrim.Threshold / 2);
        _collections++;
        trim.AfterBuild("the advisor's run", HeapTrim.Threshold / 2);
        Assert.False(trim.Pending);
        _time.Advance(HeapTrim.QuietPeriod * 3);
        Assert.Equal(0, trim.Trims);

        // A large build's trim waits out its quiet period whatever collections run meanwhile.
        trim.AfterBuild("the reload to generation 2", HeapTrim.Threshold);
        _collections++;
        trim.AfterBuild("the advisor's run", 1);
        Assert.True(trim.Pending);
        _time.Advance(HeapTrim.QuietPeriod);
        Assert.Equal(1, trim.Trims);
    }

    [Fact]
    public void A_large_build_trims_once_builds_have_stopped_for_the_quiet_period()
    {
        using var trim = Trim();
        var fullCollections = GC.CollectionCount(GC.MaxGeneration);
        trim.AfterBuild("the reload to generation 2", HeapTrim.Threshold);
        Assert.True(trim.Pending);
        _time.Advance(HeapTrim.QuietPeriod - TimeSpan.FromMilliseconds(1));
        Assert.Equal(0, trim.Trims);

        // Another large build inside the quiet period: the burst keeps its heap, the trim waits for the last one.
        trim.AfterBuild("the reload to generation 3", HeapTrim.Threshold);
        _time.Advance(HeapTrim.QuietPeriod - TimeSpan.FromMilliseconds(1));
        Assert.Equal(0, trim.Trims);
        _time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Equal(1, trim.Trims);
        Assert.False(trim.Pending);
        Assert.True(GC.CollectionCount(GC.MaxGeneration) > fullCollections, "no full collection ran");

        _time.Advance(HeapTrim.QuietPeriod * 3);
        Assert.Equal(1, trim.Trims);
    }

    [Fact]
    public void Turned_off_it_counts_nothing_and_drops_a_trim_that_was_waiting()
    {
        // limits.trimHeapAfterBuilds: false, e.g. reloaded while a trim waited for its quiet period.
        var enabled = true;
        using var trim = new HeapTrim(new ListLogger<HeapTrim>(), _time, collections: () => _collections) { Enabled = () => enabled };
        trim.AfterBuild("the reload to generation 2", HeapTrim.Threshold);
        Assert.True(trim.Pending);
        enabled = false;
        _time.Advance(HeapTrim.QuietPeriod);
        Assert.Equal(0, trim.Trims);
        Assert.False(trim.Pending);

        trim.Now("start", HeapTrim.Threshold * 2);
        trim.AfterBuild("the reload to generation 3", HeapTrim.Threshold * 2);
        Assert.False(trim.Pending);
        _time.Advance(HeapTrim.QuietPeriod * 3);
        Assert.Equal(0, trim.Trims);

        // On again: what was built while it was off does not count.
        enabled = true;
        trim.AfterBuild("the reload to generation 4", HeapTrim.Threshold / 2);
        Assert.False(trim.Pending);
        trim.AfterBuild("the reload to generation 5", HeapTrim.Threshold / 2);
        Assert.True(trim.Pending);
    }

    [Fact]
    public void At_start_a_large_build_trims_at_once()
    {
        using var trim = Trim();
        trim.Now("start", HeapTrim.Threshold);
        Assert.Equal(1, trim.Trims);
        Assert.False(trim.Pending);
        _time.Advance(HeapTrim.QuietPeriod * 3);
        Assert.Equal(1, trim.Trims);
    }
}
