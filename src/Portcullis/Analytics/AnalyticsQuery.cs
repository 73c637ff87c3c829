using System.Text;
using DuckDB.NET.Data;

namespace Portcullis.Analytics;

/// <summary>
/// Runs the analytics queries on a connection from <see cref="AnalyticsSource"/> (the store's tables or a fleet's
/// Parquet views: the same SQL). Every value from the caller is a DuckDB parameter ($name); the only SQL text
/// that varies comes from fixed fragments chosen by enums (<see cref="AnalyticsGroup"/>, <see cref="AnalyticsOrder"/>).
/// Percentiles merge the rows' sketch buckets in SQL (sum of counts per bucket), then take the bucket of rank
/// ⌊q·(n−1)⌋ exactly as <see cref="LatencySketch.Quantile"/> does, and read its value with <see cref="LatencySketch.ValueOf"/>.
/// </summary>
internal static partial class AnalyticsQuery
{
    private const string Errors = "status >= 500";
    private const string Refused = "reason IS NOT NULL AND status < 500";

    /// <summary>
    /// At most this much memory for dense merged sketches (8.8 KB a group × step): a query needing more (e.g. top by
    /// a dimension with 10,000s of values ordered by p99) merges in SQL instead, slower but in DuckDB's bounded memory.
    /// </summary>
    internal const long MaxSketchBytes = 64L << 20;

    /// <summary>Runs the query; <paramref name="cancellation"/> interrupts DuckDB mid-query (the timeout).</summary>
    public static AnalyticsResult Run(DuckDBConnection connection, AnalyticsQueryParameters p, string source, CancellationToken cancellation = default) =>
        Run(connection, p, source, SketchMergeMode.Native, cancellation: cancellation);

    /// <param name="merge">Where the sketches are merged: in C# (<see cref="SketchMerge"/>, the default) or in SQL (the reference the tests compare with).</param>
    /// <param name="days">Read the covered whole days from the day summaries (<see cref="AnalyticsDaySummaries"/>, the default); false: every rollup row (the reference).</param>
    internal static AnalyticsResult Run(DuckDBConnection connection, AnalyticsQueryParameters p, string source, SketchMergeMode merge, bool days = true, CancellationToken cancellation = default)
    {
        cancellation.ThrowIfCancellationRequested();
        if (p.Kind == AnalyticsQueryKind.Timeseries) p = Coarsened(connection, p);
        // One snapshot for the statements of one answer (totals, then sketches), however the writer appends meanwhile.
        using var transaction = connection.BeginTransaction();
        var r = days ? Cover(connection, p) : null;
        var result = p.Kind switch
        {
            AnalyticsQueryKind.Summary => new AnalyticsResult(p, source) { Summary = Summary(connection, p, r, merge, cancellation) },
            AnalyticsQueryKind.Timeseries => new AnalyticsResult(p, source) { Series = Timeseries(connection, p, r, merge, cancellation) },
            AnalyticsQueryKind.Top => new AnalyticsResult(p, source) { Top = Top(connection, p, r, merge, cancellation) },
            _ => new AnalyticsResult(p, source) { Samples = Samples(connection, p, cancellation) },
        };
        cancellation.ThrowIfCancellationRequested();
        return result;
    }

    /// <summary>
    /// A step finer than the stored rows' resolution where the window starts (compacted to hours or days:
    /// <see cref="AnalyticsCompaction"/>) is rounded up to it, so no step shows a whole hour's or day's requests
    /// at its start and zeros after; the answer's `step` is the one used.
    /// </summary>
    internal static AnalyticsQueryParameters Coarsened(DuckDBConnection connection, AnalyticsQueryParameters p)
    {
        if (AnalyticsCompaction.ResolutionAt(connection, p.From) is not { } resolution || p.Step >= resolution) return p;
        var step = Array.Find(AnalyticsQueryParameters.Steps, s => s.Step == resolution);
        return p with { Step = step.Step, StepName = step.Name };
    }

