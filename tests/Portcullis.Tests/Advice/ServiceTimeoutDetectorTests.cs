using Microsoft.Extensions.Time.Testing;
using Portcullis.Advice;
using Portcullis.Testing;

namespace Portcullis.Tests.Advice;

/// <summary>upstream.timeout-too-tight and -too-loose from the rollups' upstream sketches; the patches validate.</summary>
public sealed class ServiceTimeoutDetectorTests : ServiceAdviceTestBase
{
    private static string Config(string timeout) => $$"""
        listeners:
          - { name: public, address: "127.0.0.1:8080" }
        routes:
          - name: orders
            match: { pathPrefix: /orders }
            cluster: orders
        clusters:
          orders:
            destinations: ["http://127.0.0.1:1"]
            timeouts: { request: {{timeout}} }
        """;

    private IReadOnlyList<Finding> Run(string timeout, DateTime from, Func<DateTime, long> upstreamUs, int rps = 2)
    {
        var snapshot = Snapshot(Config(timeout));
        var data = new AnalyticsDataGenerator();
        new ServiceTrafficGenerator(data, "orders", "orders").Add(from, Now, rps, upstreamUs: upstreamUs);
        Write(data);
        return new ServiceTimeoutDetector(new FakeTimeProvider(Now)).Detect(Context(snapshot));
    }

    [Fact]
    public void P99NearTheTimeoutIsTooTightAndThePatchRaisesIt()
    {
        // 5 s timeout, upstream answering in 4.3 s (86 %) for the last 20 minutes.
        var findings = Run("5s", Now.AddMinutes(-20), _ => 4_300_000);
        var finding = Assert.Single(findings, f => f.Kind == FindingKinds.TimeoutTooTight);
        Assert.Equal(FindingSeverity.Warning, finding.Severity);
        Assert.Equal(FindingConfidence.High, finding.Confidence);
        Assert.InRange(finding.Evidence.Values.Single(v => v.Name == "p99 upstream latency").Value, 4.2, 4.4);
        var patched = Apply(finding.Patch);
        Assert.Equal(TimeSpan.FromSeconds(9), patched.Config.Clusters["orders"].Timeouts.Request);
    }

    [Fact]
    public void LatencyCreepingTowardTheTimeoutIsCaughtBeforeItIsClose()
    {
        // 10 s timeout; latency climbs from 1 s to 6.5 s over 15 minutes (p99 at 65 %, below tightShare 0.8):
        // at this pace it reaches the timeout within 10 minutes.
        var start = Now.AddMinutes(-15);
        var finding = Assert.Single(Run("10s", start, t => (long)(1_000_000 + (t - start).TotalSeconds / 900 * 5_500_000)), f => f.Kind == FindingKinds.TimeoutTooTight);
        Assert.Equal(FindingConfidence.Medium, finding.Confidence);
        Assert.True(finding.Evidence.Values.Single(v => v.Name == "p99 trend").Value > 0);
        Apply(finding.Patch);
    }

    [Fact]
    public void SteadyLatencyWellBelowTheTimeoutIsNotTight()
    {
        Assert.DoesNotContain(Run("10s", Now.AddMinutes(-20), _ => 3_000_000), f => f.Kind == FindingKinds.TimeoutTooTight);
    }

    [Fact]
    public void TooFewRequestsAreNotJudged()
    {
        // 4.5 s against 5 s, but only 40 requests in the latency window (minLatencyRequests 50).
        var snapshot = Snapshot(Config("5s"));
        var data = new AnalyticsDataGenerator();
        var generator = new ServiceTrafficGenerator(data, "orders", "orders");
        for (var t = Now.AddMinutes(-5); t < Now; t = t.AddSeconds(7.5)) generator.Add(t, t.AddSeconds(1), 1, upstreamUs: _ => 4_500_000);
        Write(data);
        Assert.Empty(new ServiceTimeoutDetector(new FakeTimeProvider(Now)).Detect(Context(snapshot)));
    }

    [Fact]
    public void TimeoutFarAboveTheLatencyIsTooLooseAndThePatchLowersIt()
    {
        // 100 s timeout, 80 ms answers for 3 hours (21,600 requests), slowest 400 ms.
        var start = Now.AddHours(-3);
        var findings = Run("100s", start, t => (t - start).TotalSeconds % 600 == 0 ? 400_000 : 80_000);
        var finding = Assert.Single(findings, f => f.Kind == FindingKinds.TimeoutTooLoose);
        Assert.Equal(FindingSeverity.Info, finding.Severity);
        Assert.Equal(FindingConfidence.Medium, finding.Confidence);
        Assert.InRange(finding.Evidence.Values.Single(v => v.Name == "slowest upstream answer").Value, 0.39, 0.41);
        var patched = Apply(finding.Patch);
        Assert.Equal(TimeSpan.FromSeconds(1), patched.Config.Clusters["orders"].Timeouts.Request);
    }

    [Fact]
    public void TimeoutWithinTheFactorIsNotLoose()
    {
        // 1 s timeout against an 80 ms p99: 12.5 × (below looseFactor 20).
        Assert.Empty(Run("1s", Now.AddHours(-3), _ => 80_000));
    }

    [Fact]
    public void WithoutAStoreNothingIsReported()
    {
        Assert.Empty(new ServiceTimeoutDetector(new FakeTimeProvider(Now)).Detect(Context(Snapshot(Config("5s")), store: false)));
    }
}
