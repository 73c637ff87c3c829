using DuckDB.NET.Data;
using Portcullis.Analytics;
using Portcullis.Pipeline;

namespace Portcullis.Advice;

/// <summary>
/// upstream.timeout-too-tight and upstream.timeout-too-loose: each cluster's p99 upstream latency (merged from the
/// rollups' upstream sketches) against its timeouts.request. Too tight: the p99 of the last latencyWindow is at or
/// above tightShare of the timeout, or the per-minute p99 of the last 15 minutes climbs steadily toward it (a
/// least-squares slope that reaches the timeout within 10 minutes from at least half of it). Too loose: over the last
/// day the timeout is above looseFactor × p99 with enough requests and none timing out (recomputed hourly: it
/// reads a day of sketches).
/// </summary>
internal sealed class ServiceTimeoutDetector(TimeProvider time) : IAdviceDetector
{
    private static readonly TimeSpan TrendWindow = TimeSpan.FromMinutes(15);
    private static readonly TimeSpan LooseWindow = TimeSpan.FromDays(1);
    private static readonly TimeSpan LooseEvery = TimeSpan.FromHours(1);
    private const int TrendMinRequests = 10;
    private const int TrendMinPoints = 5;

    private readonly Lock _looseLock = new();
    private (DateTime At, string Fingerprint, List<Finding> Findings)? _loose;

    public string Name => "services.timeouts";

    public IReadOnlyList<Finding> Detect(AdviceContext context)
    {
        if (context.Analytics is null) return [];
        var findings = new List<Finding>(Tight(context));
        findings.AddRange(Loose(context));
        return findings;
    }

