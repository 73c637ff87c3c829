using System.Globalization;
using DuckDB.NET.Data;

namespace Portcullis.Advice;

/// <summary>
/// route.volume-anomaly, route.error-anomaly and route.latency-anomaly: a route whose request rate, 5xx share or
/// p99 latency in the detection window departs from its learned baseline (<see cref="Baseline"/>: the same hour of
/// day on past days, else the recent hours), by a robust z-score and a least absolute effect.
/// </summary>
internal sealed partial class AnomalyRouteDetector : IAdviceDetector
{
    public string Name => "anomalies.routes";

    public IReadOnlyList<Finding> Detect(AdviceContext context)
    {
        if (!AnomalyStore.Runs(context)) return [];
        var w = new AnomalyWindows(context);
        using var connection = context.Analytics!.OpenConnection(w.WindowStart, w.Now.AddMinutes(1));
        if (AnomalyStore.FirstMinute(connection, w.WindowStart) is not { } storeStart) return [];
        var firstSeen = RouteFirstSeen(connection, w);
        var recent = Totals(connection, w.RecentStart, w.Now);
        var minutes = RecentMinutes(connection, w);
        var seasonal = Seasonal(connection, w, storeStart);
        var findings = new List<Finding>();
        var options = context.Settings.Anomalies;
        foreach (var route in context.Snapshot.Routes.Keys)
        {
            context.Cancellation.ThrowIfCancellationRequested();
            if (!firstSeen.TryGetValue(route, out var first)) continue;
            var since = first > storeStart ? first : storeStart;
            var history = w.RecentStart - since;
            if (history < options.MinHistory) continue;
            var now = recent.GetValueOrDefault(route);
            var series = Fill(minutes.GetValueOrDefault(route), since > w.BaselineStart ? since : w.BaselineStart, w.RecentStart);
            var days = seasonal.GetValueOrDefault(route)?.Where(d => d.From >= since).ToList() ?? [];
            if (Volume(context, w, route, now, series, days, history) is { } volume) findings.Add(volume);
            if (Errors(context, w, route, now, series, days, history) is { } errors) findings.Add(errors);
        }

        findings.AddRange(Latency(context, connection, w, firstSeen, storeStart));
        return findings;
    }

    private static Finding? Volume(AdviceContext context, AnomalyWindows w, string route, Counts now, List<Counts> series, List<SeasonalHour> days, TimeSpan history)
    {
        var options = context.Settings.Anomalies;
        var rate = now.Requests / w.RecentMinutes;
        var baseline = Baseline.Of([.. days.Select(d => d.Counts.Requests / 60.0)], [.. series.Select(c => (double)c.Requests)]);
        var z = RobustStats.Z(rate, baseline.Median, baseline.Scale);
        var change = rate - baseline.Median;
        var up = rate >= options.VolumeRatio * Math.Max(baseline.Median, 1) && change >= options.MinVolumeChange;
        var down = rate <= baseline.Median / options.VolumeRatio && -change >= options.MinVolumeChange;
        if (!(up || down) || z < options.ZThreshold) return null;

        var subject = new FindingSubject(SubjectKind.Route, route);
        var factor = up ? rate / Math.Max(baseline.Median, 1) : baseline.Median / Math.Max(rate, 0.01);
        var words = up ? "rose" : "fell";
        return new Finding
        {
            Id = Finding.MakeId(FindingKinds.RouteVolume, subject, up ? "up" : "down"),
            Kind = FindingKinds.RouteVolume,
            Severity = FindingSeverity.Warning,
            Subject = subject,
            FirstSeen = w.RecentStart,
            LastSeen = w.Now,
            Title = string.Create(CultureInfo.InvariantCulture, $"Traffic on route {route} {words} to {AnomalyStore.N(rate)}/min ({factor:0.#}× its usual {AnomalyStore.N(baseline.Median)}/min)"),
            Explanation = string.Create(CultureInfo.InvariantCulture,
                $"Route {route} received {AnomalyStore.N(rate)} requests a minute over the last {w.RecentMinutes:0.#} minutes; its baseline at this time is {AnomalyStore.N(baseline.Median)} a minute ({baseline.Describe()}), a departure of {z:0.#} robust standard deviations. ")
                + (up ? "A sudden rise is a new or misbehaving client, a retry storm or an attack; the route's top consumers show who sends it."
                      : "A sudden fall is often a client or an upstream dependency that broke, or traffic routed elsewhere."),
            Evidence = new Evidence(w.RecentStart, w.Now,
                [new EvidenceValue("requests per minute", Math.Round(rate, 2), "req/min", Math.Round(baseline.Median, 2)),
                 new EvidenceValue("robust z", Math.Round(z, 1)), new EvidenceValue("baseline spread (1.4826·MAD)", Math.Round(baseline.Scale, 2), "req/min")])
            {
                DashboardLink = DashboardLinks.Route(route, w.RecentStart.AddHours(-3), w.Now),
                Basis = $"{AnomalyStore.Span(history)} of history; {baseline.Describe()}",
            },
            Confidence = baseline.Seasonal ? FindingConfidence.High : AnomalyStore.ConfidenceOf(history) == FindingConfidence.High ? FindingConfidence.Medium : AnomalyStore.ConfidenceOf(history),
        };
    }

