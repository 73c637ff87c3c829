using DuckDB.NET.Data;
using Portcullis.Analytics;

namespace Portcullis.IntegrationTests.Advice.Evaluation;

/// <summary>
/// Writes days of baseline history of a <see cref="TrafficModel"/> into a new store, in the shape the gateway's own
/// writer and compaction leave it (docs/analytics.md, "Resolution per age"): minute rows for the last 47 hours, hour
/// rows before that (with the compaction's progress in analytics_meta), samples of every request ≥ 400 and 1 % of
/// the rest, and per-second arrivals (the rate-limit advisor's table) for the minute tier. Every row is labelled as baseline by construction: no incident is ever written into history.
/// </summary>
internal static class HistorySeeder
{
    public static readonly TimeSpan MinuteTier = TimeSpan.FromHours(47);

    private readonly record struct Key(string? Route, string? Cluster, string? Consumer, string? Group, short Status, string? Reason);

    private sealed class Cell
    {
        public long Requests;
        public long LatencySum;
        public long UpstreamSum;
        public readonly SortedDictionary<short, long> Latency = [];
        public readonly SortedDictionary<short, long> Upstream = [];
    }

    /// <summary>
    /// History over [now - days, now), then the minutes that passed while writing it, until it reaches the current
    /// minute (a gap between history and live traffic would look like traffic falling away); returns what it wrote.
    /// </summary>
    public static (long Rows, long Samples, long Requests) Write(string path, TrafficModel model, DateTime now, int days)
    {
        var (rows, samples, requests) = Write(path, model, now, days, null);
        for (var i = 0; i < 5; i++)
        {
            var until = DateTime.UtcNow;
            var from = Minute(now);
            if (Minute(until) <= from) break;
            var (r, s, q) = Write(path, model, until, days, from);
            (rows, samples, requests) = (rows + r, samples + s, requests + q);
            now = until;
        }

        return (rows, samples, requests);
    }

    private static DateTime Minute(DateTime t) => new(t.Ticks - t.Ticks % TimeSpan.TicksPerMinute, DateTimeKind.Utc);

    private static (long Rows, long Samples, long Requests) Write(string path, TrafficModel model, DateTime now, int days, DateTime? resumeAt)
    {
        var random = new Random(model.Seed * 7919 + 17 + (resumeAt is null ? 0 : 1));
        var database = new AnalyticsDatabase(path);
        using var connection = database.OpenConnection();
        var end = new DateTime(now.Ticks - now.Ticks % TimeSpan.TicksPerMinute, DateTimeKind.Utc);
        var minuteStart = end - MinuteTier;
        var hourStart = new DateTime(minuteStart.Ticks - minuteStart.Ticks % TimeSpan.TicksPerHour, DateTimeKind.Utc);
        var oldest = end.AddDays(-days);
        var first = new DateTime(oldest.Ticks - oldest.Ticks % TimeSpan.TicksPerHour, DateTimeKind.Utc);
        long rows = 0, samples = 0, requests = 0;
        using (var rollups = connection.CreateAppender(AnalyticsSchema.Rollups))
        using (var sampleAppender = connection.CreateAppender(AnalyticsSchema.Samples))
        using (var arrivals = connection.CreateAppender(AnalyticsSchema.Arrivals))
        {
            // Hour rows for [first, hourStart), minute rows for [hourStart, end).
            for (var t = resumeAt ?? first; t < end;)
            {
                var size = t < hourStart ? TimeSpan.FromHours(1) : TimeSpan.FromMinutes(1);
                var (r, s, q) = Period(rollups, sampleAppender, size.TotalMinutes == 1 ? arrivals : null, model, random, t, size);
                rows += r;
                samples += s;
                requests += q;
                t += size;
            }
        }

        using (var meta = connection.CreateCommand())
        {
            // What the compaction would have recorded: rows before hourStart are hour rows.
            meta.CommandText = $"INSERT OR REPLACE INTO analytics_meta VALUES ('{AnalyticsCompaction.HourlyKey}', '{hourStart:yyyy-MM-ddTHH:mm:ssZ}')";
            meta.ExecuteNonQuery();
            meta.CommandText = "CHECKPOINT";
            meta.ExecuteNonQuery();
        }

        return (rows, samples, requests);
    }

