namespace Portcullis.IntegrationTests.Advice.Evaluation;

/// <summary>The harness's scoring: a finding matches an incident by kind, subject (or route) and time; everything else is a false positive.</summary>
public sealed class ScoringTests
{
    private static readonly Incident Scanner = new("scanner", "traffic.scanner", ["203.0.113.50"], TimeSpan.FromSeconds(60), ["traffic.enumeration"]);
    private static readonly Incident Failing = new("failing", "upstream.errors", ["payments"], TimeSpan.FromSeconds(120), ["route.error-anomaly"]);

    private static ObservedFinding Found(string kind, string subject, double seconds, string? route = null) =>
        new(kind + subject + seconds, kind, "warning", "client", subject, route, "t", TimeSpan.FromSeconds(seconds));

    [Fact]
    public void Recall_precision_and_time_to_detect_come_from_kind_subject_and_time()
    {
        var run = new RunResult(1, false, TimeSpan.FromMinutes(7), [Scanner, Failing],
        [
            Found("traffic.scanner", "203.0.113.50", 30), // before the incident: not caused by it
            Found("traffic.scanner", "203.0.113.50", 95),
            Found("traffic.enumeration", "203.0.113.50", 100), // a secondary kind: a true positive, not recall
            Found("route.error-anomaly", "x", 130, route: "payments"), // matched through its route
            Found("upstream.errors", "orders", 130), // wrong subject
            Found("ratelimit.suggested", "reports", 10), // not scored
        ], "");

        var scores = Scoring.Score([run]);

        Assert.Equal(1.0, scores["traffic.scanner"].Recall);
        Assert.Equal([35.0], scores["traffic.scanner"].DetectSeconds);
        Assert.Equal(0.5, scores["traffic.scanner"].Precision);
        Assert.Equal(1.0, scores["traffic.enumeration"].Precision);
        Assert.Equal(0.0, scores["upstream.errors"].Recall);
        Assert.Equal(0.0, scores["upstream.errors"].Precision);
        Assert.Equal(1.0, scores["route.error-anomaly"].Precision);
        Assert.False(scores.ContainsKey("ratelimit.suggested"));
        Assert.Equal(2, Scoring.FalsePositives(run).Count());
    }

    [Fact]
    public void A_clean_run_counts_every_scored_finding_as_a_false_positive_per_hour()
    {
        var run = new RunResult(7, true, TimeSpan.FromMinutes(30), [], [Found("route.volume-anomaly", "orders", 600), Found("cluster.single-destination", "catalog", 5)], "");

        Assert.Single(Scoring.FalsePositives(run));
        Assert.Contains("= 2.0 per hour", Scoring.Markdown([run]), StringComparison.Ordinal);
    }
}
