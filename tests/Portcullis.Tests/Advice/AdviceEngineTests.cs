using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Portcullis.Advice;
using Portcullis.Configuration;

namespace Portcullis.Tests.Advice;

/// <summary>The engine's run and lifecycle with fake time and detectors registered only here.</summary>
public sealed class AdviceEngineTests() : ConfigBuildTestBase("portcullis-advice-engine-")
{
    private const string Config = """
        listeners: [{ name: public, address: "127.0.0.1:8080" }]
        routes:
          - { name: reports, match: { pathPrefix: /reports }, respond: { status: 200 } }
        """;

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 1, 10, 0, 0, TimeSpan.Zero));

    private DateTime Now => _time.GetUtcNow().UtcDateTime;

    private GatewaySnapshot Snapshot()
    {
        var result = Build(Config);
        Assert.True(result.Succeeded, Dump(result));
        return result.Snapshot!;
    }

    private AdviceContext Context(GatewaySnapshot snapshot) => new()
    {
        Now = Now,
        Snapshot = snapshot,
        Settings = snapshot.Advice!,
        Runtime = OfflineAdviceRuntime.Instance,
    };

    private AdviceEngine Engine(ListLogger<AdviceEngine> logger, params IAdviceDetector[] detectors) =>
        new(detectors, new AdvicePatchValidator(null, null, _time), logger);

    [Fact]
    public void FirstSeenIsKeptLastSeenMovesAndAFindingNoLongerReturnedIsResolvedThenForgotten()
    {
        var snapshot = Snapshot();
        var detector = new ScriptedDetector("test");
        var engine = Engine(new ListLogger<AdviceEngine>(), detector);
        var started = Now;
        detector.Next = [Findings.Make(FindingKinds.RouteVolume, "reports", Now)];
        var first = engine.Run(Context(snapshot));
        var id = Assert.Single(first.Entries).Finding.Id;

        _time.Advance(TimeSpan.FromMinutes(1));
        detector.Next = [Findings.Make(FindingKinds.RouteVolume, "reports", Now)];
        var second = engine.Run(Context(snapshot));
        var kept = Assert.Single(second.Open).Finding;
        Assert.Equal(started, kept.FirstSeen);
        Assert.Equal(Now, kept.LastSeen);
        Assert.Equal(Now, second.GeneratedAt);

        _time.Advance(TimeSpan.FromMinutes(1));
        detector.Next = [];
        var third = engine.Run(Context(snapshot));
        Assert.Empty(third.Open);
        var resolved = Assert.Single(third.Entries);
        Assert.Equal(Now, resolved.ResolvedAt);
        Assert.Same(third, engine.Current);

        _time.Advance(TimeSpan.FromMinutes(59));
        Assert.Single(engine.Run(Context(snapshot)).Entries); // kept as resolved for an hour
        _time.Advance(TimeSpan.FromMinutes(2));
        Assert.Empty(engine.Run(Context(snapshot)).Entries);
        Assert.False(engine.Current.ById.ContainsKey(id));
    }

    [Fact]
    public void AThrowingDetectorIsSkippedAndLoggedOncePerDistinctErrorWhileTheOthersRun()
    {
        var snapshot = Snapshot();
        var logger = new ListLogger<AdviceEngine>();
        var failing = new ScriptedDetector("failing") { Throw = new InvalidOperationException("boom") };
        var working = new ScriptedDetector("working") { Next = [Findings.Make(FindingKinds.UpstreamErrors, "reports", Now)] };
        var engine = Engine(logger, failing, working);
        for (var i = 0; i < 3; i++) engine.Run(Context(snapshot));
        failing.Throw = new InvalidOperationException("another");
        var set = engine.Run(Context(snapshot));

        Assert.Single(set.Open);
        var run = set.LastRun!;
        Assert.Equal(["failing", "working"], run.Detectors.Select(d => d.Name));
        Assert.Equal("InvalidOperationException: another", run.Detectors[0].Error);
        Assert.Null(run.Detectors[1].Error);
        Assert.Equal(1, run.Detectors[1].Findings);
        Assert.Equal(4, working.Calls);
        Assert.Equal(2, logger.Lines.Count(l => l.Level == LogLevel.Error && l.Text.Contains("detector failing failed", StringComparison.Ordinal)));
    }

    [Fact]
    public void APatchThatWouldNotValidateIsDroppedAndLoggedAValidOneIsKept()
    {
        var snapshot = Snapshot();
        var logger = new ListLogger<AdviceEngine>();
        var valid = new ConfigPatch("""
            rateLimits:
              suggested-reports: { key: consumer, limit: 12, per: 1s, burst: 30 }
            routes:
              - name: reports
                rateLimits: [suggested-reports]
            """, "adds rateLimits.suggested-reports and uses it on route reports");
        var invalid = new ConfigPatch("""
            routes:
              - name: reports
                rateLimits: [no-such-limit]
            """, "uses a limit that does not exist");
        var detector = new ScriptedDetector("test")
        {
            Next = [Findings.Make(FindingKinds.RateLimitSuggested, "reports", Now, valid), Findings.Make(FindingKinds.RateLimitTooTight, "reports", Now, invalid)],
        };
        var set = Engine(logger, detector).Run(Context(snapshot));

        Assert.True(valid with { File = "portcullis.yaml" } == set.Open.Single(e => e.Finding.Kind == FindingKinds.RateLimitSuggested).Finding.Patch, string.Join("\n", logger.Lines.Select(l => l.Text)));
        Assert.Null(set.Open.Single(e => e.Finding.Kind == FindingKinds.RateLimitTooTight).Finding.Patch);
        Assert.Contains(logger.Lines, l => l.Level == LogLevel.Warning && l.Text.Contains("does not validate", StringComparison.Ordinal) && l.Text.Contains("no-such-limit", StringComparison.Ordinal));
    }

    // Routes r0..rN-1 and a rate limit named "known".
    private GatewaySnapshot RoutesWithAKnownLimit(int routes)
    {
        var result = Build("listeners: [{ name: public, address: \"127.0.0.1:8080\" }]\n"
            + "rateLimits:\n  known: { key: ip, limit: 10, per: 1s }\nroutes:\n"
            + string.Concat(Enumerable.Range(0, routes).Select(i => $"  - {{ name: r{i}, match: {{ pathPrefix: /r{i} }}, respond: {{ status: 200 }} }}\n")));
        Assert.True(result.Succeeded, Dump(result));
        return result.Snapshot!;
    }

    // A finding per route whose patch puts the named limit on it (a limit other than "known" does not validate).
    private List<Finding> LimitFindings(int routes, Func<int, string> limitOf) =>
        [.. Enumerable.Range(0, routes).Select(i => Findings.Make(FindingKinds.RateLimitSuggested, $"r{i}", Now,
            new ConfigPatch($"routes:\n  - name: r{i}\n    rateLimits: [{limitOf(i)}]\n", $"limits r{i}")))];

    [Fact]
    public void ARunsPatchesAreCheckedTogetherAndEachBadOneIsFoundByHalving()
    {
        // 64 routes, a patch per route; three of them name a limit that does not exist.
        const int Routes = 64;
        var snapshot = RoutesWithAKnownLimit(Routes);
        int[] bad = [5, 6, 41];
        var findings = LimitFindings(Routes, i => bad.Contains(i) ? "missing" + i : "known");
        var logger = new ListLogger<AdviceEngine>();
        var validator = new AdvicePatchValidator(null, null, _time, compilesPerRun: Routes);
        var engine = new AdviceEngine([new ScriptedDetector("test") { Next = findings }], validator, logger);

        var set = engine.Run(Context(snapshot));
        var withoutPatch = set.Open.Where(e => e.Finding.Patch is null).Select(e => e.Finding.Subject.Name).Order(StringComparer.Ordinal);
        Assert.Equal(bad.Select(i => $"r{i}").Order(StringComparer.Ordinal), withoutPatch);
        Assert.All(set.Open.Where(e => e.Finding.Patch is not null), e => Assert.Equal("portcullis.yaml", e.Finding.Patch!.File));
        Assert.Equal(bad.Length, logger.Lines.Count(l => l.Text.Contains("does not validate", StringComparison.Ordinal)));
        // One compile per patch would be 64; halving costs at most 1 + 2·3·log2(64) = 37.
        Assert.InRange(validator.Compiles, 2, 37);

        // Verdicts are kept for the snapshot: the next run compiles nothing.
        var before = validator.Compiles;
        engine.Run(Context(snapshot));
        Assert.Equal(before, validator.Compiles);
    }

    [Fact]
    public void PatchesTheBudgetLeavesUndecidedGoOutWithoutAPatchAndALaterRunDecidesThem()
    {
        // Every other patch is bad: halving needs far more compiles than one run may spend.
        const int Routes = 64;
        var snapshot = RoutesWithAKnownLimit(Routes);
        var findings = LimitFindings(Routes, i => i % 2 == 1 ? "missing" : "known");
        var logger = new ListLogger<AdviceEngine>();
        var validator = new AdvicePatchValidator(null, null, _time, compilesPerRun: 12);
        var engine = new AdviceEngine([new ScriptedDetector("test") { Next = findings }], validator, logger);

        var first = engine.Run(Context(snapshot));
        Assert.Equal(12, validator.Compiles);
        var offered = first.Open.Count(e => e.Finding.Patch is not null);
        Assert.InRange(offered, 0, Routes / 2 - 1);
        Assert.Contains(logger.Lines, l => l.Text.Contains("without their patch this run", StringComparison.Ordinal));

        var runs = 1;
        FindingSet set = first;
        while (set.Open.Count(e => e.Finding.Patch is not null) < Routes / 2 && runs < 30)
        {
            set = engine.Run(Context(snapshot));
            runs++;
        }

        Assert.True(runs > 1 && runs < 30, $"runs: {runs}");
        Assert.All(set.Open, e => Assert.Equal(int.Parse(e.Finding.Subject.Name[1..], System.Globalization.CultureInfo.InvariantCulture) % 2 == 0, e.Finding.Patch is not null));
    }

    [Fact]
    public void ListenersHearOfAFindingOnceWhileItStaysOpenAndAgainWhenItComesBack()
    {
        var snapshot = Snapshot();
        var listener = new RecordingListener();
        var detector = new ScriptedDetector("test") { Next = [Findings.Make(FindingKinds.UnmatchedScanner, "gateway", Now)] };
        var engine = new AdviceEngine([detector], new AdvicePatchValidator(null, null, _time), new ListLogger<AdviceEngine>(), [listener]);
        engine.Run(Context(snapshot));
        _time.Advance(TimeSpan.FromMinutes(1));
        engine.Run(Context(snapshot));
        var saved = detector.Next;
        detector.Next = [];
        engine.Run(Context(snapshot));
        detector.Next = saved;
        engine.Run(Context(snapshot));

        Assert.Equal([1, 0, 0, 1], listener.NewCounts);
    }

    private sealed class RecordingListener : IAdviceListener
    {
        public List<int> NewCounts { get; } = [];

        public void Published(FindingSet set, IReadOnlyList<Finding> newFindings) => NewCounts.Add(newFindings.Count);
    }
}