    private static List<Finding> Tight(AdviceContext context)
    {
        var options = context.Settings.Services;
        var now = context.Now;
        var span = options.LatencyWindow > TrendWindow ? options.LatencyWindow : TrendWindow;
        var from = Floor(now - span);
        var perMinute = new Dictionary<string, SortedDictionary<DateTime, long[]>>(StringComparer.Ordinal);
        var timeouts = new Dictionary<string, long>(StringComparer.Ordinal);
        using (var connection = context.Analytics!.OpenConnection(from, now))
        {
            using var command = connection.CreateCommand();
            command.CommandText = """
                SELECT cluster, minute, b, sum(n)::BIGINT FROM (
                    SELECT cluster, minute, unnest(upstream_buckets) AS b, unnest(upstream_counts) AS n
                    FROM rollups WHERE minute >= $from AND minute < $to AND cluster IS NOT NULL)
                GROUP BY cluster, minute, b
                """;
            command.Parameters.Add(new DuckDBParameter("from", from));
            command.Parameters.Add(new DuckDBParameter("to", now));
            using (var reader = command.ExecuteReader())
            {
                while (reader.Read())
                {
                    var cluster = reader.GetString(0);
                    if (!perMinute.TryGetValue(cluster, out var minutes)) perMinute[cluster] = minutes = [];
                    var minute = reader.GetDateTime(1);
                    if (!minutes.TryGetValue(minute, out var dense)) minutes[minute] = dense = new long[LatencySketch.BucketCount];
                    dense[reader.GetInt16(2)] += reader.GetInt64(3);
                }
            }

            using var timeoutCommand = connection.CreateCommand();
            timeoutCommand.CommandText = "SELECT cluster, sum(requests)::BIGINT FROM rollups WHERE minute >= $from AND minute < $to AND cluster IS NOT NULL AND reason = $timeout GROUP BY cluster";
            timeoutCommand.Parameters.Add(new DuckDBParameter("from", Floor(now - options.LatencyWindow)));
            timeoutCommand.Parameters.Add(new DuckDBParameter("to", now));
            timeoutCommand.Parameters.Add(new DuckDBParameter("timeout", ReasonCodes.UpstreamTimeout.Code));
            using var timeoutReader = timeoutCommand.ExecuteReader();
            while (timeoutReader.Read()) timeouts[timeoutReader.GetString(0)] = timeoutReader.GetInt64(1);
        }

        var findings = new List<Finding>();
        var windowFrom = Floor(now - options.LatencyWindow);
        foreach (var (cluster, minutes) in perMinute)
        {
            if (!context.Snapshot.Config.Clusters.TryGetValue(cluster, out var clusterOptions)) continue;
            var timeout = clusterOptions.Timeouts.Request.TotalSeconds;
            var merged = new long[LatencySketch.BucketCount];
            long count = 0;
            var trend = new List<(double Minute, double P99)>();
            foreach (var (minute, dense) in minutes)
            {
                var n = dense.Sum();
                if (minute >= windowFrom)
                {
                    for (var i = 0; i < dense.Length; i++) merged[i] += dense[i];
                    count += n;
                }

                if (n >= TrendMinRequests) trend.Add(((minute - now).TotalMinutes, LatencySketch.Quantile(dense, 0.99)!.Value / 1e6));
            }

            if (count < options.MinLatencyRequests) continue;
            var p99 = LatencySketch.Quantile(merged, 0.99)!.Value / 1e6;
            var timedOut = timeouts.GetValueOrDefault(cluster);
            var over = p99 >= options.TightShare * timeout;
            var (slope, projected) = Project(trend);
            var creeping = !over && trend.Count >= TrendMinPoints && slope > 0 && trend[^1].P99 >= timeout / 2 && projected >= timeout;
            if (!over && !creeping) continue;

            var suggested = TimeSpan.FromSeconds(Math.Max(p99 * 2, timeout * 1.5));
            var suggestedText = ServiceAdvice.ConfigDuration(suggested);
            var evidence = new Evidence(windowFrom, now,
            [
                new("p99 upstream latency", p99, "s"),
                new("timeouts.request", timeout, "s"),
                new("p99 / timeout", p99 / timeout, "ratio", options.TightShare),
                new("proxied requests", count, "requests"),
                new("timed out (upstream.timeout)", timedOut, "requests"),
                new("p99 trend", slope * 60, "s per hour"),
            ])
            {
                DashboardLink = DashboardLinks.Samples(windowFrom, now, ("cluster", cluster)),
                Basis = $"{count} proxied requests in the last {ServiceAdvice.Number(options.LatencyWindow.TotalMinutes)} min; trend over {trend.Count} minutes with ≥ {TrendMinRequests} requests",
            };
            var why = over
                ? $"The p99 upstream latency of cluster {cluster} over the last {ServiceAdvice.Number(options.LatencyWindow.TotalMinutes)} minutes is {ServiceAdvice.Latency(p99)}, {ServiceAdvice.Percent(p99 / timeout)} of its timeouts.request ({ServiceAdvice.ConfigDuration(clusterOptions.Timeouts.Request)})"
                : $"The per-minute p99 upstream latency of cluster {cluster} is climbing ({ServiceAdvice.Latency(trend[^1].P99)} now, +{ServiceAdvice.Latency(slope)} a minute) and would reach its timeouts.request ({ServiceAdvice.ConfigDuration(clusterOptions.Timeouts.Request)}) within 10 minutes";
            var explanation = why + (timedOut > 0 ? $"; {timedOut} requests already timed out." : ".")
                + $" Slow answers near the limit become 504s. If the upstream is expected to take this long, raise the timeout (the patch sets {suggestedText}); if it is getting slower, look at the upstream first: a longer timeout only hides it.";
            var patch = new ConfigPatch(ServiceAdvice.ClusterPatch(cluster, $"timeouts:\n  request: {suggestedText}"),
                $"raises clusters.{cluster}.timeouts.request from {ServiceAdvice.ConfigDuration(clusterOptions.Timeouts.Request)} to {suggestedText}");
            findings.Add(ServiceAdvice.Make(context, FindingKinds.TimeoutTooTight, timedOut > 0 ? FindingSeverity.Critical : FindingSeverity.Warning,
                new FindingSubject(SubjectKind.Cluster, cluster), $"Timeout of cluster {cluster} is too tight: p99 {ServiceAdvice.Latency(over ? p99 : trend[^1].P99)} against {ServiceAdvice.ConfigDuration(clusterOptions.Timeouts.Request)}",
                explanation, evidence, over ? FindingConfidence.High : FindingConfidence.Medium, patch));
        }

        return findings;
    }

