using Portcullis.Advice;
using Portcullis.Testing;

namespace Portcullis.Tests.Advice;

/// <summary>upstream.errors and upstream.timeouts on a real DuckDB store of generated per-second traffic.</summary>
public sealed class ServiceUpstreamDetectorTests : ServiceAdviceTestBase
{
    private const string Config = """
        listeners:
          - { name: public, address: "127.0.0.1:8080" }
        routes:
          - name: orders
            match: { pathPrefix: /orders }
            cluster: orders
        clusters:
          orders: { destinations: ["http://127.0.0.1:1"], timeouts: { request: 5s } }
        """;

    private IReadOnlyList<Finding> Run(Func<DateTime, double> failShare, short status = 503, string? reason = "upstream.unavailable", int rps = 5)
    {
        var snapshot = Snapshot(Config);
        var data = new AnalyticsDataGenerator();
        new ServiceTrafficGenerator(data, "orders", "orders").Add(Now.AddMinutes(-70), Now, rps, failShare, status, reason);
        Write(data);
        return new ServiceUpstreamDetector().Detect(Context(snapshot));
    }

    [Fact]
    public void FailingUpstreamIsFoundFortySecondsIntoTheIncident()
    {
        var onset = Now.AddSeconds(-40);
        var findings = Run(t => t >= onset ? 1.0 : 0);
        var finding = Assert.Single(findings);
        Assert.Equal(FindingKinds.UpstreamErrors, finding.Kind);
        Assert.Equal(new FindingSubject(SubjectKind.Cluster, "orders"), finding.Subject);
        Assert.Equal(FindingSeverity.Critical, finding.Severity);
        var share = finding.Evidence.Values.Single(v => v.Name == "error share");
        Assert.InRange(share.Value, 0.9, 1.0);
        Assert.Equal(0, share.Baseline);
        Assert.Equal(onset, finding.Evidence.From);
        Assert.Contains("cluster=orders", finding.Evidence.DashboardLink, StringComparison.Ordinal);
        Assert.Null(finding.Patch);
    }

    [Fact]
    public void PartialFailureAboveTheShareIsFound()
    {
        var finding = Assert.Single(Run(t => t >= Now.AddSeconds(-90) ? 0.1 : 0, status: 500, reason: null, rps: 10));
        Assert.Equal(FindingKinds.UpstreamErrors, finding.Kind);
        Assert.Equal(FindingSeverity.Warning, finding.Severity);
        Assert.InRange(finding.Evidence.Values.Single(v => v.Name == "error share").Value, 0.08, 0.12);
    }

    [Fact]
    public void BriefBlipIsNotAnIncident()
    {
        // 10 s of total failure (50 errors) 50 s ago: many errors, but not sustained.
        Assert.Empty(Run(t => t >= Now.AddSeconds(-50) && t < Now.AddSeconds(-40) ? 1.0 : 0));
    }

    [Fact]
    public void BackgroundErrorsBelowTheShareAreNot()
    {
        // 2 % of requests failing all the time: sustained, plenty of errors, below the 5 % threshold.
        Assert.Empty(Run(_ => 0.02, status: 502, reason: "upstream.error", rps: 10));
    }

    [Fact]
    public void FailureThatEndedIsNoLongerReported()
    {
        Assert.Empty(Run(t => t >= Now.AddSeconds(-115) && t < Now.AddSeconds(-65) ? 1.0 : 0));
    }

    [Fact]
    public void TimeoutsAreTheirOwnKind()
    {
        var finding = Assert.Single(Run(t => t >= Now.AddSeconds(-60) ? 0.5 : 0, status: 504, reason: "upstream.timeout"));
        Assert.Equal(FindingKinds.UpstreamTimeouts, finding.Kind);
        Assert.Equal(5, finding.Evidence.Values.Single(v => v.Name == "timeouts.request").Value);
        Assert.Contains("reason=upstream.timeout", finding.Evidence.DashboardLink, StringComparison.Ordinal);
    }

    [Fact]
    public void OtherRefusalsWith5xxAreNotUpstreamErrors()
    {
        // The gateway's own 503s (here a rate-limit store outage) say nothing about the upstream.
        Assert.Empty(Run(t => t >= Now.AddSeconds(-90) ? 1.0 : 0, status: 503, reason: "ratelimit.store-unavailable"));
    }

    [Fact]
    public void TooFewRequestsAreNotAnIncident()
    {
        var snapshot = Snapshot(Config);
        var data = new AnalyticsDataGenerator();

        // One request every 5 s, all failing for 90 s: 18 failures, 18 requests, below minRequests (30).
        var generator = new ServiceTrafficGenerator(data, "orders", "orders");
        for (var t = Now.AddSeconds(-90); t < Now; t = t.AddSeconds(5)) generator.Add(t, t.AddSeconds(1), 1, _ => 1.0);
        Write(data);
        Assert.Empty(new ServiceUpstreamDetector().Detect(Context(snapshot)));
    }

    [Fact]
    public void WithoutAStoreNothingIsReported()
    {
        Assert.Empty(new ServiceUpstreamDetector().Detect(Context(Snapshot(Config), store: false)));
    }
}
