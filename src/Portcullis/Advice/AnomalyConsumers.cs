using System.Globalization;
using DuckDB.NET.Data;
using Portcullis.Configuration;

namespace Portcullis.Advice;

/// <summary>
/// consumer.new-route (a consumer calling a route it never called in the window: on sensitive routes by default)
/// and consumer.rate-surge (a consumer calling a route at many times its usual peak: the p99 of its active minutes
/// over the last day).
/// </summary>
internal sealed class AnomalyConsumerDetector : IAdviceDetector
{
    /// <summary>At most this many surge candidates get their history read in one run (the busiest first).</summary>
    private const int MaxSurgeCandidates = 50;

    public string Name => "anomalies.consumers";

    public IReadOnlyList<Finding> Detect(AdviceContext context)
    {
        if (!AnomalyStore.Runs(context)) return [];
        var w = new AnomalyWindows(context);
        using var connection = context.Analytics!.OpenConnection(w.WindowStart, w.Now.AddMinutes(1));
        if (AnomalyStore.FirstMinute(connection, w.WindowStart) is not { } storeStart) return [];
        var findings = new List<Finding>();
        findings.AddRange(NewRoutes(context, connection, w, storeStart));
        findings.AddRange(Surges(context, connection, w, storeStart));
        return findings;
    }

    private static List<Finding> NewRoutes(AdviceContext context, DuckDBConnection connection, AnomalyWindows w, DateTime storeStart)
    {
        var options = context.Settings.Anomalies;
        var since = AnomalyWindows.Floor(w.Now - options.NewRouteWindow, TimeSpan.FromMinutes(1));
        var findings = new List<Finding>();
        var history = since - storeStart;
        if (history < options.MinHistory) return findings; // everything is "new" on a fresh store

        // Pairs seen since `since` and never before it in the window; with the consumer's own first minute.
        using var command = AnomalyStore.Command(connection, """
            WITH recent AS (
                SELECT consumer, route, sum(requests)::BIGINT AS requests,
                       coalesce(sum(requests) FILTER (WHERE reason IS NULL AND status < 400), 0)::BIGINT AS served,
                       min(minute) AS first, max(minute) AS last, list(DISTINCT reason) FILTER (WHERE reason IS NOT NULL) AS reasons
                FROM rollups WHERE minute >= $since AND minute <= $now AND consumer IS NOT NULL AND route IS NOT NULL GROUP BY consumer, route),
            before AS (SELECT DISTINCT consumer, route FROM rollups WHERE minute >= $ws AND minute < $since AND consumer IS NOT NULL AND route IS NOT NULL),
            known AS (SELECT DISTINCT consumer FROM rollups WHERE minute >= $ws AND minute < $since AND consumer IS NOT NULL),
            routes AS (SELECT route, count(DISTINCT consumer)::BIGINT AS consumers FROM before GROUP BY route)
            SELECT r.consumer, r.route, r.requests, r.served, r.first, r.last, r.reasons,
                   k.consumer IS NOT NULL AS known, coalesce(rt.consumers, 0)
            FROM recent r
            LEFT JOIN before b ON b.consumer = r.consumer AND b.route = r.route
            LEFT JOIN known k ON k.consumer = r.consumer
            LEFT JOIN routes rt ON rt.route = r.route
            WHERE b.consumer IS NULL
            """, ("since", since), ("ws", w.WindowStart), ("now", w.Now));
        using var reader = command.ExecuteReader();
        var routes = context.Snapshot.Config.Routes.ToDictionary(r => r.Name, StringComparer.Ordinal);
        while (reader.Read())
        {
            var consumer = reader.GetString(0);
            var route = reader.GetString(1);
            if (!routes.TryGetValue(route, out var options2)) continue;
            var sensitive = AnomalyPaths.Sensitive(options2);
            var routeConsumers = reader.GetInt64(8);
            // On ordinary routes only when asked, and only when the route has callers to compare with.
            if (sensitive is null && (options.NewRouteSensitiveOnly || routeConsumers == 0)) continue;
            var requests = reader.GetInt64(2);
            var served = reader.GetInt64(3);
            var knownConsumer = reader.GetBoolean(7);
            var reasons = reader.IsDBNull(6) ? [] : ((System.Collections.IList)reader.GetValue(6)).Cast<object?>().OfType<string>().ToList();
            findings.Add(NewRoute(context, w, since, history, consumer, route, sensitive, requests, served, knownConsumer, routeConsumers, reasons,
                AnomalyStore.Utc(reader.GetValue(4)), AnomalyStore.Utc(reader.GetValue(5))));
        }

        return findings;
    }