    // DuckDB interrupts the command when the query is cancelled.
    private static CancellationTokenRegistration Interrupt(DuckDBCommand command, CancellationToken cancellation) =>
        cancellation.Register(static c => ((DuckDBCommand)c!).Cancel(), command);

    /// <summary>The column of a grouping (rollups and samples spell them alike).</summary>
    public static string Column(AnalyticsGroup group) => group switch
    {
        AnalyticsGroup.Route => "route",
        AnalyticsGroup.Cluster => "cluster",
        AnalyticsGroup.Consumer => "consumer",
        AnalyticsGroup.ConsumerGroup => "consumer_group",
        AnalyticsGroup.Status => "status",
        _ => "reason",
    };

    private static string KeyExpression(AnalyticsGroup group) => group == AnalyticsGroup.Status ? "CAST(status AS VARCHAR)" : Column(group);

    // WHERE for the time range and the filters, with their parameters added to the command.
    private static string Where(DuckDBCommand command, AnalyticsQueryParameters p, string timeColumn)
    {
        var sql = new StringBuilder($"{timeColumn} >= $from AND {timeColumn} < $to");
        command.Parameters.Add(new DuckDBParameter("from", p.From));
        command.Parameters.Add(new DuckDBParameter("to", p.To));
        foreach (var (group, value) in p.Filters)
        {
            var column = Column(group);
            if (value is null)
            {
                sql.Append(" AND ").Append(column).Append(" IS NULL");
                continue;
            }

            sql.Append(" AND ").Append(column).Append(" = $f_").Append(column);
            command.Parameters.Add(new DuckDBParameter("f_" + column, value));
        }

        if (p.Status is { } status)
        {
            sql.Append(" AND status BETWEEN $status_low AND $status_high");
            command.Parameters.Add(new DuckDBParameter("status_low", status.Low));
            command.Parameters.Add(new DuckDBParameter("status_high", status.High));
        }

        if (p.MinStatus is { } min)
        {
            sql.Append(" AND status >= $min_status");
            command.Parameters.Add(new DuckDBParameter("min_status", min));
        }

        return sql.ToString();
    }

    // Percentile buckets per group (k, i) of a relation `f` with k, i and the sketch columns: the merged
    // sketch (sum of counts per bucket), then the first bucket whose running count passes rank ⌊q·(n−1)⌋.
    private static string Percentiles(string buckets, string counts, string name) => $"""
        {name}_b AS (
            SELECT k, i, b, sum(n)::BIGINT AS n FROM (SELECT k, i, unnest({buckets}) AS b, unnest({counts}) AS n FROM f) GROUP BY k, i, b),
        {name}_c AS (
            SELECT k, i, b, sum(n) OVER (PARTITION BY k, i ORDER BY b) AS cum, sum(n) OVER (PARTITION BY k, i) AS total FROM {name}_b),
        {name} AS (
            SELECT k, i,
                   min(b) FILTER (WHERE cum > floor(0.5::DOUBLE * (total - 1)::DOUBLE)) AS p50,
                   min(b) FILTER (WHERE cum > floor(0.95::DOUBLE * (total - 1)::DOUBLE)) AS p95,
                   min(b) FILTER (WHERE cum > floor(0.99::DOUBLE * (total - 1)::DOUBLE)) AS p99,
                   max(total)::BIGINT AS measured
            FROM {name}_c GROUP BY k, i)
        """;

    private const string Sums = $"""
        sum(requests)::BIGINT AS requests,
        coalesce(sum(requests) FILTER (WHERE {Errors}), 0)::BIGINT AS errors,
        coalesce(sum(requests) FILTER (WHERE {Refused}), 0)::BIGINT AS refused,
        sum(bytes_in)::BIGINT AS bytes_in, sum(bytes_out)::BIGINT AS bytes_out,
        sum(latency_us_sum)::BIGINT AS latency_sum, sum(upstream_us_sum)::BIGINT AS upstream_sum
        """;

