using Portcullis.Analytics;

namespace Portcullis.Testing;

/// <summary>One rollup row as a test writes it: the requests it counts, each with its latency (µs).</summary>
internal sealed record GeneratedRollup(
    DateTime Minute, string? Route, string? Cluster, string? Consumer, string? ConsumerGroup, short Status, string? Reason,
    long[] LatenciesUs, long[]? UpstreamUs, long BytesIn, long BytesOut)
{
    public long Requests => LatenciesUs.Length;
}

/// <summary>
/// Test data for the analytics readers (query API, CLI, dashboard): rollup and sample rows written into a real
/// DuckDB store through the Appender, with <see cref="AnalyticsSchema"/>'s columns, as the flusher writes them.
/// It keeps every row it wrote, so a test computes what a query must answer from the same data in memory.
/// Linked into both test projects (tests/Shared).
/// </summary>
internal sealed class AnalyticsDataGenerator
{
    private readonly List<GeneratedRollup> _pending = [];
    private readonly List<SampleRow> _pendingSamples = [];

    public List<GeneratedRollup> Rollups { get; } = [];

    public List<SampleRow> Samples { get; } = [];

    public AnalyticsDataGenerator Rollup(DateTime minute, string? route, string? consumer, short status, string? reason, long[] latenciesUs,
        string? cluster = null, string? consumerGroup = null, long[]? upstreamUs = null, long bytesIn = 0, long bytesOut = 0)
    {
        _pending.Add(new GeneratedRollup(minute, route, cluster, consumer, consumerGroup, status, reason, latenciesUs, upstreamUs, bytesIn, bytesOut));
        return this;
    }

    public AnalyticsDataGenerator Sample(DateTime ts, string requestId, string? route, string? consumer, short status, string? reason = null,
        string path = "/", long latencyUs = 1000, long? upstreamUs = null, string? cluster = null, string? consumerGroup = null)
    {
        _pendingSamples.Add(new SampleRow(ts, requestId, "0af7651916cd43dd8448eb211c80319c", route, cluster, consumer, consumerGroup, "192.0.2.1", "GET",
            "api.example.test", path, status, reason, consumer is null ? null : "apikey.valid", "admitted", 1, 10, 200, latencyUs, upstreamUs));
        return this;
    }

    /// <summary>
    /// Random but reproducible traffic over <paramref name="minutes"/> minutes from <paramref name="start"/>:
    /// routes, consumers (with their groups), statuses and reasons in realistic shares, log-normal-ish latencies.
    /// </summary>
    public AnalyticsDataGenerator Traffic(DateTime start, int minutes, int rowsPerMinute, int seed = 1)
    {
        string?[] routes = ["orders", "users", "search", "payments", null];
        (string? Consumer, string? Group)[] consumers = [("alice", "gold"), ("bob", "free"), ("carol", "gold"), (null, null)];
        (short Status, string? Reason)[] outcomes = [(200, null), (200, null), (200, null), (201, null), (304, null), (401, "auth.missing"), (429, "ratelimit.exceeded"), (503, "upstream.unavailable"), (500, null)];
        var random = new Random(seed);
        for (var m = 0; m < minutes; m++)
        {
            for (var r = 0; r < rowsPerMinute; r++)
            {
                var route = routes[random.Next(routes.Length)];
                var (consumer, group) = consumers[random.Next(consumers.Length)];
                var (status, reason) = route is null ? ((short)404, "route.unmatched") : outcomes[random.Next(outcomes.Length)];
                var latencies = new long[random.Next(1, 30)];
                for (var i = 0; i < latencies.Length; i++) latencies[i] = (long)(Math.Exp(random.NextDouble() * Math.Log(20_000)) * 50);
                var proxied = route is not null && reason is not ("auth.missing" or "ratelimit.exceeded");
                Rollup(start.AddMinutes(m), route, consumer, status, reason, latencies, cluster: route is null ? null : route + "-cluster", consumerGroup: group,
                    upstreamUs: proxied ? latencies.Select(l => l / 2).ToArray() : null, bytesIn: random.Next(0, 5000), bytesOut: random.Next(0, 50_000));
            }
        }

        return this;
    }

    /// <summary>Appends the rows added since the last write.</summary>
    public void WriteTo(AnalyticsDatabase database)
    {
        using var connection = database.OpenConnection();
        WriteTo(connection);
    }

    public void WriteTo(DuckDB.NET.Data.DuckDBConnection connection)
    {
        using (var appender = connection.CreateAppender(AnalyticsSchema.Rollups))
        {
            foreach (var row in _pending)
            {
                var (buckets, counts) = Sparse(row.LatenciesUs);
                var (upBuckets, upCounts) = Sparse(row.UpstreamUs ?? []);
                appender.CreateRow()
                    .AppendValue(row.Minute).AppendValue(row.Route).AppendValue(row.Cluster).AppendValue(row.Consumer).AppendValue(row.ConsumerGroup)
                    .AppendValue(row.Status).AppendValue(row.Reason).AppendValue(row.Requests).AppendValue(row.BytesIn).AppendValue(row.BytesOut)
                    .AppendValue(row.LatenciesUs.Sum()).AppendValue(row.UpstreamUs?.Sum() ?? 0L)
                    .AppendValue(buckets).AppendValue(counts).AppendValue(upBuckets).AppendValue(upCounts)
                    .EndRow();
            }
        }

        using (var appender = connection.CreateAppender(AnalyticsSchema.Samples))
        {
            foreach (var s in _pendingSamples)
            {
                appender.CreateRow()
                    .AppendValue(s.Ts).AppendValue(s.RequestId).AppendValue(s.TraceId).AppendValue(s.Route).AppendValue(s.Cluster).AppendValue(s.Consumer)
                    .AppendValue(s.ConsumerGroup).AppendValue(s.Client).AppendValue(s.Method).AppendValue(s.Host).AppendValue(s.Path).AppendValue((short)s.Status)
                    .AppendValue(s.Reason).AppendValue(s.Auth).AppendValue(s.Traffic).AppendValue((sbyte)s.Attempts).AppendValue(s.BytesIn).AppendValue(s.BytesOut)
                    .AppendValue(s.LatencyUs).AppendValue(s.UpstreamUs)
                    .EndRow();
            }
        }

        Rollups.AddRange(_pending);
        Samples.AddRange(_pendingSamples);
        _pending.Clear();
        _pendingSamples.Clear();
    }

    /// <summary>The dense merged sketch of the latencies of <paramref name="rows"/> (what a query's percentiles must come from).</summary>
    public static long[] Dense(IEnumerable<GeneratedRollup> rows, bool upstream = false)
    {
        var dense = new long[LatencySketch.BucketCount];
        foreach (var row in rows)
        {
            foreach (var latency in (upstream ? row.UpstreamUs : row.LatenciesUs) ?? []) dense[LatencySketch.BucketOf(latency)]++;
        }

        return dense;
    }

    private static (List<short> Buckets, List<long> Counts) Sparse(long[] latencies)
    {
        var sketch = new SortedDictionary<short, long>();
        foreach (var latency in latencies)
        {
            var bucket = (short)LatencySketch.BucketOf(latency);
            sketch[bucket] = sketch.GetValueOrDefault(bucket) + 1;
        }

        return ([.. sketch.Keys], [.. sketch.Values]);
    }
}
