using System.Globalization;

namespace Portcullis.Advice;

/// <summary>
/// One route's p99 rise in the detection window, before it is judged a route's or the gateway's: of the total latency,
/// or (<paramref name="Upstream"/>) of the time its upstream took, with the window's total in <see cref="Total"/>.
/// </summary>
internal readonly record struct LatencyRise(string Route, HourP99 Recent, double MedianUs, double ScaleUs, double Z, int BaselineHours, TimeSpan History, bool Upstream = false)
{
    public HourP99? Total { get; init; }
}

/// <summary>A p99 of one route in one hour (or the detection window) from the merged latency sketches.</summary>
internal readonly record struct HourP99(double P99Us, long Count);

internal sealed partial class AnomalyRouteDetector
{
    /// <summary>A rise on this share of the active routes (and at least two, in two clusters) is shared.</summary>
    internal const double SharedShare = 0.25;

    /// <summary>A route this many times slower than the median of the other rising routes keeps its own finding.</summary>
    internal const double OwnRiseFactor = 3;

    /// <summary>
    /// Splits the rising routes into a shared slowdown (many routes of different clusters in the same window: the
    /// gateway's queueing, its host being overloaded or paused, or a dependency they all share) and routes rising on
    /// their own. Upstreams of different clusters do not slow down together by chance; a host does.
    /// </summary>
    internal static (List<LatencyRise> Shared, List<LatencyRise> Own) SharedSlowdown(IReadOnlyList<LatencyRise> risers, int activeRoutes, Func<LatencyRise, string?> clusterOf)
    {
        if (risers.Count < 2) return ([], [.. risers]);
        var own = new List<LatencyRise>();
        var group = new List<LatencyRise>();
        foreach (var r in risers)
        {
            var others = RobustStats.Median([.. risers.Where(o => o.Route != r.Route).Select(o => o.Recent.P99Us)]);
            (r.Recent.P99Us >= OwnRiseFactor * others ? own : group).Add(r);
        }

        var clusters = group.Select(r => clusterOf(r) ?? "route:" + r.Route).Distinct(StringComparer.Ordinal).Count();
        var needed = Math.Max(2, (int)Math.Ceiling(SharedShare * activeRoutes));
        if (group.Count >= needed && clusters >= 2) return (group, own);
        own.AddRange(group);
        return ([], own);
    }

    /// <summary>gateway.latency-anomaly: the rise of many routes at once, as one finding listing them.</summary>
    private static Finding GatewayLatencyFinding(AnomalyWindows w, List<LatencyRise> shared, int activeRoutes)
    {
        var subject = new FindingSubject(SubjectKind.Gateway, "gateway");
        var ordered = shared.OrderByDescending(r => r.Recent.P99Us / r.MedianUs).ThenBy(r => r.Route, StringComparer.Ordinal).ToList();
        var ratio = RobustStats.Median([.. shared.Select(r => r.Recent.P99Us / r.MedianUs)]);
        var list = string.Join(", ", ordered.Select(r => string.Create(CultureInfo.InvariantCulture, $"{r.Route} {r.Recent.P99Us / 1000:0.#} ms (usually {r.MedianUs / 1000:0.#})")));
        List<EvidenceValue> values = [new EvidenceValue("routes slower", shared.Count, "routes", activeRoutes), new EvidenceValue("median p99 ratio", Math.Round(ratio, 1), "×")];
        values.AddRange(ordered.Select(r => new EvidenceValue($"p99 latency {r.Route}", Math.Round(r.Recent.P99Us / 1000, 3), "ms", Math.Round(r.MedianUs / 1000, 3))));
        return new Finding
        {
            Id = Finding.MakeId(FindingKinds.GatewayLatency, subject),
            Kind = FindingKinds.GatewayLatency,
            Severity = FindingSeverity.Warning,
            Subject = subject,
            FirstSeen = w.RecentStart,
            LastSeen = w.Now,
            Title = string.Create(CultureInfo.InvariantCulture, $"p99 latency rose on {shared.Count} of {activeRoutes} routes at once (median {ratio:0.#}× usual)"),
            Explanation = string.Create(CultureInfo.InvariantCulture,
                $"In the last {w.RecentMinutes:0.#} minutes the p99 of {shared.Count} routes of different clusters rose together: {list}. ")
                + "Upstreams of different clusters rarely slow down at the same minute by chance; the gateway itself (its host short of CPU or memory, a long GC pause, queueing in front of the proxy) or a dependency all of them share is the likely cause. Check the host's load and the gateway's own metrics before the upstreams.",
            Evidence = new Evidence(w.RecentStart, w.Now, values)
            {
                Basis = string.Create(CultureInfo.InvariantCulture, $"each route's p99 against its own baseline hours; shared when ≥ {SharedShare:P0} of the {activeRoutes} routes with enough traffic (at least 2, in ≥ 2 clusters) rise in one window"),
            },
            Confidence = shared.Count >= 3 ? FindingConfidence.Medium : FindingConfidence.Low,
        };
    }
}
