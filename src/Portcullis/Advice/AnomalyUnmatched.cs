using System.Globalization;
using System.Text;
using DuckDB.NET.Data;

namespace Portcullis.Advice;

/// <summary>
/// traffic.scanner and traffic.enumeration, from the samples of the burst window: requests no route matched keep
/// their raw path, so the paths one client address tried are clustered into well-known probes
/// (<see cref="AnomalyPaths.ProbePrefixes"/>), many distinct unmatched paths, and id enumeration (many distinct
/// paths of one shape, /users/{id}). On a route, enumeration is many 404s from the upstream on a route whose
/// template has a parameter (or, with samples.rawPaths, many distinct ids of one shape).
/// </summary>
internal sealed class AnomalyUnmatchedDetector : IAdviceDetector
{
    public string Name => "anomalies.unmatched";

    public IReadOnlyList<Finding> Detect(AdviceContext context)
    {
        if (!AnomalyStore.Runs(context)) return [];
        var options = context.Settings.Anomalies;
        var now = context.Now;
        var from = now - options.BurstWindow;
        var rawPaths = context.Snapshot.Analytics?.RawPaths ?? false;
        using var connection = context.Analytics!.OpenConnection(from, now.AddMinutes(1));
        var clients = Read(connection, from, now);
        var successRate = context.Snapshot.Analytics?.SuccessRate ?? 0.01;
        var findings = new List<Finding>();
        foreach (var (client, rows) in clients)
        {
            context.Cancellation.ThrowIfCancellationRequested();
            var unmatched = rows.Where(r => r.Route is null || (rawPaths && r.Status >= 400)).ToList();
            var probes = unmatched.Where(r => r.Probe is not null).ToList();
            var probePaths = probes.Select(r => r.Path).Distinct(StringComparer.OrdinalIgnoreCase).Count();
            var unmatchedPaths = unmatched.Where(r => r.Route is null).Select(r => r.Path).Distinct(StringComparer.Ordinal).Count();

            // Id enumeration: many distinct paths of one shape with an {id} in it.
            var enumerated = new HashSet<string>(StringComparer.Ordinal);
            foreach (var shape in unmatched.Where(r => r.Probe is null && r.Status == 404 && r.Shape.Contains("{id}", StringComparison.Ordinal)).GroupBy(r => (r.Route, r.Shape)))
            {
                var distinct = shape.Select(r => r.Path).Distinct(StringComparer.Ordinal).ToList();
                if (distinct.Count < options.MinEnumerationPaths) continue;
                findings.Add(Enumeration(context, from, client, shape.Key.Route, shape.Key.Shape, distinct.Count, shape.Sum(r => r.Count), distinct, shape));
                enumerated.UnionWith(distinct);
            }

            // On a route with a parameter in its template (paths are templates): many 404s the upstream gave one
            // client, most of what it asked for (a client using ids it was handed gets a few; a normal 4xx share is not this).
            foreach (var route in rows.Where(r => r.Route is not null && !rawPaths && AnomalyPaths.HasParameter(r.Path)).GroupBy(r => r.Route!))
            {
                var notFound = route.Where(r => r.Status == 404 && r.Reason is null).Sum(r => r.Count);
                if (notFound < options.MinEnumerationPaths) continue;
                var requests = route.Where(r => r.Status >= 400).Sum(r => r.Count) + (successRate > 0 ? route.Where(r => r.Status < 400).Sum(r => r.Count) / successRate : 0);
                if (notFound < 0.5 * requests) continue;
                findings.Add(Enumeration(context, from, client, route.Key, route.First().Path, 0, notFound, [], route.Where(r => r.Status == 404)));
            }

            var otherPaths = unmatchedPaths - unmatched.Where(r => r.Route is null && enumerated.Contains(r.Path)).Select(r => r.Path).Distinct(StringComparer.Ordinal).Count();
            if (probePaths >= options.MinProbePaths || otherPaths >= options.MinUnmatchedPaths)
            {
                findings.Add(Scanner(context, from, client, unmatched, probes, probePaths, unmatchedPaths));
            }
        }

        return findings;
    }

    internal sealed record PathRow(string? Route, string Path, int Status, string? Reason, string? Consumer, long Count, DateTime First, DateTime Last)
    {
        public string? Probe { get; } = AnomalyPaths.Probe(Path);