    private static Finding NewRoute(AdviceContext context, AnomalyWindows w, DateTime since, TimeSpan history, string consumer, string route, string? sensitive,
        long requests, long served, bool knownConsumer, long routeConsumers, List<string> reasons, DateTime first, DateTime last)
    {
        var subject = new FindingSubject(SubjectKind.Consumer, consumer, route);
        var severity = sensitive is null || served == 0 ? FindingSeverity.Info : knownConsumer ? FindingSeverity.Warning : FindingSeverity.Critical;
        var whoText = knownConsumer ? $"Consumer {consumer}" : $"Consumer {consumer}, never seen before in the last {AnomalyStore.Span(history)},";
        var outcome = served == requests
            ? "the gateway let every one of them through"
            : served == 0 ? $"the gateway refused them all ({string.Join(", ", reasons)})" : $"{served} were let through, the rest refused ({string.Join(", ", reasons)})";
        return new Finding
        {
            Id = Finding.MakeId(FindingKinds.ConsumerNewRoute, subject),
            Kind = FindingKinds.ConsumerNewRoute,
            Severity = severity,
            Subject = subject,
            FirstSeen = first,
            LastSeen = last.AddMinutes(1) < w.Now ? last.AddMinutes(1) : w.Now,
            Title = $"Consumer {consumer} called route {route} for the first time" + (sensitive is null ? "" : " (sensitive route)"),
            Explanation = string.Create(CultureInfo.InvariantCulture,
                $"{whoText} sent {requests} request(s) to route {route} since {first:HH:mm} UTC, a route it had not called in the {AnomalyStore.Span(history)} before; {outcome}. ")
                + (sensitive is null
                    ? $"{routeConsumers} other consumer(s) call this route, so it may simply be a new use of the API."
                    : $"The route is sensitive because {sensitive}; {routeConsumers} consumer(s) called it before. Check that this consumer is meant to have access (a leaked credential or a new integration nobody announced looks exactly like this)."),
            Evidence = new Evidence(since, w.Now,
                [new EvidenceValue("requests to the route", requests, "requests", 0), new EvidenceValue("served", served, "requests"),
                 new EvidenceValue("consumers that called it before", routeConsumers)])
            {
                DashboardLink = DashboardLinks.Consumer(consumer, since, w.Now),
                Basis = $"{AnomalyStore.Span(history)} of history before {since:HH:mm} UTC",
            },
            Confidence = AnomalyStore.ConfidenceOf(history),
        };
    }

