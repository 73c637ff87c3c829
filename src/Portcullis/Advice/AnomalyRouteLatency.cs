using System.Globalization;
using DuckDB.NET.Data;
using Portcullis.Analytics;

namespace Portcullis.Advice;

internal sealed partial class AnomalyRouteDetector
{
    // Hour buckets of the baseline are keyed by their start's epoch seconds; the detection window by this.
    private const long RecentKey = -1;

    /// <summary>
    /// route.latency-anomaly: p99 of the served requests (reason NULL; fast refusals would hide a slow upstream) in the
    /// detection window against the median and MAD of the p99s of the baseline's hours (recent hours and the same
    /// hour on past days), each p99 from the merged latency sketches.
    /// </summary>
    private static List<Finding> Latency(AdviceContext context, DuckDBConnection connection, AnomalyWindows w, Dictionary<string, DateTime> firstSeen, DateTime storeStart)
    {
        var options = context.Settings.Anomalies;
        var p99 = P99ByRouteAndHour(connection, w, storeStart);
        var risers = new List<LatencyRise>();
        var active = 0;
        foreach (var (route, hours) in p99)
        {
            if (!context.Snapshot.Routes.ContainsKey(route) || !hours.TryGetValue(RecentKey, out var recent) || recent.Count < options.MinLatencyRequests) continue;
            if (!firstSeen.TryGetValue(route, out var first)) continue;
            var history = w.RecentStart - (first > storeStart ? first : storeStart);
            if (history < options.MinHistory) continue;
            var baseline = hours.Where(h => h.Key != RecentKey && h.Value.Count >= options.MinLatencyRequests).Select(h => h.Value.P99Us).ToList();
            if (baseline.Count < 3) continue;
            active++;
            var median = RobustStats.Median(baseline);
            var scale = Math.Max(RobustStats.MadScale * RobustStats.Mad(baseline, median), median * 0.05);
            var z = RobustStats.Z(recent.P99Us, median, scale);
            var increase = recent.P99Us - median;
            if (recent.P99Us < options.LatencyRatio * median || increase < options.MinLatencyIncrease.TotalMicroseconds || z < options.ZThreshold) continue;
            risers.Add(new(route, recent, median, scale, z, baseline.Count, history));
        }

        // A rise on many routes of different clusters at once is the gateway's or the host's (or a shared dependency's),
        // not each route's: one gateway finding instead of N route findings. A route far slower than the rest of the
        // group (its own incident during a host stall) keeps its route finding.
        var clusters = risers.Count < 2 ? [] : ClusterOfRoute(connection, w);
        var (shared, own) = SharedSlowdown(risers, active, r => clusters.GetValueOrDefault(r.Route));
        var findings = own.Select(r => RouteLatencyFinding(context, w, r)).ToList();
        if (shared.Count > 0) findings.Add(GatewayLatencyFinding(w, shared, active));
        return findings;
    }

    private static Finding RouteLatencyFinding(AdviceContext context, AnomalyWindows w, LatencyRise r)
    {
        var options = context.Settings.Anomalies;
        var (route, recent, median, scale, z) = (r.Route, r.Recent, r.MedianUs, r.ScaleUs, r.Z);
        var subject = new FindingSubject(SubjectKind.Route, route);
        var nowMs = recent.P99Us / 1000;
        var baseMs = median / 1000;
        return new Finding
        {
            Id = Finding.MakeId(FindingKinds.RouteLatency, subject),
            Kind = FindingKinds.RouteLatency,
            Severity = recent.P99Us >= 5 * median ? FindingSeverity.Critical : FindingSeverity.Warning,
            Subject = subject,
            FirstSeen = w.RecentStart,
            LastSeen = w.Now,
            Title = string.Create(CultureInfo.InvariantCulture, $"p99 latency of route {route} is {nowMs:0.#} ms ({recent.P99Us / median:0.#}× its usual {baseMs:0.#} ms)"),
            Explanation = string.Create(CultureInfo.InvariantCulture,
                $"The slowest 1 % of the {recent.Count} requests route {route} served in the last {w.RecentMinutes:0.#} minutes took {nowMs:0.#} ms or more; over the baseline's {r.BaselineHours} hours its p99 was {baseMs:0.#} ms (median; spread {scale / 1000:0.#} ms), {z:0.#} robust standard deviations lower. ")
                + "The upstream (or something it depends on) is slowing down; if it nears the cluster's request timeout, clients will start to see 504s.",
            Evidence = new Evidence(w.RecentStart, w.Now,
                [new EvidenceValue("p99 latency", Math.Round(nowMs, 3), "ms", Math.Round(baseMs, 3)), new EvidenceValue("served requests", recent.Count, "requests"), new EvidenceValue("robust z", Math.Round(z, 1))])
            {
                DashboardLink = DashboardLinks.Route(route, w.RecentStart.AddHours(-3), w.Now),
                Basis = $"{AnomalyStore.Span(r.History)} of history; p99 of {r.BaselineHours} baseline hours with ≥ {options.MinLatencyRequests} requests",
            },
            Confidence = r.BaselineHours >= 24 ? FindingConfidence.High : r.BaselineHours >= 6 ? FindingConfidence.Medium : FindingConfidence.Low,
        };
    }

