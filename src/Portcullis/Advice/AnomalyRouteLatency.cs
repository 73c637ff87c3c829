using System.Globalization;
using DuckDB.NET.Data;
using Portcullis.Analytics;
using Portcullis.Configuration;

namespace Portcullis.Advice;

internal sealed partial class AnomalyRouteDetector
{
    // Hour buckets of the baseline are keyed by their start's epoch seconds; the detection window by this.
    private const long RecentKey = -1;

    /// <summary>
    /// The detection window's latency is the value at least this many served requests reached: the p99 when the
    /// window has 1,000 requests or more, a lower quantile on fewer (on 300 requests the p96.7). A p99 over a quiet
    /// route's 50–300 requests is its 1–3 slowest requests, which one host stall of a second makes (the clean
    /// evaluation runs' only false positives); a slow upstream slows many.
    /// </summary>
    internal const int MinSlowRequests = 10;

    /// <summary>
    /// route.latency-anomaly: the p99 of the served requests (reason NULL; fast refusals would hide a slow upstream) in
    /// the detection window against the median and MAD of the p99s of the baseline's hours (recent hours and the same
    /// hour on past days), each from the merged latency sketches. A route is judged on its **upstream** latency when
    /// the store has it (proxied routes): time spent in the gateway (queueing, a starved host) is not the route's.
    /// The total latency still feeds gateway.latency-anomaly: many routes rising at once.
    /// </summary>
    private static List<Finding> Latency(AdviceContext context, DuckDBConnection connection, AnomalyWindows w, Dictionary<string, DateTime> firstSeen, DateTime storeStart)
    {
        var options = context.Settings.Anomalies;
        var p99 = P99ByRouteAndHour(connection, w, storeStart);
        var measured = new List<(string Route, TimeSpan History, LatencySeries Total, LatencySeries? Upstream)>();
        foreach (var (route, hours) in p99)
        {
            if (!context.Snapshot.Routes.ContainsKey(route) || !firstSeen.TryGetValue(route, out var first)) continue;
            var history = w.RecentStart - (first > storeStart ? first : storeStart);
            if (history < options.MinHistory) continue;
            if (Series(options, hours, upstream: false) is not { } total) continue;
            measured.Add((route, history, total, Series(options, hours, upstream: true)));
        }

        var active = measured.Count;
        var floorUs = RouteRiseFloorUs(options, measured.Select(m => m.Total));
        var totalRisers = new List<LatencyRise>();
        var routeRisers = new List<LatencyRise>();
        foreach (var (route, history, total, upstreamSeries) in measured)
        {
            var totalRise = Rise(options, route, total, history, upstream: false, options.MinLatencyIncrease.TotalMicroseconds);
            if (totalRise is { } t) totalRisers.Add(t);

            // Upstream time where the route proxies (and its baseline hours measured it); else the total is all there is.
            // A route's own finding needs a rise above the host's share (RouteRiseFloorUs).
            if (upstreamSeries is { } upstream)
            {
                if (Rise(options, route, upstream, history, upstream: true, floorUs) is { } u) routeRisers.Add(u with { Total = total.Recent });
            }
            else if (totalRise is { } only && only.Recent.P99Us - only.MedianUs >= floorUs)
            {
                routeRisers.Add(only);
            }
        }

        // A rise of the total on many routes of different clusters at once is the gateway's or the host's (or a shared
        // dependency's), not each route's: one gateway finding, and those routes get no route finding even if their
        // measured upstream time rose with it (a starved host delays reading the answers too). A route far slower than
        // the rest of the group (its own incident during a host stall) is left out of the group. A total rise on
        // routes whose upstream did not rise, too few for the gateway finding, is the gateway's time: no finding.
        var clusters = totalRisers.Count < 2 ? [] : ClusterOfRoute(connection, w);
        var (shared, _) = SharedSlowdown(totalRisers, active, r => clusters.GetValueOrDefault(r.Route));
        var inShared = shared.Select(r => r.Route).ToHashSet(StringComparer.Ordinal);
        var findings = routeRisers.Where(r => !inShared.Contains(r.Route)).Select(r => RouteLatencyFinding(context, w, r)).ToList();
        if (shared.Count > 0) findings.Add(GatewayLatencyFinding(w, shared, active));
        return findings;
    }

    internal readonly record struct LatencySeries(HourP99 Recent, List<double> Baseline);

    // The window's value and the baseline hours' p99s of one measure, or null when either has too few requests.
    private static LatencySeries? Series(AdviceAnomalyOptions options, Dictionary<(long Hour, bool Upstream), HourP99> hours, bool upstream)
    {
        if (!hours.TryGetValue((RecentKey, upstream), out var recent) || recent.Count < options.MinLatencyRequests) return null;
        var baseline = hours.Where(h => h.Key.Upstream == upstream && h.Key.Hour != RecentKey && h.Value.Count >= options.MinLatencyRequests).Select(h => h.Value.P99Us).ToList();
        return baseline.Count < 3 ? null : new LatencySeries(recent, baseline);
    }

