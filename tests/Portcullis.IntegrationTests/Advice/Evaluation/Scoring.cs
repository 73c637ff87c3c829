using System.Globalization;
using System.Text;

namespace Portcullis.IntegrationTests.Advice.Evaluation;

/// <summary>
/// A labelled incident: the finding kind it must raise on one of <paramref name="Subjects"/> (a subject's name, or the
/// route of a consumer/client finding), from <paramref name="Start"/> (offset into the live run). Findings of the
/// <paramref name="Secondary"/> kinds on the same subjects are correct too (a failing upstream is also a route error
/// anomaly): they count as true positives for precision, but recall is scored on <paramref name="Kind"/> only.
/// </summary>
/// <param name="SecondarySubjects">More subjects for the secondary kinds only (the route a surge or a burst lands on).</param>
internal sealed record Incident(string Name, string Kind, string[] Subjects, TimeSpan Start, string[] Secondary, string[]? SecondarySubjects = null)
{
    public bool Matches(ObservedFinding finding, bool primaryOnly = false)
    {
        if (finding.FirstObserved < Start) return false;
        if (finding.Kind == Kind) return About(finding, Subjects);
        return !primaryOnly && Secondary.Contains(finding.Kind) && About(finding, [.. Subjects, .. SecondarySubjects ?? []]);
    }

    private static bool About(ObservedFinding finding, string[] subjects) =>
        subjects.Contains(finding.SubjectName) || (finding.Route is { } route && subjects.Contains(route));
}

/// <summary>A finding as the harness saw it in GET /admin/advice: when it first appeared (offset into the live run).</summary>
internal sealed record ObservedFinding(string Id, string Kind, string Severity, string SubjectKind, string SubjectName, string? Route, string Title, TimeSpan FirstObserved);

/// <summary>One run: its seed, incidents, findings and how long it ran (live).</summary>
internal sealed record RunResult(int Seed, bool Clean, TimeSpan Duration, IReadOnlyList<Incident> Incidents, IReadOnlyList<ObservedFinding> Findings, string Notes)
{
    /// <summary>Findings first seen during the warm-up (before offset 0): listed, not scored.</summary>
    public IReadOnlyList<ObservedFinding> WarmUpFindings { get; init; } = [];
}

/// <summary>Precision, recall and time to detect per kind over runs; false positives per hour on clean runs.</summary>
internal static class Scoring
{
    /// <summary>
    /// Kinds that claim something happened in the traffic or the services (what incidents raise): scored. The rest
    /// are suggestions and config checks (ratelimit.suggested, cluster.single-destination, headers.*, …), true of the
    /// config whatever the traffic does: listed, not scored.
    /// </summary>
    public static readonly HashSet<string> ScoredKinds =
    [
        "traffic.scanner", "traffic.enumeration", "route.volume-anomaly", "route.error-anomaly", "route.latency-anomaly", "gateway.latency-anomaly",
        "consumer.new-route", "consumer.rate-surge", "auth.failure-burst", "route.new-path-shape",
        "upstream.errors", "upstream.timeouts", "upstream.timeout-too-tight", "destination.flapping", "ratelimit.too-tight",
    ];

    public sealed record KindScore(string Kind, int Incidents, int Detected, List<double> DetectSeconds, int TruePositives, int FalsePositives)
    {
        public double? Recall => Incidents == 0 ? null : (double)Detected / Incidents;

        public double? Precision => TruePositives + FalsePositives == 0 ? null : (double)TruePositives / (TruePositives + FalsePositives);
    }

    public static Dictionary<string, KindScore> Score(IEnumerable<RunResult> runs)
    {
        var scores = new Dictionary<string, KindScore>();
        KindScore Of(string kind) => scores.TryGetValue(kind, out var s) ? s : scores[kind] = new KindScore(kind, 0, 0, [], 0, 0);
        foreach (var run in runs.Where(r => !r.Clean))
        {
            foreach (var incident in run.Incidents)
            {
                var score = Of(incident.Kind);
                var first = run.Findings.Where(f => incident.Matches(f, primaryOnly: true)).Select(f => f.FirstObserved).DefaultIfEmpty(TimeSpan.MaxValue).Min();
                var detected = first != TimeSpan.MaxValue;
                scores[incident.Kind] = score with { Incidents = score.Incidents + 1, Detected = score.Detected + (detected ? 1 : 0) };
                if (detected) score.DetectSeconds.Add((first - incident.Start).TotalSeconds);
            }

            foreach (var finding in run.Findings.Where(f => ScoredKinds.Contains(f.Kind)))
            {
                var score = Of(finding.Kind);
                var hit = run.Incidents.Any(i => i.Matches(finding));
                scores[finding.Kind] = score with { TruePositives = score.TruePositives + (hit ? 1 : 0), FalsePositives = score.FalsePositives + (hit ? 0 : 1) };
            }
        }

        return scores;
    }