    /// <summary>Least-squares slope (seconds per minute) of p99 over the minutes, and the p99 it projects 10 minutes from now.</summary>
    private static (double Slope, double Projected) Project(List<(double Minute, double P99)> points)
    {
        if (points.Count < 2) return (0, 0);
        var mx = points.Average(p => p.Minute);
        var my = points.Average(p => p.P99);
        var sxx = points.Sum(p => (p.Minute - mx) * (p.Minute - mx));
        if (sxx == 0) return (0, 0);
        var slope = points.Sum(p => (p.Minute - mx) * (p.P99 - my)) / sxx;
        return (slope, my + slope * (10 - mx));
    }

    private List<Finding> Loose(AdviceContext context)
    {
        var fingerprint = context.Snapshot.Fingerprint;
        lock (_looseLock)
        {
            var at = time.GetUtcNow().UtcDateTime;
            if (_loose is { } cached && cached.Fingerprint == fingerprint && at - cached.At < LooseEvery)
            {
                return [.. cached.Findings.Select(f => f with { LastSeen = context.Now })];
            }

            var findings = ComputeLoose(context);
            _loose = (at, fingerprint, findings);
            return findings;
        }
    }

    private static List<Finding> ComputeLoose(AdviceContext context)
    {
        var options = context.Settings.Services;
        var now = context.Now;
        var from = now - LooseWindow < context.WindowStart ? context.WindowStart : now - LooseWindow;
        var sketches = new Dictionary<string, long[]>(StringComparer.Ordinal);
        var timeouts = new HashSet<string>(StringComparer.Ordinal);
        var firstSeen = new Dictionary<string, DateTime>(StringComparer.Ordinal);
        using (var connection = context.Analytics!.OpenConnection(from, now))
        {
            using (var firstCommand = connection.CreateCommand())
            {
                firstCommand.CommandText = "SELECT cluster, min(minute) FROM rollups WHERE minute >= $from AND minute < $to AND cluster IS NOT NULL GROUP BY cluster";
                firstCommand.Parameters.Add(new DuckDBParameter("from", from));
                firstCommand.Parameters.Add(new DuckDBParameter("to", now));
                using var firstReader = firstCommand.ExecuteReader();
                while (firstReader.Read()) firstSeen[firstReader.GetString(0)] = firstReader.GetDateTime(1);
            }

            using var command = connection.CreateCommand();
            command.CommandText = """
                SELECT cluster, b, sum(n)::BIGINT FROM (
                    SELECT cluster, unnest(upstream_buckets) AS b, unnest(upstream_counts) AS n
                    FROM rollups WHERE minute >= $from AND minute < $to AND cluster IS NOT NULL)
                GROUP BY cluster, b
                """;
            command.Parameters.Add(new DuckDBParameter("from", from));
            command.Parameters.Add(new DuckDBParameter("to", now));
            using (var reader = command.ExecuteReader())
            {
                while (reader.Read())
                {
                    var cluster = reader.GetString(0);
                    if (!sketches.TryGetValue(cluster, out var dense)) sketches[cluster] = dense = new long[LatencySketch.BucketCount];
                    dense[reader.GetInt16(1)] += reader.GetInt64(2);
                }
            }

            using var timeoutCommand = connection.CreateCommand();
            timeoutCommand.CommandText = "SELECT DISTINCT cluster FROM rollups WHERE minute >= $from AND minute < $to AND cluster IS NOT NULL AND reason = $timeout";
            timeoutCommand.Parameters.Add(new DuckDBParameter("from", from));
            timeoutCommand.Parameters.Add(new DuckDBParameter("to", now));
            timeoutCommand.Parameters.Add(new DuckDBParameter("timeout", ReasonCodes.UpstreamTimeout.Code));
            using var timeoutReader = timeoutCommand.ExecuteReader();
            while (timeoutReader.Read()) timeouts.Add(timeoutReader.GetString(0));
        }

        var findings = new List<Finding>();
        foreach (var (cluster, dense) in sketches)
        {
            if (timeouts.Contains(cluster) || !context.Snapshot.Config.Clusters.TryGetValue(cluster, out var clusterOptions)) continue;
            var count = dense.Sum();
            if (count < options.MinLooseRequests) continue;
            var timeout = clusterOptions.Timeouts.Request.TotalSeconds;
            var p99 = LatencySketch.Quantile(dense, 0.99)!.Value / 1e6;
            var max = LatencySketch.ValueOf(Array.FindLastIndex(dense, c => c > 0)) / 1e6;
            if (timeout <= options.LooseFactor * p99) continue;

            // Room for the slowest answer seen (twice it) and for a p99 ten times today's.
            var suggested = TimeSpan.FromSeconds(Math.Max(p99 * 10, max * 2));
            var suggestedText = ServiceAdvice.ConfigDuration(suggested);
            if (TimeSpan.FromSeconds(Math.Ceiling(suggested.TotalSeconds)) >= clusterOptions.Timeouts.Request * 0.5) continue;
            var dataFrom = firstSeen.GetValueOrDefault(cluster, from);
            var hours = (now - dataFrom).TotalHours;
            var evidence = new Evidence(dataFrom, now,
            [
                new("p99 upstream latency", p99, "s"),
                new("slowest upstream answer", max, "s"),
                new("timeouts.request", timeout, "s"),
                new("timeout / p99", timeout / p99, "ratio", options.LooseFactor),
                new("proxied requests", count, "requests"),
            ])
            {
                DashboardLink = DashboardLinks.Samples(dataFrom, now, ("cluster", cluster)),
                Basis = $"{count} proxied requests over {ServiceAdvice.Number(Math.Round(hours, 1))} h, none timed out",
            };
            var explanation = $"Over the last {ServiceAdvice.Number(Math.Round(hours, 1))} hours the p99 upstream latency of cluster {cluster} was {ServiceAdvice.Latency(p99)} and its slowest answer {ServiceAdvice.Latency(max)}, "
                + $"but its timeouts.request is {ServiceAdvice.ConfigDuration(clusterOptions.Timeouts.Request)} ({ServiceAdvice.Number(Math.Round(timeout / p99))} × the p99). When the upstream hangs, each request holds a connection and the client waits that long before a 504. "
                + $"The patch sets {suggestedText}: twice the slowest answer seen and ten times the p99.";
            var patch = new ConfigPatch(ServiceAdvice.ClusterPatch(cluster, $"timeouts:\n  request: {suggestedText}"),
                $"lowers clusters.{cluster}.timeouts.request from {ServiceAdvice.ConfigDuration(clusterOptions.Timeouts.Request)} to {suggestedText}");
            findings.Add(ServiceAdvice.Make(context, FindingKinds.TimeoutTooLoose, FindingSeverity.Info, new FindingSubject(SubjectKind.Cluster, cluster),
                $"Timeout of cluster {cluster} is far above its latency: {ServiceAdvice.ConfigDuration(clusterOptions.Timeouts.Request)} against a p99 of {ServiceAdvice.Latency(p99)}",
                explanation, evidence, hours >= 12 ? FindingConfidence.High : FindingConfidence.Medium, patch));
        }

        return findings;
    }

    private static DateTime Floor(DateTime at) => DateTime.SpecifyKind(new DateTime(at.Ticks - at.Ticks % TimeSpan.TicksPerMinute), DateTimeKind.Utc);
}