    private static SummaryResult Summary(DuckDBConnection connection, AnalyticsQueryParameters p, DayCover? r, SketchMergeMode merge, CancellationToken cancellation)
    {
        // Three lean scans (the totals' plain columns, then each sketch's buckets merged), not one query over
        // every column: on 30 days of rollups the list columns dominate, and each is read once.
        using var command = connection.CreateCommand();
        using var interrupt = Interrupt(command, cancellation);
        var where = Where(command, p, "minute");
        command.CommandText = $"""
            SELECT {Sums},
                   coalesce(sum(requests) FILTER (WHERE status BETWEEN 200 AND 299), 0)::BIGINT AS s2,
                   coalesce(sum(requests) FILTER (WHERE status BETWEEN 300 AND 399), 0)::BIGINT AS s3,
                   coalesce(sum(requests) FILTER (WHERE status BETWEEN 400 AND 499), 0)::BIGINT AS s4,
                   coalesce(sum(requests) FILTER (WHERE status BETWEEN 500 AND 599), 0)::BIGINT AS s5
            FROM {Rollups(command, r)} WHERE {where}
            """;
        long requests, errors, refused, bytesIn, bytesOut, latencySum, upstreamSum, s2, s3, s4, s5;
        using (var reader = command.ExecuteReader())
        {
            reader.Read();
            (requests, errors, refused, bytesIn, bytesOut, latencySum, upstreamSum) = (Long(reader, 0), Long(reader, 1), Long(reader, 2), Long(reader, 3), Long(reader, 4), Long(reader, 5), Long(reader, 6));
            (s2, s3, s4, s5) = (Long(reader, 7), Long(reader, 8), Long(reader, 9), Long(reader, 10));
        }

        long[] latency, upstream;
        if (merge == SketchMergeMode.Native)
        {
            // Both sketches in one streamed scan (the SQL merge unnests and aggregates each in a scan of its own).
            var cells = SketchMerge.Read(connection, $"SELECT latency_buckets, latency_counts, upstream_buckets, upstream_counts FROM {Rollups(command, r)} WHERE {where}",
                command.Parameters, null, 1, 2, cancellation);
            latency = cells.Get(0, 0, 0) ?? new long[LatencySketch.BucketCount];
            upstream = cells.Get(0, 0, 1) ?? new long[LatencySketch.BucketCount];
        }
        else
        {
            latency = MergedSketch(command, Rollups(command, r), where, "latency_buckets", "latency_counts");
            upstream = MergedSketch(command, Rollups(command, r), where, "upstream_buckets", "upstream_counts");
        }

        long upstreamMeasured = 0;
        foreach (var count in upstream) upstreamMeasured += count;
        var summary = new SummaryResult(requests, errors, refused, bytesIn, bytesOut,
            new Latencies(LatencySketch.Quantile(latency, 0.5), LatencySketch.Quantile(latency, 0.95), LatencySketch.Quantile(latency, 0.99), requests == 0 ? null : (double)latencySum / requests),
            upstreamMeasured == 0 ? null : new Latencies(LatencySketch.Quantile(upstream, 0.5), LatencySketch.Quantile(upstream, 0.95), LatencySketch.Quantile(upstream, 0.99), (double)upstreamSum / upstreamMeasured),
            s2, s3, s4, s5, []);

        using var reasons = connection.CreateCommand();
        using var interruptReasons = Interrupt(reasons, cancellation);
        reasons.CommandText = $"SELECT reason, sum(requests)::BIGINT AS n FROM {Rollups(reasons, r)} WHERE {Where(reasons, p, "minute")} AND reason IS NOT NULL GROUP BY reason ORDER BY n DESC, reason LIMIT 10";
        using var rows = reasons.ExecuteReader();
        var list = new List<KeyCount>();
        while (rows.Read()) list.Add(new KeyCount(rows.GetString(0), rows.GetInt64(1)));
        return summary with { Reasons = list };
    }