    /// <summary>The findings of a run no incident explains (all scored findings of a clean run).</summary>
    public static IEnumerable<ObservedFinding> FalsePositives(RunResult run) =>
        run.Findings.Where(f => ScoredKinds.Contains(f.Kind) && !run.Incidents.Any(i => i.Matches(f)));

    public static string Markdown(IReadOnlyList<RunResult> runs)
    {
        var text = new StringBuilder();
        var scored = runs.Where(r => !r.Clean).ToList();
        var seeds = string.Join(", ", scored.Select(r => r.Seed));
        text.AppendLine(CultureInfo.InvariantCulture, $"Incident runs: {scored.Count} (seeds {seeds}), {(scored.Count == 0 ? 0 : scored.Average(r => r.Duration.TotalMinutes)):0.0} min live each.");
        text.AppendLine();
        text.AppendLine("| kind | incidents | detected | recall | precision (TP/all) | time to detect median / max (s) |");
        text.AppendLine("| --- | ---: | ---: | ---: | ---: | ---: |");
        foreach (var score in Score(scored).Values.OrderBy(s => s.Incidents == 0).ThenBy(s => s.Kind, StringComparer.Ordinal))
        {
            var times = score.DetectSeconds.Order().ToList();
            var detect = times.Count == 0 ? "–" : $"{times[(times.Count - 1) / 2]:0} / {times[^1]:0}";
            text.AppendLine(CultureInfo.InvariantCulture,
                $"| {score.Kind} | {score.Incidents} | {score.Detected} | {Format(score.Recall)} | {Format(score.Precision)} ({score.TruePositives}/{score.TruePositives + score.FalsePositives}) | {detect} |");
        }

        foreach (var run in runs)
        {
            var falsePositives = FalsePositives(run).ToList();
            text.AppendLine();
            text.AppendLine(CultureInfo.InvariantCulture,
                $"{(run.Clean ? "Clean run" : "Run")} seed {run.Seed}, {run.Duration.TotalMinutes:0.0} min: {run.Findings.Count} findings, {falsePositives.Count} unexplained (scored kinds){(run.Clean ? $" = {falsePositives.Count / run.Duration.TotalHours:0.0} per hour" : "")}. {run.Notes}");
            foreach (var incident in run.Incidents)
            {
                var first = run.Findings.Where(f => incident.Matches(f, primaryOnly: true)).OrderBy(f => f.FirstObserved).FirstOrDefault();
                text.AppendLine(CultureInfo.InvariantCulture, $"- {incident.Name} ({incident.Kind} on {string.Join("|", incident.Subjects)}, at {incident.Start.TotalSeconds:0} s): {(first is null ? "MISSED" : $"detected after {(first.FirstObserved - incident.Start).TotalSeconds:0} s")}");
            }

            foreach (var finding in falsePositives) text.AppendLine(CultureInfo.InvariantCulture, $"- unexplained: {Describe(finding)}");
            foreach (var finding in run.WarmUpFindings.Where(f => ScoredKinds.Contains(f.Kind))) text.AppendLine(CultureInfo.InvariantCulture, $"- during warm-up (not scored): {Describe(finding)}");
            var advisory = run.Findings.Concat(run.WarmUpFindings).Where(f => !ScoredKinds.Contains(f.Kind)).GroupBy(f => f.Kind).Select(g => $"{g.Key} ×{g.Count()}");
            text.AppendLine(CultureInfo.InvariantCulture, $"- not scored (suggestions, config checks): {string.Join(", ", advisory.DefaultIfEmpty("none"))}");
        }

        return text.ToString();
    }

    public static string Describe(ObservedFinding f) =>
        $"{f.Kind} {f.Severity} {f.SubjectKind}:{f.SubjectName}{(f.Route is null ? "" : " route " + f.Route)} at {f.FirstObserved.TotalSeconds:0} s — {f.Title}";

    private static string Format(double? value) => value is { } v ? v.ToString("0.00", CultureInfo.InvariantCulture) : "–";
}