    private static Dictionary<string, string> ClusterOfRoute(DuckDBConnection connection, AnomalyWindows w)
    {
        using var command = AnomalyStore.Command(connection,
            "SELECT route, max(cluster) FROM rollups WHERE minute >= $rs AND minute <= $end AND route IS NOT NULL AND cluster IS NOT NULL GROUP BY route",
            ("rs", w.RecentStart), ("end", w.Now));
        using var reader = command.ExecuteReader();
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        while (reader.Read()) result[reader.GetString(0)] = reader.GetString(1);
        return result;
    }

    private static Dictionary<string, Dictionary<long, HourP99>> P99ByRouteAndHour(DuckDBConnection connection, AnomalyWindows w, DateTime storeStart)
    {
        var parameters = new List<(string, object?)> { ("bs", w.BaselineStart), ("rs", w.RecentStart), ("end", w.Now) };
        var clauses = new List<string> { "(minute >= $bs AND minute <= $end)" };
        var i = 0;
        foreach (var (from, to) in w.SeasonalHours().Where(h => h.From >= storeStart))
        {
            clauses.Add($"(minute >= $f{i} AND minute < $t{i})");
            parameters.Add(($"f{i}", from));
            parameters.Add(($"t{i}", to));
            i++;
        }

        using var command = AnomalyStore.Command(connection, $"""
            WITH f AS (
                SELECT route AS k, CASE WHEN minute >= $rs THEN {RecentKey} ELSE epoch(date_trunc('hour', minute))::BIGINT END AS i, latency_buckets, latency_counts
                FROM rollups WHERE minute >= $lo AND minute <= $end AND ({string.Join(" OR ", clauses)}) AND route IS NOT NULL AND reason IS NULL),
            b AS (SELECT k, i, bucket, sum(n)::BIGINT AS n FROM (SELECT k, i, unnest(latency_buckets) AS bucket, unnest(latency_counts) AS n FROM f) GROUP BY k, i, bucket),
            c AS (SELECT k, i, bucket, sum(n) OVER (PARTITION BY k, i ORDER BY bucket) AS cum, sum(n) OVER (PARTITION BY k, i) AS total FROM b)
            SELECT k, i, min(bucket) FILTER (WHERE cum > floor(0.99::DOUBLE * (total - 1)::DOUBLE)) AS p99, max(total)::BIGINT FROM c GROUP BY k, i
            """, [.. parameters, ("lo", Lowest(parameters))]); // the outer range lets DuckDB skip row groups (zone maps); the OR alone scans the table
        using var reader = command.ExecuteReader();
        var result = new Dictionary<string, Dictionary<long, HourP99>>(StringComparer.Ordinal);
        while (reader.Read())
        {
            var route = reader.GetString(0);
            if (!result.TryGetValue(route, out var hours)) result[route] = hours = [];
            hours[reader.GetInt64(1)] = new(LatencySketch.ValueOf(Convert.ToInt32(reader.GetValue(2), CultureInfo.InvariantCulture)), reader.GetInt64(3));
        }

        return result;
    }

    private static DateTime Lowest(List<(string Name, object? Value)> parameters) => parameters.Where(p => p.Name != "end" && p.Name != "rs").Min(p => (DateTime)p.Value!);
}
