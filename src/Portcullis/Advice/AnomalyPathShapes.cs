using System.Globalization;
using DuckDB.NET.Data;
using Portcullis.Configuration;

namespace Portcullis.Advice;

/// <summary>
/// route.new-path-shape: raw paths under a route's literal prefix (/orders of /orders/{id} or of pathPrefix /orders)
/// whose shape (ids replaced by {id}) the samples of the window never had before. It needs raw paths: requests no
/// route matched always keep theirs (a client calling /orders/7/refund when only /orders/{id} exists); requests a
/// route matched only with analytics.samples.rawPaths (otherwise the sample holds the route's template, one shape).
/// Successes are sampled (~1 %), so a shape seen only in rare successes may be missed in the baseline.
/// </summary>
internal sealed class AnomalyPathShapeDetector : IAdviceDetector
{
    /// <summary>A prefix needs this many samples in the history before its shapes are a baseline.</summary>
    private const int MinPrefixSamples = 20;

    public string Name => "anomalies.path-shapes";

    public IReadOnlyList<Finding> Detect(AdviceContext context)
    {
        if (!AnomalyStore.Runs(context)) return [];
        var options = context.Settings.Anomalies;
        var now = context.Now;
        var since = now - options.NewRouteWindow;
        var rawPaths = context.Snapshot.Analytics?.RawPaths ?? false;
        using var connection = context.Analytics!.OpenConnection(context.WindowStart, now.AddMinutes(1));
        if (AnomalyStore.FirstMinute(connection, context.WindowStart) is not { } storeStart || since - storeStart < options.MinHistory) return [];

        // Routes with a literal prefix, longest first (a path belongs to the most specific one).
        var prefixes = context.Snapshot.Config.Routes.Select(r => (Route: r, Prefix: AnomalyPaths.LiteralPrefix(r))).Where(p => p.Prefix is not null)
            .OrderByDescending(p => p.Prefix!.Length).ToList();
        if (prefixes.Count == 0) return [];
        string? PrefixRoute(string? route, string path)
        {
            if (route is not null) return prefixes.Any(p => p.Route.Name == route && AnomalyPaths.IsUnder(path, p.Prefix!)) ? route : null;
            foreach (var (r, prefix) in prefixes)
            {
                if (AnomalyPaths.IsUnder(path, prefix!)) return r.Name;
            }

            return null;
        }

        var known = new HashSet<(string Route, string Shape)>();
        var perRoute = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var row in Read(connection, context.WindowStart, since, rawPaths))
        {
            if (PrefixRoute(row.Route, row.Path) is not { } route) continue;
            known.Add((route, AnomalyPaths.Shape(row.Path)));
            if (row.Route is null) perRoute[route] = perRoute.GetValueOrDefault(route) + row.Count;
        }

        // The route's own samples say it is in use (their paths are templates unless rawPaths, counted above then).
        using (var command = AnomalyStore.Command(connection, "SELECT route, count(*)::BIGINT FROM samples WHERE ts >= $from AND ts < $to AND route IS NOT NULL GROUP BY route",
            ("from", context.WindowStart), ("to", since)))
        using (var reader = command.ExecuteReader())
        {
            while (reader.Read()) perRoute[reader.GetString(0)] = perRoute.GetValueOrDefault(reader.GetString(0)) + reader.GetInt64(1);
        }

        var fresh = new Dictionary<(string Route, string Shape), List<Row>>();
        foreach (var row in Read(connection, since, now.AddSeconds(1), rawPaths))
        {
            if (AnomalyPaths.Probe(row.Path) is not null) continue; // scanners: traffic.scanner
            if (PrefixRoute(row.Route, row.Path) is not { } route || perRoute.GetValueOrDefault(route) < MinPrefixSamples) continue;
            var key = (route, AnomalyPaths.Shape(row.Path));
            if (known.Contains(key)) continue;
            if (!fresh.TryGetValue(key, out var rows)) fresh[key] = rows = [];
            rows.Add(row);
        }

