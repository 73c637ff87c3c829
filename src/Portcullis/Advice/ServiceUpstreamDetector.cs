using DuckDB.NET.Data;
using Portcullis.Pipeline;

namespace Portcullis.Advice;

/// <summary>
/// upstream.errors and upstream.timeouts: a cluster whose requests fail with an upstream 5xx (or time out) above a
/// share, sustained, with enough requests and failures. Failures are timed from the samples (every request with
/// status ≥ 500 is kept, with its time to the microsecond); the requests they are a share of come from the rollups,
/// pro-rated over the failing span, so a failure that began 40 s ago is compared with the last 40 s of traffic,
/// not with the whole window.
/// </summary>
internal sealed class ServiceUpstreamDetector : IAdviceDetector
{
    public string Name => "services.upstream";

    public IReadOnlyList<Finding> Detect(AdviceContext context)
    {
        if (context.Analytics is null) return [];
        var options = context.Settings.Services;
        var to = context.Now;
        var from = to - options.ErrorWindow;
        var baselineFrom = from - TimeSpan.FromHours(1);
        using var connection = context.Analytics.OpenConnection(baselineFrom, to);
        var failures = ReadFailures(connection, from, to);
        if (failures.Count == 0) return [];
        var minutes = ReadMinutes(connection, baselineFrom, to);

        var findings = new List<Finding>();
        foreach (var (cluster, list) in failures)
        {
            minutes.TryGetValue(cluster, out var traffic);
            traffic ??= [];
            if (Check(context, cluster, list.Where(f => !f.Timeout).Select(f => f.At).ToList(), traffic, from, baselineFrom, timeouts: false) is { } errors) findings.Add(errors);
            if (Check(context, cluster, list.Where(f => f.Timeout).Select(f => f.At).ToList(), traffic, from, baselineFrom, timeouts: true) is { } timeouts) findings.Add(timeouts);
        }

        return findings;
    }

    private static Finding? Check(AdviceContext context, string cluster, List<DateTime> failures, List<MinuteTraffic> traffic, DateTime from, DateTime baselineFrom, bool timeouts)
    {
        var options = context.Settings.Services;
        var now = context.Now;
        if (failures.Count < options.MinErrors) return null;
        failures.Sort();
        var first = failures[0];
        var last = failures[^1];

        // Sustained (not a blip) and still going on (the latest failure is recent).
        if (last - first < options.SustainedFor) return null;
        if (now - last > TimeSpan.FromTicks(Math.Max(options.ErrorWindow.Ticks / 2, options.SustainedFor.Ticks))) return null;

        var requests = Requests(traffic, first, now, now);
        if (requests < options.MinRequests) return null;
        var share = Math.Min(1, failures.Count / requests);
        var threshold = timeouts ? options.TimeoutRatio : options.ErrorRatio;
        if (share < threshold) return null;

        var baselineRequests = Requests(traffic, baselineFrom, from, now);
        var baselineFailures = traffic.Where(t => t.Minute >= baselineFrom && t.Minute < from).Sum(t => timeouts ? t.Timeouts : t.Errors);
        double? baseline = baselineRequests >= options.MinRequests ? baselineFailures / baselineRequests : null;

        var timeout = context.Snapshot.Config.Clusters.TryGetValue(cluster, out var clusterOptions) ? clusterOptions.Timeouts.Request : (TimeSpan?)null;
        var kind = timeouts ? FindingKinds.UpstreamTimeouts : FindingKinds.UpstreamErrors;
        var severity = share >= Math.Min(1, threshold * 4) ? FindingSeverity.Critical : FindingSeverity.Warning;
        var confidence = failures.Count >= options.MinErrors * 3 && requests >= options.MinRequests * 3 ? FindingConfidence.High : FindingConfidence.Medium;
        var span = now - first;
        var what = timeouts ? "timed out (upstream.timeout, 504)" : "failed with an upstream 5xx (the upstream's own 5xx, upstream.error 502 or upstream.unavailable 503)";
        var link = timeouts
            ? DashboardLinks.Samples(first, now, ("cluster", cluster), ("reason", ReasonCodes.UpstreamTimeout.Code))
            : DashboardLinks.Samples(first, now, ("cluster", cluster), ("minStatus", "500"));
        var baselineText = baseline is { } b ? $" In the hour before, the share was {ServiceAdvice.Percent(b)}." : "";
        var timeoutText = timeouts && timeout is { } t ? $" The cluster's timeouts.request is {ServiceAdvice.ConfigDuration(t)}; if the upstream is merely slow, see upstream.timeout-too-tight." : "";
        var explanation = $"Over the last {ServiceAdvice.Number(span.TotalSeconds)} s, {failures.Count} of about {ServiceAdvice.Number(Math.Round(requests))} requests to cluster "
            + $"{cluster} {what}: {ServiceAdvice.Percent(share)}, above the {ServiceAdvice.Percent(threshold)} threshold, and still going on (latest at {last:HH:mm:ss} UTC).{baselineText}{timeoutText} "
            + (timeouts ? "Clients are getting 504s now; check the upstream's health and load." : "Clients are getting errors now; check the upstream's logs and health.");
        var values = new List<EvidenceValue>
        {
            new(timeouts ? "timeout share" : "error share", share, "ratio", baseline),
            new(timeouts ? "timeouts" : "errors", failures.Count, "requests"),
            new("requests (estimated over the span)", Math.Round(requests), "requests"),
            new("failing for", Math.Round(span.TotalSeconds), "s"),
        };
        if (timeout is { } configured && timeouts) values.Add(new("timeouts.request", configured.TotalSeconds, "s"));
        var evidence = new Evidence(first, now, values)
        {
            DashboardLink = link,
            Basis = $"{failures.Count} failures kept as samples since {first:HH:mm:ss}, requests from the per-minute rollups",
        };
        return ServiceAdvice.Make(context, kind, severity, new FindingSubject(SubjectKind.Cluster, cluster),
            $"{(timeouts ? "Upstream timeouts" : "Upstream errors")} on cluster {cluster}: {ServiceAdvice.Percent(share)} of requests", explanation, evidence, confidence);
    }