    private static Finding? Errors(AdviceContext context, AnomalyWindows w, string route, Counts now, List<Counts> series, List<SeasonalHour> days, TimeSpan history)
    {
        var options = context.Settings.Anomalies;
        if (now.Errors < options.MinErrors || now.Requests == 0) return null;
        var share = (double)now.Errors / now.Requests;

        // Shares of whole hours (and of the same hour on past days) with enough requests to mean something.
        var shares = new List<double>();
        foreach (var hour in series.Chunk(60))
        {
            var requests = hour.Sum(c => c.Requests);
            if (requests >= 20) shares.Add((double)hour.Sum(c => c.Errors) / requests);
        }

        shares.AddRange(days.Where(d => d.Counts.Requests >= 20).Select(d => (double)d.Counts.Errors / d.Counts.Requests));
        var total = series.Sum(c => c.Requests) + days.Sum(d => d.Counts.Requests);
        if (total < 100) return null;
        var pooled = (double)(series.Sum(c => c.Errors) + days.Sum(d => d.Counts.Errors)) / total;
        var p0 = shares.Count >= 3 ? RobustStats.Median(shares) : pooled;
        var spread = shares.Count >= 3 ? RobustStats.MadScale * RobustStats.Mad(shares, p0) : 0;
        var binomial = Math.Sqrt(Math.Max(p0, 0.001) * (1 - Math.Min(p0, 0.999)) / now.Requests);
        var z = (share - p0) / Math.Sqrt((binomial * binomial) + (spread * spread));
        if (share - p0 < options.ErrorRateIncrease || share < 2 * p0 || z < options.ZThreshold) return null;

        var subject = new FindingSubject(SubjectKind.Route, route);
        return new Finding
        {
            Id = Finding.MakeId(FindingKinds.RouteErrors, subject),
            Kind = FindingKinds.RouteErrors,
            Severity = share >= 0.5 ? FindingSeverity.Critical : FindingSeverity.Warning,
            Subject = subject,
            FirstSeen = w.RecentStart,
            LastSeen = w.Now,
            Title = string.Create(CultureInfo.InvariantCulture, $"Route {route} answers {share:P0} of requests with 5xx (usually {p0:P1})"),
            Explanation = string.Create(CultureInfo.InvariantCulture,
                $"Over the last {w.RecentMinutes:0.#} minutes {now.Errors} of {now.Requests} requests to route {route} ended in a 5xx status ({share:P1}); its usual share is {p0:P2} (median of {shares.Count} past hours, {AnomalyStore.Span(history)} of history), {z:0.#} standard deviations above it. ")
                + "The upstream or the gateway's way to it is failing; the samples show the reason codes (upstream.error, upstream.timeout, upstream.unavailable) and the statuses.",
            Evidence = new Evidence(w.RecentStart, w.Now,
                [new EvidenceValue("5xx share", Math.Round(share, 4), "ratio", Math.Round(p0, 4)),
                 new EvidenceValue("5xx answers", now.Errors, "requests"), new EvidenceValue("requests", now.Requests, "requests"), new EvidenceValue("z", Math.Round(z, 1))])
            {
                DashboardLink = DashboardLinks.Samples(w.RecentStart, w.Now, ("route", route), ("status", "5xx")),
                Basis = string.Create(CultureInfo.InvariantCulture, $"{AnomalyStore.Span(history)} of history, {total:#,0} baseline requests"),
            },
            Confidence = AnomalyStore.ConfidenceOf(history) == FindingConfidence.Low && total >= 1000 ? FindingConfidence.Medium : AnomalyStore.ConfidenceOf(history),
        };
    }

    internal readonly record struct Counts(long Requests, long Errors);

    internal sealed record SeasonalHour(DateTime From, Counts Counts);