    // The rows' sketches merged (counts summed per bucket in SQL), dense by bucket; the command's parameters are reused.
    private static long[] MergedSketch(DuckDBCommand command, string rollups, string where, string buckets, string counts)
    {
        command.CommandText = $"SELECT b, sum(n)::BIGINT FROM (SELECT unnest({buckets}) AS b, unnest({counts}) AS n FROM {rollups} WHERE {where}) GROUP BY b";
        var dense = new long[LatencySketch.BucketCount];
        using var reader = command.ExecuteReader();
        while (reader.Read()) dense[Int(reader, 0)] += Long(reader, 1);
        return dense;
    }

    private static string OrderOf(AnalyticsOrder order) => order switch
    {
        AnalyticsOrder.Errors => "g.errors DESC, g.requests DESC",
        AnalyticsOrder.ErrorRate => "g.errors / g.requests DESC, g.requests DESC",
        AnalyticsOrder.P99 => "lat.p99 DESC NULLS LAST, g.requests DESC",
        AnalyticsOrder.BytesOut => "g.bytes_out DESC, g.requests DESC",
        _ => "g.requests DESC",
    };

    private static List<TopRow> Top(DuckDBConnection connection, AnalyticsQueryParameters p, DayCover? r, SketchMergeMode merge, CancellationToken cancellation)
    {
        // Ordered by a plain sum, only the shown groups' sketches are needed: one SQL statement choosing them and
        // merging theirs is faster than choosing them first and streaming their rows out (measured, bench/analytics-query).
        if (merge == SketchMergeMode.Sql || p.OrderBy != AnalyticsOrder.P99) return TopSql(connection, p, Counters(r), cancellation);
        using var command = connection.CreateCommand();
        using var interrupt = Interrupt(command, cancellation);
        var where = Where(command, p, "minute");
        var key = KeyExpression(p.GroupBy!.Value);
        // Every group's totals (the order is known only once each group's sketch is merged), then every row's list.
        command.CommandText = $"""
            SELECT k, {Sums} FROM (SELECT {key} AS k, requests, status, reason, bytes_in, bytes_out, latency_us_sum, upstream_us_sum FROM {Rollups(command, Counters(r))} WHERE {where}) GROUP BY k
            """;
        var totals = new List<(string? Key, long Requests, long Errors, long Refused, long BytesIn, long BytesOut)>();
        var groups = new Dictionary<string, int>(StringComparer.Ordinal);
        using (var reader = command.ExecuteReader())
        {
            while (reader.Read())
            {
                var k = reader.IsDBNull(0) ? null : reader.GetString(0);
                groups[k ?? SketchMerge.NullKey] = totals.Count;
                totals.Add((k, Long(reader, 1), Long(reader, 2), Long(reader, 3), Long(reader, 4), Long(reader, 5)));
            }
        }

        if (SketchCells.MaxBytes(totals.Count) > MaxSketchBytes) return TopSql(connection, p, Counters(r), cancellation);
        var cells = SketchMerge.Read(connection, $"SELECT {key} AS k, latency_buckets, latency_counts FROM {Rollups(command, r)} WHERE {where}",
            command.Parameters, groups, 1, 1, cancellation);
        var rows = new List<TopRow>(totals.Count);
        for (var i = 0; i < totals.Count; i++)
        {
            var t = totals[i];
            rows.Add(new TopRow(t.Key, t.Requests, t.Errors, t.Refused, t.BytesIn, t.BytesOut, cells.Quantile(i, 0, 0.5), cells.Quantile(i, 0, 0.95), cells.Quantile(i, 0, 0.99)));
        }

        // As the SQL orders: p99 descending (nothing measured last), then requests, then the key (the none group last).
        return rows
            .OrderByDescending(r => r.P99 ?? double.NegativeInfinity).ThenByDescending(r => r.Requests)
            .ThenBy(r => r.Key is null).ThenBy(r => r.Key, StringComparer.Ordinal)
            .Take(p.Limit).ToList();
    }