    /// <summary>
    /// How many times the host's share of a rise a route's own rise must exceed: see <see cref="RouteRiseFloorUs"/>.
    /// </summary>
    internal const double HostRiseFactor = 3;

    /// <summary>
    /// The least rise of a route's p99 that is the route's own: <c>minLatencyIncrease</c>, or <see cref="HostRiseFactor"/>
    /// times the median rise of every measured route's total p99 over its baseline when that is more (at least three
    /// routes). On a starved host every request waits a little longer, upstream time included (the in-process
    /// upstreams, the sockets, the clock reads all queue for the same cores), and one route's p99 then rises by
    /// 100 ms+ without any incident of its own — the clean evaluation runs' remaining false positives at load 40–65.
    /// On a quiet host the median rise is about zero and the floor stays <c>minLatencyIncrease</c>.
    /// </summary>
    internal static double RouteRiseFloorUs(AdviceAnomalyOptions options, IEnumerable<LatencySeries> totals)
    {
        var rises = totals.Select(t => Math.Max(0, t.Recent.P99Us - RobustStats.Median(t.Baseline))).ToList();
        var floor = options.MinLatencyIncrease.TotalMicroseconds;
        return rises.Count < 3 ? floor : Math.Max(floor, HostRiseFactor * RobustStats.Median(rises));
    }

    private static LatencyRise? Rise(AdviceAnomalyOptions options, string route, LatencySeries series, TimeSpan history, bool upstream, double minIncreaseUs)
    {
        var (recent, baseline) = (series.Recent, series.Baseline);
        var median = RobustStats.Median(baseline);
        var scale = Math.Max(RobustStats.MadScale * RobustStats.Mad(baseline, median), median * 0.05);
        var z = RobustStats.Z(recent.P99Us, median, scale);
        var increase = recent.P99Us - median;
        if (recent.P99Us < options.LatencyRatio * median || increase < minIncreaseUs || z < options.ZThreshold) return null;
        return new LatencyRise(route, recent, median, scale, z, baseline.Count, history, upstream);
    }

    private static Finding RouteLatencyFinding(AdviceContext context, AnomalyWindows w, LatencyRise r)
    {
        var options = context.Settings.Anomalies;
        var (route, recent, median, scale, z) = (r.Route, r.Recent, r.MedianUs, r.ScaleUs, r.Z);
        var subject = new FindingSubject(SubjectKind.Route, route);
        var nowMs = recent.P99Us / 1000;
        var baseMs = median / 1000;
        var measure = r.Upstream ? "upstream latency" : "latency";
        var quantile = Quantile(recent.Count);
        var slowest = quantile >= 0.99
            ? string.Create(CultureInfo.InvariantCulture, $"The slowest 1 % of the {recent.Count} requests route {route} served")
            : string.Create(CultureInfo.InvariantCulture, $"The slowest {MinSlowRequests} of the {recent.Count} requests route {route} served (the p{quantile * 100:0.#}: a p99 of so few requests would be one or two of them)");
        var values = new List<EvidenceValue>
        {
            new("p99 latency", Math.Round(nowMs, 3), "ms", Math.Round(baseMs, 3)),
            new("served requests", recent.Count, "requests"),
            new("robust z", Math.Round(z, 1)),
        };
        if (r.Total is { } total) values.Add(new("p99 total latency (with the gateway's time)", Math.Round(total.P99Us / 1000, 3), "ms"));
        return new Finding
        {
            Id = Finding.MakeId(FindingKinds.RouteLatency, subject),
            Kind = FindingKinds.RouteLatency,
            Severity = recent.P99Us >= 5 * median ? FindingSeverity.Critical : FindingSeverity.Warning,
            Subject = subject,
            FirstSeen = w.RecentStart,
            LastSeen = w.Now,
            Title = string.Create(CultureInfo.InvariantCulture, $"p99 {measure} of route {route} is {nowMs:0.#} ms ({recent.P99Us / median:0.#}× its usual {baseMs:0.#} ms)"),
            Explanation = string.Create(CultureInfo.InvariantCulture,
                $"{slowest} in the last {w.RecentMinutes:0.#} minutes {(r.Upstream ? "waited for the upstream" : "took")} {nowMs:0.#} ms or more; over the baseline's {r.BaselineHours} hours its p99 was {baseMs:0.#} ms (median; spread {scale / 1000:0.#} ms), {z:0.#} robust standard deviations lower. ")
                + (r.Upstream
                    ? "The time is the upstream's (measured from sending the request to its answer), not the gateway's: the upstream (or something it depends on) is slowing down; if it nears the cluster's request timeout, clients will start to see 504s."
                    : "The upstream (or something it depends on) is slowing down; if it nears the cluster's request timeout, clients will start to see 504s."),
            Evidence = new Evidence(w.RecentStart, w.Now, values)
            {
                DashboardLink = DashboardLinks.Route(route, w.RecentStart.AddHours(-3), w.Now),
                Basis = $"{AnomalyStore.Span(r.History)} of history; {(r.Upstream ? "upstream" : "total")} p99 of {r.BaselineHours} baseline hours with ≥ {options.MinLatencyRequests} requests",
            },
            Confidence = r.BaselineHours >= 24 ? FindingConfidence.High : r.BaselineHours >= 6 ? FindingConfidence.Medium : FindingConfidence.Low,
        };
    }