    private static (long Rows, long Samples, long Requests) Period(DuckDBAppender rollups, DuckDBAppender samples, DuckDBAppender? arrivals, TrafficModel model, Random random, DateTime start, TimeSpan size)
    {
        var cells = new Dictionary<Key, Cell>();
        // Per-second arrivals (minute tier only) of requests that reached the traffic stage: route × rate key × group.
        var seconds = new Dictionary<(string Route, string RateKey, string? Group), int[]>();
        long sampleCount = 0, requests = 0;
        foreach (var stream in model.Streams)
        {
            // The rate at the middle of the period, so an hour row carries that hour's share of the day.
            var count = TrafficModel.Poisson(stream.PeakRate * TrafficModel.Diurnal(start + size / 2) * size.TotalSeconds, random);
            for (var i = 0; i < count; i++)
            {
                var outcome = Outcome(stream, random);
                var (key, path, upstreamUs) = outcome;
                var latencyUs = (upstreamUs ?? 0) + 300 + random.Next(1200);
                if (!cells.TryGetValue(key, out var cell)) cells[key] = cell = new Cell();
                cell.Requests++;
                cell.LatencySum += latencyUs;
                Add(cell.Latency, latencyUs);
                if (upstreamUs is { } up)
                {
                    cell.UpstreamSum += up;
                    Add(cell.Upstream, up);
                }

                requests++;
                if (arrivals is not null && stream.FixedOutcome is null)
                {
                    var rateKey = stream.Caller.HasKey ? stream.Caller.Name : "ip:" + stream.Caller.Client;
                    if (!seconds.TryGetValue((stream.Route.Name, rateKey, stream.Caller.Group), out var counts)) seconds[(stream.Route.Name, rateKey, stream.Caller.Group)] = counts = new int[60];
                    counts[random.Next(60)]++;
                }

                if (key.Status >= 400 || random.NextDouble() < 0.01)
                {
                    var ts = start + TimeSpan.FromTicks((long)(random.NextDouble() * size.Ticks));
                    samples.CreateRow()
                        .AppendValue(ts).AppendValue(Guid.NewGuid().ToString("N")[..16]).AppendValue((string?)null).AppendValue(key.Route).AppendValue(key.Cluster)
                        .AppendValue(key.Consumer).AppendValue(key.Group).AppendValue(stream.Caller.Client).AppendValue("GET").AppendValue("127.0.0.1")
                        .AppendValue(path).AppendValue(key.Status).AppendValue(key.Reason)
                        .AppendValue(key.Consumer is not null ? "apikey.valid" : key.Reason is { } r && r.StartsWith("apikey", StringComparison.Ordinal) ? r : key.Route is null ? null : key.Reason ?? "anonymous")
                        .AppendValue(key.Reason is null ? "admitted" : null).AppendValue((sbyte)(upstreamUs is null ? 0 : 1)).AppendValue(0L).AppendValue(200L)
                        .AppendValue(latencyUs).AppendValue(upstreamUs)
                        .EndRow();
                    sampleCount++;
                }
            }
        }

        foreach (var (key, cell) in cells)
        {
            rollups.CreateRow()
                .AppendValue(start).AppendValue(key.Route).AppendValue(key.Cluster).AppendValue(key.Consumer).AppendValue(key.Group)
                .AppendValue(key.Status).AppendValue(key.Reason).AppendValue(cell.Requests).AppendValue(0L).AppendValue(cell.Requests * 200)
                .AppendValue(cell.LatencySum).AppendValue(cell.UpstreamSum)
                .AppendValue(cell.Latency.Keys.ToList()).AppendValue(cell.Latency.Values.ToList())
                .AppendValue(cell.Upstream.Keys.ToList()).AppendValue(cell.Upstream.Values.ToList())
                .EndRow();
        }

        foreach (var ((route, rateKey, group), counts) in seconds)
        {
            var offsets = Enumerable.Range(0, 60).Where(i => counts[i] > 0).ToList();
            arrivals!.CreateRow()
                .AppendValue(start).AppendValue(route).AppendValue(rateKey).AppendValue(group).AppendValue(false).AppendValue((string?)null)
                .AppendValue((long)counts.Sum()).AppendValue(offsets.Select(i => (byte)i).ToList()).AppendValue(offsets.Select(i => counts[i]).ToList())
                .EndRow();
        }

        return (cells.Count, sampleCount, requests);
    }

    private static void Add(SortedDictionary<short, long> sketch, long micros)
    {
        var bucket = (short)LatencySketch.BucketOf(micros);
        sketch[bucket] = sketch.GetValueOrDefault(bucket) + 1;
    }

    /// <summary>What one request of a stream became, as the gateway would record it: its rollup key, sample path and upstream time.</summary>
    private static (Key Key, string Path, long? UpstreamUs) Outcome(EvalStream stream, Random random)
    {
        var route = stream.Route;
        var caller = stream.Caller;
        switch (stream.FixedOutcome)
        {
            case "expired":
                return (new Key(route.Name, null, null, null, 401, "apikey.expired"), route.Prefix + "/{**rest}", null);
            case "nokey":
                return (new Key(route.Name, null, null, null, 401, "auth.missing"), route.Prefix + "/{**rest}", null);
            case "noise":
                return (new Key(null, null, null, null, 404, "route.unmatched"), TrafficModel.NoisePaths[random.Next(TrafficModel.NoisePaths.Length)], null);
        }

        var upstream = (long)(TrafficModel.LatencyMs(route, random) * 1000);
        var roll = random.NextDouble();
        short status = roll < TrafficModel.ServerErrorShare ? (short)500 : roll < TrafficModel.ServerErrorShare + TrafficModel.NotFoundShare ? (short)404 : (short)200;
        return (new Key(route.Name, route.Cluster, caller.HasKey ? caller.Name : null, caller.Group, status, null), route.Prefix + "/{**rest}", upstream);
    }
}