    private static List<Finding> Surges(AdviceContext context, DuckDBConnection connection, AnomalyWindows w, DateTime storeStart)
    {
        var options = context.Settings.Anomalies;
        var findings = new List<Finding>();
        var candidates = new List<(string Consumer, string Route, long Requests, double Rate)>();
        using (var command = AnomalyStore.Command(connection, """
            SELECT consumer, route, sum(requests)::BIGINT AS n FROM rollups
            WHERE minute >= $rs AND minute <= $now AND consumer IS NOT NULL AND route IS NOT NULL GROUP BY consumer, route HAVING sum(requests) >= $min ORDER BY n DESC LIMIT $limit
            """, ("rs", w.RecentStart), ("now", w.Now), ("min", (long)Math.Ceiling(options.MinSurgeRate * w.RecentMinutes)), ("limit", MaxSurgeCandidates)))
        using (var reader = command.ExecuteReader())
        {
            while (reader.Read()) candidates.Add((reader.GetString(0), reader.GetString(1), reader.GetInt64(2), reader.GetInt64(2) / w.RecentMinutes));
        }

        // The usual peak: over the last day (minute rows), before the detection window.
        var historyStart = new[] { w.RecentStart.AddHours(-24), storeStart, w.MinuteRowsStart }.Max();
        var history = w.RecentStart - historyStart;
        if (history < options.MinHistory) return findings;
        foreach (var (consumer, route, requests, rate) in candidates)
        {
            if (!context.Snapshot.Routes.ContainsKey(route)) continue;
            var active = ActiveMinutes(connection, consumer, route, historyStart, w.RecentStart);
            if (active.Count < 5) continue; // no usual rate to compare with (a first call is consumer.new-route's)
            var peak = RobustStats.Quantile(active, 0.99);
            var median = RobustStats.Median(active);
            var scale = Math.Max(RobustStats.MadScale * RobustStats.Mad(active, median), Math.Max(Math.Sqrt(median), 1));
            var z = RobustStats.Z(rate, median, scale);
            if (rate < options.SurgeRatio * Math.Max(peak, 1) || rate < options.MinSurgeRate || z < options.ZThreshold) continue;
            var subject = new FindingSubject(SubjectKind.Consumer, consumer, route);
            findings.Add(new Finding
            {
                Id = Finding.MakeId(FindingKinds.ConsumerSurge, subject),
                Kind = FindingKinds.ConsumerSurge,
                Severity = rate >= 4 * options.SurgeRatio * Math.Max(peak, 1) ? FindingSeverity.Critical : FindingSeverity.Warning,
                Subject = subject,
                FirstSeen = w.RecentStart,
                LastSeen = w.Now,
                Title = string.Create(CultureInfo.InvariantCulture, $"Consumer {consumer} calls route {route} at {AnomalyStore.N(rate)}/min ({rate / Math.Max(peak, 1):0.#}× its usual peak of {AnomalyStore.N(peak)}/min)"),
                Explanation = string.Create(CultureInfo.InvariantCulture,
                    $"Consumer {consumer} sent {requests} requests to route {route} in the last {w.RecentMinutes:0.#} minutes ({AnomalyStore.N(rate)} a minute). Over the {AnomalyStore.Span(history)} before, in the {active.Count} minutes it called the route, it sent {AnomalyStore.N(median)} a minute (median) and at most {AnomalyStore.N(peak)} (p99). ")
                    + "A client stuck in a retry loop, a batch job run at the wrong time or a stolen credential used for scraping all look like this. A per-consumer rate limit on the route caps it (see the ratelimit.suggested findings for a limit learned from every consumer's traffic).",
                Evidence = new Evidence(w.RecentStart, w.Now,
                    [new EvidenceValue("requests per minute", Math.Round(rate, 2), "req/min", Math.Round(peak, 2)), new EvidenceValue("median active minute", Math.Round(median, 2), "req/min"),
                     new EvidenceValue("robust z", Math.Round(z, 1)), new EvidenceValue("active minutes in the baseline", active.Count, "minutes")])
                {
                    DashboardLink = DashboardLinks.Consumer(consumer, w.RecentStart.AddHours(-3), w.Now),
                    Basis = $"{AnomalyStore.Span(history)} of minute rows, {active.Count} active minutes",
                },
                Confidence = active.Count >= 60 && history >= TimeSpan.FromHours(6) ? FindingConfidence.High : active.Count >= 20 ? FindingConfidence.Medium : FindingConfidence.Low,
            });
        }

        return findings;
    }

    private static List<double> ActiveMinutes(DuckDBConnection connection, string consumer, string route, DateTime from, DateTime to)
    {
        using var command = AnomalyStore.Command(connection, """
            SELECT sum(requests)::BIGINT FROM rollups WHERE consumer = $consumer AND route = $route AND minute >= $from AND minute < $to GROUP BY minute
            """, ("consumer", consumer), ("route", route), ("from", from), ("to", to));
        using var reader = command.ExecuteReader();
        var values = new List<double>();
        while (reader.Read()) values.Add(reader.GetInt64(0));
        return values;
    }
}