        public string Shape { get; } = AnomalyPaths.Shape(Path);
    }

    private static Dictionary<string, List<PathRow>> Read(DuckDBConnection connection, DateTime from, DateTime now)
    {
        using var command = AnomalyStore.Command(connection, """
            SELECT client, route, path, status, reason, consumer, count(*)::BIGINT, min(ts), max(ts)
            FROM samples WHERE ts >= $from AND ts <= $now AND client IS NOT NULL
            GROUP BY client, route, path, status, reason, consumer
            """, ("from", from), ("now", now));
        using var reader = command.ExecuteReader();
        var result = new Dictionary<string, List<PathRow>>(StringComparer.Ordinal);
        while (reader.Read())
        {
            var client = reader.GetString(0);
            if (!result.TryGetValue(client, out var rows)) result[client] = rows = [];
            rows.Add(new(AnomalyStore.NullableString(reader, 1), reader.GetString(2), reader.GetInt16(3), AnomalyStore.NullableString(reader, 4),
                AnomalyStore.NullableString(reader, 5), reader.GetInt64(6), AnomalyStore.Utc(reader.GetValue(7)), AnomalyStore.Utc(reader.GetValue(8))));
        }

        return result;
    }

    private static Finding Scanner(AdviceContext context, DateTime from, string client, List<PathRow> unmatched, List<PathRow> probes, int probePaths, int unmatchedPaths)
    {
        var subject = new FindingSubject(SubjectKind.Client, client);
        var requests = unmatched.Sum(r => r.Count);
        var families = probes.GroupBy(r => r.Probe!).OrderByDescending(g => g.Sum(r => r.Count)).Select(g => g.Key).ToList();
        var examples = (probes.Count > 0 ? probes : unmatched).OrderByDescending(r => r.Count).ThenBy(r => r.Path, StringComparer.Ordinal).Select(r => r.Path).Distinct(StringComparer.Ordinal).Take(8).ToList();
        var consumers = unmatched.Where(r => r.Consumer is not null).Select(r => r.Consumer!).Distinct(StringComparer.Ordinal).ToList();
        var onRoutes = probes.Where(r => r.Route is not null).Select(r => r.Route!).Distinct(StringComparer.Ordinal).ToList();
        var text = new StringBuilder(string.Create(CultureInfo.InvariantCulture,
            $"Client {client} sent {requests} requests to {unmatchedPaths} distinct paths no route matches in the last {context.Settings.Anomalies.BurstWindow.TotalMinutes:0} minutes"));
        if (probePaths > 0) text.Append(CultureInfo.InvariantCulture, $", {probePaths} of them well-known probe paths ({string.Join(", ", families)})");
        text.Append(". This is what vulnerability scanners do: they try paths where other servers leak secrets or expose admin panels. ");
        text.Append(onRoutes.Count > 0
            ? $"Some probes matched route(s) {string.Join(", ", onRoutes)} and reached the upstream: the patch adds routes that answer them 404 at the gateway."
            : "The gateway answered them all with 404 (route.unmatched) and nothing reached an upstream; block the address at the network edge if it persists.");
        if (consumers.Count > 0) text.Append(CultureInfo.InvariantCulture, $" Consumers seen from it: {string.Join(", ", consumers.Take(5))}.");
        return new Finding
        {
            Id = Finding.MakeId(FindingKinds.UnmatchedScanner, subject),
            Kind = FindingKinds.UnmatchedScanner,
            Severity = onRoutes.Count > 0 ? FindingSeverity.Critical : FindingSeverity.Warning,
            Subject = subject,
            FirstSeen = unmatched.Min(r => r.First),
            LastSeen = unmatched.Max(r => r.Last),
            Title = probePaths > 0 ? $"Scanner at {client}: {probePaths} probe paths ({string.Join(", ", families.Take(4))})" : $"Scanner at {client}: {unmatchedPaths} unmatched paths",
            Explanation = text.ToString(),
            Evidence = new Evidence(from, context.Now,
                [new EvidenceValue("requests to unmatched paths", requests, "requests", 0), new EvidenceValue("distinct unmatched paths", unmatchedPaths, "paths"),
                 new EvidenceValue("distinct probe paths", probePaths, "paths"), .. examples.Select((p, i) => new EvidenceValue("path " + p, unmatched.Where(r => r.Path == p).Sum(r => r.Count), "requests"))])
            {
                DashboardLink = DashboardLinks.Samples(from, context.Now, ("reason", Pipeline.ReasonCodes.RouteUnmatched.Code)),
                Basis = string.Create(CultureInfo.InvariantCulture, $"samples of the last {context.Settings.Anomalies.BurstWindow.TotalMinutes:0} minutes (every unmatched request is sampled)"),
            },
            Confidence = probePaths >= context.Settings.Anomalies.MinProbePaths ? FindingConfidence.High : FindingConfidence.Medium,
            Patch = onRoutes.Count > 0 ? DenyPatch(families) : null,
        };
    }