    /// <summary>The quantile the detection window is judged on: the p99, or lower so that ≥ <see cref="MinSlowRequests"/> requests carry it.</summary>
    internal static double Quantile(long requests) => requests <= 0 ? 0.99 : Math.Min(0.99, 1 - ((double)MinSlowRequests / requests));

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

    private static Dictionary<string, Dictionary<(long Hour, bool Upstream), HourP99>> P99ByRouteAndHour(DuckDBConnection connection, AnomalyWindows w, DateTime storeStart)
    {
        var parameters = new List<(string, object?)> { ("bs", w.BaselineStart), ("rs", w.RecentStart), ("end", w.Now), ("slow", MinSlowRequests) };
        var clauses = new List<string> { "(minute >= $bs AND minute <= $end)" };
        var i = 0;
        foreach (var (from, to) in w.SeasonalHours().Where(h => h.From >= storeStart))
        {
            clauses.Add($"(minute >= $f{i} AND minute < $t{i})");
            parameters.Add(($"f{i}", from));
            parameters.Add(($"t{i}", to));
            i++;
        }

        // s = 0: total latency, 1: upstream latency (empty sketches on rows that were not proxied). An hour's value is its
        // p99; the window's the value at least $slow requests reached when that is below its p99 (Quantile).
        using var command = AnomalyStore.Command(connection, $"""
            WITH f AS (
                SELECT route AS k, CASE WHEN minute >= $rs THEN {RecentKey} ELSE epoch(date_trunc('hour', minute))::BIGINT END AS i,
                       latency_buckets, latency_counts, upstream_buckets, upstream_counts
                FROM rollups WHERE minute >= $lo AND minute <= $end AND ({string.Join(" OR ", clauses)}) AND route IS NOT NULL AND reason IS NULL),
            b AS (SELECT k, i, 0 AS s, bucket, sum(n)::BIGINT AS n FROM (SELECT k, i, unnest(latency_buckets) AS bucket, unnest(latency_counts) AS n FROM f) GROUP BY k, i, bucket
                  UNION ALL
                  SELECT k, i, 1 AS s, bucket, sum(n)::BIGINT AS n FROM (SELECT k, i, unnest(upstream_buckets) AS bucket, unnest(upstream_counts) AS n FROM f) GROUP BY k, i, bucket),
            c AS (SELECT k, i, s, bucket, sum(n) OVER (PARTITION BY k, i, s ORDER BY bucket) AS cum, sum(n) OVER (PARTITION BY k, i, s) AS total FROM b)
            SELECT k, i, s,
                   min(bucket) FILTER (WHERE cum > CASE WHEN i = {RecentKey} THEN least(floor(0.99::DOUBLE * (total - 1)::DOUBLE), total - $slow) ELSE floor(0.99::DOUBLE * (total - 1)::DOUBLE) END) AS p99,
                   max(total)::BIGINT
            FROM c GROUP BY k, i, s
            """, [.. parameters, ("lo", Lowest(parameters))]); // the outer range lets DuckDB skip row groups (zone maps); the OR alone scans the table
        using var reader = command.ExecuteReader();
        var result = new Dictionary<string, Dictionary<(long, bool), HourP99>>(StringComparer.Ordinal);
        while (reader.Read())
        {
            if (reader.IsDBNull(3)) continue;
            var route = reader.GetString(0);
            if (!result.TryGetValue(route, out var hours)) result[route] = hours = [];
            hours[(reader.GetInt64(1), Convert.ToInt32(reader.GetValue(2), CultureInfo.InvariantCulture) == 1)] = new(LatencySketch.ValueOf(Convert.ToInt32(reader.GetValue(3), CultureInfo.InvariantCulture)), reader.GetInt64(4));
        }

        return result;
    }

    private static DateTime Lowest(List<(string Name, object? Value)> parameters) => parameters.Where(p => p.Value is DateTime && p.Name != "end" && p.Name != "rs").Min(p => (DateTime)p.Value!);
}
