using Microsoft.Extensions.Time.Testing;
using Portcullis.Advice;
using Portcullis.Configuration;

namespace Portcullis.Tests.Advice;

/// <summary>
/// A slow detector (the rate-limit replay) never holds the engine's cycle in a live gateway: the engine gets the
/// last completed result while a computation runs, the fresh one as soon as it completes, and the next one is
/// spaced by ten times the last duration. Offline it runs inline. Gates (not sleeps) make the timing deterministic.
/// </summary>
public sealed class BackgroundDetectionTests() : ConfigBuildTestBase("portcullis-advice-background-")
{
    private sealed class LiveRuntime : IAdviceRuntime
    {
        public bool IsLive => true;

        public IReadOnlyList<Portcullis.Clusters.HealthTransition> HealthTransitions(DateTime since) => [];

        public IReadOnlyList<RuntimeCertificate> Certificates() => [];

        public IReadOnlyList<RuntimeJwks> Jwks() => [];

        public IReadOnlyList<(string Route, string Finding, long Count)> ResponseHeaderFindings() => [];
    }

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 1, 10, 0, 0, TimeSpan.Zero));

    private AdviceContext Context(GatewaySnapshot snapshot, IAdviceRuntime runtime) => new()
    {
        Now = _time.GetUtcNow().UtcDateTime,
        Snapshot = snapshot,
        Settings = snapshot.Advice!,
        Runtime = runtime,
    };

    private GatewaySnapshot Snapshot(int status = 200)
    {
        var result = Build($$"""
            listeners: [{ name: public, address: "127.0.0.1:8080" }]
            routes:
              - { name: reports, match: { pathPrefix: /reports }, respond: { status: {{status}} } }
            """);
        Assert.True(result.Succeeded, Dump(result));
        return result.Snapshot!;
    }

    [Fact]
    public void LiveASlowComputationReturnsTheLastResultUntilItCompletes_ThenTheFreshOne()
    {
        var snapshot = Snapshot();
        var background = new BackgroundDetection(TimeSpan.FromMilliseconds(50));
        using var release = new ManualResetEventSlim();
        var computations = 0;
        IReadOnlyList<Finding> Slow(AdviceContext context)
        {
            var n = Interlocked.Increment(ref computations);
            Assert.True(release.Wait(TimeSpan.FromSeconds(30)));
            return [Findings.Make(FindingKinds.RateLimitSuggested, "run-" + n, context.Now)];
        }

        // The computation is held: the engine's run comes back (after the budget) with nothing yet.
        Assert.Empty(background.Detect(Context(snapshot, new LiveRuntime()), Slow));
        Assert.True(background.IsRunning);

        // Still held on the next cycle: no second computation is started beside it.
        _time.Advance(TimeSpan.FromMinutes(1));
        Assert.Empty(background.Detect(Context(snapshot, new LiveRuntime()), Slow));
        // The held computation may not have been scheduled yet on a loaded machine: wait for it, then check it is the only one.
        Assert.True(SpinWait.SpinUntil(() => Volatile.Read(ref computations) >= 1, TimeSpan.FromSeconds(30)));
        Assert.Equal(1, Volatile.Read(ref computations));

        release.Set();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        IReadOnlyList<Finding> result;
        do
        {
            _time.Advance(TimeSpan.FromMinutes(1));
            result = background.Detect(Context(snapshot, new LiveRuntime()), Slow);
        }
        while (result.Count == 0 && DateTime.UtcNow < deadline);

        Assert.Equal("run-1", Assert.Single(result).Subject.Name);
        Assert.False(background.IsRunning);
    }

    [Fact]
    public void LiveTheNextComputationWaitsTenTimesTheLastDuration()
    {
        var snapshot = Snapshot();
        var background = new BackgroundDetection(TimeSpan.FromSeconds(30));
        var computations = 0;
        IReadOnlyList<Finding> Measured(AdviceContext context)
        {
            Interlocked.Increment(ref computations);
            Thread.Sleep(200); // a real duration to space by; the budget covers it on a busy machine
            return [];
        }

        background.Detect(Context(snapshot, new LiveRuntime()), Measured);
        Assert.Equal(1, computations);

        // The first (cold) computation does not space the next: the next cycle starts one.
        _time.Advance(TimeSpan.FromMilliseconds(1));
        background.Detect(Context(snapshot, new LiveRuntime()), Measured);
        Assert.Equal(2, computations);

        // Under 10 × 200 ms after a later one (fake time): the last result is reused, nothing starts.
        _time.Advance(TimeSpan.FromMilliseconds(1500));
        background.Detect(Context(snapshot, new LiveRuntime()), Measured);
        Assert.Equal(2, computations);
        Assert.False(background.IsRunning);

        // Long after: a new computation.
        _time.Advance(TimeSpan.FromMinutes(5));
        background.Detect(Context(snapshot, new LiveRuntime()), Measured);
        Assert.Equal(3, computations);
    }

    [Fact]
    public void LiveAReloadStartsAComputationAtTheNextRunWhateverTheSpacing()
    {
        // The evaluation's too-tight limit came minutes late: a reload installed it while the next computation
        // was spaced by ten times a load-inflated duration, so nothing judged the new limit until then.
        var before = Snapshot();
        var after = Snapshot(status: 204);
        Assert.NotEqual(before.Fingerprint, after.Fingerprint);
        var background = new BackgroundDetection(TimeSpan.FromSeconds(30));
        var seen = new List<string>();
        IReadOnlyList<Finding> Measured(AdviceContext context)
        {
            lock (seen) seen.Add(context.Snapshot.Fingerprint);
            Thread.Sleep(200);
            return [];
        }

        background.Detect(Context(before, new LiveRuntime()), Measured); // cold
        _time.Advance(TimeSpan.FromMilliseconds(1));
        background.Detect(Context(before, new LiveRuntime()), Measured); // spaces the next by ≥ 2 s
        _time.Advance(TimeSpan.FromMilliseconds(500));
        background.Detect(Context(before, new LiveRuntime()), Measured);
        Assert.Equal(2, seen.Count);

        // Same instant, reloaded config: computed now, against the new snapshot.
        background.Detect(Context(after, new LiveRuntime()), Measured);
        Assert.Equal(3, seen.Count);
        Assert.Equal(after.Fingerprint, seen[^1]);

        // And then spaced again as usual.
        _time.Advance(TimeSpan.FromMilliseconds(500));
        background.Detect(Context(after, new LiveRuntime()), Measured);
        Assert.Equal(3, seen.Count);
    }

    [Fact]
    public void LiveTheSpacingNeverExceedsTheMaximum()
    {
        // Ten times a wall-clock duration is minutes on a loaded host; the wait is capped.
        var snapshot = Snapshot();
        var background = new BackgroundDetection(TimeSpan.FromSeconds(30), maxSpacing: TimeSpan.FromSeconds(1));
        var computations = 0;
        IReadOnlyList<Finding> Measured(AdviceContext context)
        {
            Interlocked.Increment(ref computations);
            Thread.Sleep(300); // ten times this (3 s) is above the 1 s cap
            return [];
        }

        background.Detect(Context(snapshot, new LiveRuntime()), Measured);
        _time.Advance(TimeSpan.FromMilliseconds(1));
        background.Detect(Context(snapshot, new LiveRuntime()), Measured);
        Assert.Equal(2, computations);
        _time.Advance(TimeSpan.FromMilliseconds(900));
        background.Detect(Context(snapshot, new LiveRuntime()), Measured);
        Assert.Equal(2, computations);
        _time.Advance(TimeSpan.FromMilliseconds(200)); // 1.1 s after: past the cap, well short of 10 × 300 ms
        background.Detect(Context(snapshot, new LiveRuntime()), Measured);
        Assert.Equal(3, computations);
    }

    [Fact]
    public void OfflineItRunsInlineEveryTime()
    {
        var snapshot = Snapshot();
        var background = new BackgroundDetection();
        var computations = 0;
        for (var i = 0; i < 3; i++)
        {
            background.Detect(Context(snapshot, OfflineAdviceRuntime.Instance), _ => { computations++; return []; });
        }

        Assert.Equal(3, computations);
        Assert.False(background.IsRunning);
    }

    [Fact]
    public void LiveAFailedComputationSurfacesOnceAndTheNextRunStartsAgain()
    {
        var snapshot = Snapshot();
        var background = new BackgroundDetection(TimeSpan.FromSeconds(30));
        Assert.Throws<InvalidOperationException>(() => background.Detect(Context(snapshot, new LiveRuntime()), _ => throw new InvalidOperationException("store gone")));
        Assert.False(background.IsRunning);
        Assert.Empty(background.Detect(Context(snapshot, new LiveRuntime()), _ => []));
    }
}