    /// <summary>
    /// Requests in [from, to) estimated from per-minute counts: each minute's requests spread evenly over the part of it
    /// that has data (the current minute only up to now).
    /// </summary>
    private static double Requests(List<MinuteTraffic> traffic, DateTime from, DateTime to, DateTime now)
    {
        double total = 0;
        foreach (var minute in traffic)
        {
            var end = minute.Minute.AddMinutes(1);
            var covered = (end < now ? end : now) - minute.Minute;
            if (covered <= TimeSpan.Zero) continue;
            var overlapStart = minute.Minute > from ? minute.Minute : from;
            var overlapEnd = end < to ? end : to;
            if (overlapEnd <= overlapStart) continue;
            total += minute.Requests * Math.Min(1, (overlapEnd - overlapStart) / covered);
        }

        return total;
    }

    private static Dictionary<string, List<(DateTime At, bool Timeout)>> ReadFailures(DuckDBConnection connection, DateTime from, DateTime to)
    {
        using var command = connection.CreateCommand();
        command.CommandText = """
            SELECT cluster, ts, reason FROM samples
            WHERE ts >= $from AND ts < $to AND cluster IS NOT NULL AND status >= 500
              AND (reason IS NULL OR reason IN ($error, $unavailable, $timeout))
            ORDER BY ts LIMIT 500000
            """;
        AddParameters(command, from, to);
        var result = new Dictionary<string, List<(DateTime, bool)>>(StringComparer.Ordinal);
        using var reader = command.ExecuteReader();
        while (reader.Read())
        {
            var cluster = reader.GetString(0);
            if (!result.TryGetValue(cluster, out var list)) result[cluster] = list = [];
            list.Add((reader.GetDateTime(1), !reader.IsDBNull(2) && reader.GetString(2) == ReasonCodes.UpstreamTimeout.Code));
        }

        return result;
    }

    private static Dictionary<string, List<MinuteTraffic>> ReadMinutes(DuckDBConnection connection, DateTime from, DateTime to)
    {
        using var command = connection.CreateCommand();
        command.CommandText = """
            SELECT cluster, minute, sum(requests)::BIGINT,
                   sum(CASE WHEN status >= 500 AND (reason IS NULL OR reason IN ($error, $unavailable)) THEN requests ELSE 0 END)::BIGINT,
                   sum(CASE WHEN reason = $timeout THEN requests ELSE 0 END)::BIGINT
            FROM rollups WHERE minute >= $from AND minute < $to AND cluster IS NOT NULL
            GROUP BY cluster, minute
            """;
        AddParameters(command, DateTime.SpecifyKind(new DateTime(from.Ticks - from.Ticks % TimeSpan.TicksPerMinute), DateTimeKind.Utc), to);
        var result = new Dictionary<string, List<MinuteTraffic>>(StringComparer.Ordinal);
        using var reader = command.ExecuteReader();
        while (reader.Read())
        {
            var cluster = reader.GetString(0);
            if (!result.TryGetValue(cluster, out var list)) result[cluster] = list = [];
            list.Add(new MinuteTraffic(reader.GetDateTime(1), reader.GetInt64(2), reader.GetInt64(3), reader.GetInt64(4)));
        }

        return result;
    }

    private static void AddParameters(DuckDBCommand command, DateTime from, DateTime to)
    {
        command.Parameters.Add(new DuckDBParameter("from", from));
        command.Parameters.Add(new DuckDBParameter("to", to));
        command.Parameters.Add(new DuckDBParameter("error", ReasonCodes.UpstreamError.Code));
        command.Parameters.Add(new DuckDBParameter("unavailable", ReasonCodes.UpstreamUnavailable.Code));
        command.Parameters.Add(new DuckDBParameter("timeout", ReasonCodes.UpstreamTimeout.Code));
    }

    private sealed record MinuteTraffic(DateTime Minute, long Requests, long Errors, long Timeouts);
}