    // One route per probe prefix, ahead of every other route, answering 404 at the gateway. Named after the
    // prefix, so applying the patch of two findings merges into the same routes.
    internal static ConfigPatch? DenyPatch(IEnumerable<string> families)
    {
        var prefixes = families.Where(f => !f.StartsWith('*')).Distinct(StringComparer.OrdinalIgnoreCase).ToList();
        if (prefixes.Count == 0) return null;
        var yaml = new StringBuilder("routes:\n");
        foreach (var prefix in prefixes)
        {
            var name = "deny-probe-" + new string([.. prefix.ToLowerInvariant().Select(c => char.IsAsciiLetterOrDigit(c) ? c : '-')]).Trim('-');
            yaml.Append("  - name: ").Append(name).Append('\n')
                .Append("    order: -1000\n")
                .Append("    match: { pathPrefix: \"").Append(prefix).Append("\" }\n")
                .Append("    respond: { status: 404 }\n");
        }

        return new ConfigPatch(yaml.ToString(), $"adds route(s) answering 404 at the gateway for {string.Join(", ", prefixes)}");
    }

    private static Finding Enumeration(AdviceContext context, DateTime from, string client, string? route, string shape, int distinct, long requests, List<string> paths, IEnumerable<PathRow> rows)
    {
        var subject = new FindingSubject(SubjectKind.Client, client, route);
        var where = route is null ? "paths no route matches" : $"route {route}";
        var statuses = rows.GroupBy(r => r.Status).OrderByDescending(g => g.Sum(r => r.Count)).Select(g => string.Create(CultureInfo.InvariantCulture, $"{g.Key}: {g.Sum(r => r.Count)}"));
        var what = distinct > 0
            ? string.Create(CultureInfo.InvariantCulture, $"{distinct} distinct paths of the shape {shape} ({requests} requests; e.g. {string.Join(", ", paths.Take(3))})")
            : string.Create(CultureInfo.InvariantCulture, $"{requests} requests to {shape} that the upstream answered 404 (ids that do not exist)");
        return new Finding
        {
            Id = Finding.MakeId(FindingKinds.UnmatchedEnumeration, subject, shape),
            Kind = FindingKinds.UnmatchedEnumeration,
            Severity = FindingSeverity.Warning,
            Subject = subject,
            FirstSeen = rows.Min(r => r.First),
            LastSeen = rows.Max(r => r.Last),
            Title = $"Id enumeration from {client} on {(route is null ? shape : "route " + route)}",
            Explanation = $"Client {client} tried {what} on {where} in the last {context.Settings.Anomalies.BurstWindow.TotalMinutes:0} minutes (statuses {string.Join(", ", statuses)}). "
                + "Walking through ids is how scrapers and attackers find records they were not given; a legitimate client asks for ids it was handed. Check that the route authorizes each record, and consider a rate limit keyed by ip on it.",
            Evidence = new Evidence(from, context.Now,
                [new EvidenceValue("distinct ids tried", distinct > 0 ? distinct : requests, "paths", 0), new EvidenceValue("requests", requests, "requests")])
            {
                DashboardLink = DashboardLinks.Samples(from, context.Now, ("route", route), ("status", "4xx")),
                Basis = "samples of the burst window (every 4xx is sampled)",
            },
            Confidence = distinct >= 2 * context.Settings.Anomalies.MinEnumerationPaths || requests >= 3 * context.Settings.Anomalies.MinEnumerationPaths ? FindingConfidence.High : FindingConfidence.Medium,
        };
    }
}