    private static Dictionary<string, DateTime> RouteFirstSeen(DuckDBConnection connection, AnomalyWindows w)
    {
        using var command = AnomalyStore.Command(connection, "SELECT route, min(minute) FROM rollups WHERE minute >= $from AND minute <= $now AND route IS NOT NULL GROUP BY route", ("from", w.WindowStart), ("now", w.Now));
        using var reader = command.ExecuteReader();
        var result = new Dictionary<string, DateTime>(StringComparer.Ordinal);
        while (reader.Read()) result[reader.GetString(0)] = AnomalyStore.Utc(reader.GetValue(1));
        return result;
    }

    private static Dictionary<string, Counts> Totals(DuckDBConnection connection, DateTime from, DateTime to)
    {
        using var command = AnomalyStore.Command(connection, """
            SELECT route, sum(requests)::BIGINT, coalesce(sum(requests) FILTER (WHERE status >= 500), 0)::BIGINT
            FROM rollups WHERE minute >= $from AND minute <= $to AND route IS NOT NULL GROUP BY route
            """, ("from", from), ("to", to));
        using var reader = command.ExecuteReader();
        var result = new Dictionary<string, Counts>(StringComparer.Ordinal);
        while (reader.Read()) result[reader.GetString(0)] = new(reader.GetInt64(1), reader.GetInt64(2));
        return result;
    }

    private static Dictionary<string, Dictionary<DateTime, Counts>> RecentMinutes(DuckDBConnection connection, AnomalyWindows w)
    {
        using var command = AnomalyStore.Command(connection, """
            SELECT route, minute, sum(requests)::BIGINT, coalesce(sum(requests) FILTER (WHERE status >= 500), 0)::BIGINT
            FROM rollups WHERE minute >= $from AND minute < $to AND route IS NOT NULL GROUP BY route, minute
            """, ("from", w.BaselineStart), ("to", w.RecentStart));
        using var reader = command.ExecuteReader();
        var result = new Dictionary<string, Dictionary<DateTime, Counts>>(StringComparer.Ordinal);
        while (reader.Read())
        {
            var route = reader.GetString(0);
            if (!result.TryGetValue(route, out var minutes)) result[route] = minutes = [];
            minutes[AnomalyStore.Utc(reader.GetValue(1))] = new(reader.GetInt64(2), reader.GetInt64(3));
        }

        return result;
    }

    // Every minute of [from, to), zero where the route had no row (an idle minute is a value, not a gap).
    private static List<Counts> Fill(Dictionary<DateTime, Counts>? minutes, DateTime from, DateTime to)
    {
        var series = new List<Counts>();
        for (var t = AnomalyWindows.Floor(from, TimeSpan.FromMinutes(1)); t < to; t = t.AddMinutes(1)) series.Add(minutes?.GetValueOrDefault(t) ?? default);
        return series;
    }

    private static Dictionary<string, List<SeasonalHour>> Seasonal(DuckDBConnection connection, AnomalyWindows w, DateTime storeStart)
    {
        var hours = w.SeasonalHours().Where(h => h.From >= storeStart).ToList();
        var result = new Dictionary<string, List<SeasonalHour>>(StringComparer.Ordinal);
        if (hours.Count == 0) return result;
        // The ranges are OR'ed; the outer range (the first hour's start to the last's end) is what lets DuckDB skip
        // the row groups outside them (zone maps): without it every cycle scanned the whole table, 30 days.
        var parameters = new List<(string, object?)>();
        var clauses = new List<string>();
        for (var i = 0; i < hours.Count; i++)
        {
            clauses.Add($"(minute >= $f{i} AND minute < $t{i})");
            parameters.Add(($"f{i}", hours[i].From));
            parameters.Add(($"t{i}", hours[i].To));
        }

        using var command = AnomalyStore.Command(connection, $"""
            SELECT route, date_trunc('hour', minute) AS h, sum(requests)::BIGINT, coalesce(sum(requests) FILTER (WHERE status >= 500), 0)::BIGINT
            FROM rollups WHERE minute >= $lo AND minute < $hi AND ({string.Join(" OR ", clauses)}) AND route IS NOT NULL GROUP BY route, h
            """, [.. parameters, ("lo", hours.Min(h => h.From)), ("hi", hours.Max(h => h.To))]);
        using var reader = command.ExecuteReader();
        var found = new Dictionary<(string, DateTime), Counts>();
        while (reader.Read()) found[(reader.GetString(0), AnomalyStore.Utc(reader.GetValue(1)))] = new(reader.GetInt64(2), reader.GetInt64(3));
        foreach (var route in found.Keys.Select(k => k.Item1).Distinct())
        {
            // A past day the store covers but the route had nothing at this hour counts as zero.
            result[route] = [.. hours.Select(h => new SeasonalHour(h.From, found.GetValueOrDefault((route, h.From))))];
        }

        return result;
    }
}