        var findings = new List<Finding>();
        foreach (var ((route, shape), rows) in fresh)
        {
            var requests = rows.Sum(r => r.Count);
            if (requests < options.MinShapeRequests) continue;
            findings.Add(Finding(context, since, storeStart, route, shape, rows, requests, perRoute[route], rawPaths));
        }

        return findings;
    }

    private sealed record Row(string? Route, string Path, int Status, string? Client, long Count, DateTime First, DateTime Last);

    private static Finding Finding(AdviceContext context, DateTime since, DateTime storeStart, string route, string shape, List<Row> rows, long requests, long baselineSamples, bool rawPaths)
    {
        var subject = new FindingSubject(SubjectKind.Route, route);
        var matched = rows.Where(r => r.Route is not null).Sum(r => r.Count);
        var served = rows.Where(r => r.Route is not null && r.Status < 400).Sum(r => r.Count);
        var clients = rows.Select(r => r.Client).OfType<string>().Distinct(StringComparer.Ordinal).ToList();
        var examples = rows.Select(r => r.Path).Distinct(StringComparer.Ordinal).Take(3).ToList();
        var history = since - storeStart;
        return new Finding
        {
            Id = Advice.Finding.MakeId(FindingKinds.NewPathShape, subject, shape),
            Kind = FindingKinds.NewPathShape,
            Severity = served > 0 ? FindingSeverity.Warning : FindingSeverity.Info,
            Subject = subject,
            FirstSeen = rows.Min(r => r.First),
            LastSeen = rows.Max(r => r.Last),
            Title = $"New path shape {shape} under route {route}",
            Explanation = string.Create(CultureInfo.InvariantCulture,
                $"{requests} request(s) from {clients.Count} client(s) used paths of the shape {shape} (e.g. {string.Join(", ", examples)}) under the prefix of route {route} since {since:HH:mm} UTC; none of its {baselineSamples} samples in the {AnomalyStore.Span(history)} before had that shape. ")
                + (matched == 0
                    ? "No route matches them (404): a client built for an API version or endpoint that is not deployed, or someone exploring the API."
                    : $"The route passed {matched} of them to the upstream ({served} answered below 400): an endpoint callers had not used before — check that it is meant to be reachable.")
                + (rawPaths ? "" : " (Only unmatched paths are compared: samples of matched requests keep the route's template unless analytics.samples.rawPaths is on.)"),
            Evidence = new Evidence(since, context.Now,
                [new EvidenceValue("requests of the shape", requests, "requests", 0), new EvidenceValue("clients", clients.Count), new EvidenceValue("baseline samples under the prefix", baselineSamples)])
            {
                DashboardLink = matched == 0 ? DashboardLinks.Samples(since, context.Now, ("reason", Pipeline.ReasonCodes.RouteUnmatched.Code)) : DashboardLinks.Samples(since, context.Now, ("route", route)),
                Basis = $"samples of the {AnomalyStore.Span(history)} before (every 4xx, ~1 % of successes)",
            },
            Confidence = baselineSamples >= 1000 && history >= TimeSpan.FromDays(1) ? FindingConfidence.High : baselineSamples >= 200 ? FindingConfidence.Medium : FindingConfidence.Low,
        };
    }

    private static List<Row> Read(DuckDBConnection connection, DateTime from, DateTime to, bool rawPaths)
    {
        using var command = AnomalyStore.Command(connection, """
            SELECT route, path, status, client, count(*)::BIGINT, min(ts), max(ts) FROM samples
            WHERE ts >= $from AND ts < $to AND (route IS NULL OR $raw) GROUP BY route, path, status, client LIMIT 200000
            """, ("from", from), ("to", to), ("raw", rawPaths));
        using var reader = command.ExecuteReader();
        var rows = new List<Row>();
        while (reader.Read())
        {
            rows.Add(new(AnomalyStore.NullableString(reader, 0), reader.GetString(1), reader.GetInt16(2), AnomalyStore.NullableString(reader, 3), reader.GetInt64(4),
                AnomalyStore.Utc(reader.GetValue(5)), AnomalyStore.Utc(reader.GetValue(6))));
        }

        return rows;
    }
}