    // The merge in SQL: unnest every row's lists and sum per (group, bucket); the reference for SketchMerge and its fallback.
    private static List<TopRow> TopSql(DuckDBConnection connection, AnalyticsQueryParameters p, DayCover? r, CancellationToken cancellation)
    {
        using var command = connection.CreateCommand();
        using var interrupt = Interrupt(command, cancellation);
        var where = Where(command, p, "minute");
        var order = OrderOf(p.OrderBy);
        command.Parameters.Add(new DuckDBParameter("limit", p.Limit));
        // Ordered by a plain sum, only the shown groups' sketches are merged (unnesting every group's is the expensive part).
        command.CommandText = $"""
            WITH a AS NOT MATERIALIZED (SELECT {KeyExpression(p.GroupBy!.Value)} AS k, 0 AS i, requests, status, reason, bytes_in, bytes_out, latency_us_sum, upstream_us_sum, latency_buckets, latency_counts FROM {Rollups(command, r)} WHERE {where}),
            g AS (SELECT k, {Sums} FROM a GROUP BY k),
            {(p.OrderBy == AnalyticsOrder.P99
                ? "f AS NOT MATERIALIZED (SELECT * FROM a),"
                : $"chosen AS (SELECT k FROM g ORDER BY {order}, g.k NULLS LAST LIMIT $limit),\n f AS NOT MATERIALIZED (SELECT a.* FROM a JOIN chosen ON a.k IS NOT DISTINCT FROM chosen.k),")}
            {Percentiles("latency_buckets", "latency_counts", "lat")}
            SELECT g.k, g.requests, g.errors, g.refused, g.bytes_in, g.bytes_out, lat.p50, lat.p95, lat.p99
            FROM g LEFT JOIN lat ON g.k IS NOT DISTINCT FROM lat.k
            ORDER BY {order}, g.k NULLS LAST
            LIMIT $limit
            """;
        using var reader = command.ExecuteReader();
        var rows = new List<TopRow>();
        while (reader.Read())
        {
            rows.Add(new TopRow(reader.IsDBNull(0) ? null : reader.GetString(0), Long(reader, 1), Long(reader, 2), Long(reader, 3), Long(reader, 4), Long(reader, 5),
                Value(reader, 6), Value(reader, 7), Value(reader, 8)));
        }

        return rows;
    }

    // " WHERE k IN ($k0, …)" for the groups already chosen (each key a bound parameter, at most 1000), so the sketch
    // query reads only their rows without computing the choice again; the none group as "k IS NULL".
    private static string KeyIn(DuckDBCommand command, Dictionary<string, int> groups)
    {
        var sql = new StringBuilder(" WHERE k IN (NULL");
        var none = false;
        foreach (var key in groups.Keys)
        {
            if (key == SketchMerge.NullKey)
            {
                none = true;
                continue;
            }

            var name = "k" + command.Parameters.Count.ToString(System.Globalization.CultureInfo.InvariantCulture);
            sql.Append(", $").Append(name);
            command.Parameters.Add(new DuckDBParameter(name, key));
        }

        return sql.Append(none ? ") OR k IS NULL" : ")").ToString();
    }

    private static DateTime StepStart(long step, TimeSpan size) => DateTime.UnixEpoch.AddTicks(step * size.Ticks);

    private static string? Text(DuckDBDataReader reader, int i) => reader.IsDBNull(i) ? null : reader.GetString(i);

    private static int Int(DuckDBDataReader reader, int i) => Convert.ToInt32(reader.GetValue(i), System.Globalization.CultureInfo.InvariantCulture);

    private static long Long(DuckDBDataReader reader, int i) => reader.IsDBNull(i) ? 0 : Convert.ToInt64(reader.GetValue(i), System.Globalization.CultureInfo.InvariantCulture);

    // A merged sketch's bucket as microseconds.
    private static double? Value(DuckDBDataReader reader, int i) => reader.IsDBNull(i) ? null : LatencySketch.ValueOf(Int(reader, i));
}
