using DuckDB.NET.Data;

namespace Portcullis.Analytics;

/// <summary>The time-series and samples answers of <see cref="AnalyticsQuery"/> (summary and top are in AnalyticsQuery.cs).</summary>
internal static partial class AnalyticsQuery
{
    private static List<Series> Timeseries(DuckDBConnection connection, AnalyticsQueryParameters p, DayCover? r, SketchMergeMode merge, CancellationToken cancellation)
    {
        using var command = connection.CreateCommand();
        using var interrupt = Interrupt(command, cancellation);
        var where = Where(command, p, "minute");
        var first = AnalyticsQueryParameters.FirstStep(p.From, p.Step);
        var count = (int)AnalyticsQueryParameters.Points(p.From, p.To, p.Step);
        command.Parameters.Add(new DuckDBParameter("step_us", p.Step.Ticks / 10));
        command.Parameters.Add(new DuckDBParameter("first", first));
        command.Parameters.Add(new DuckDBParameter("limit", p.Limit));
        var key = p.GroupBy is { } group ? KeyExpression(group) : "'all'";
        var groupsSql = $"""
            r AS NOT MATERIALIZED (SELECT {key} AS k, (epoch_us(minute) // $step_us - $first)::INTEGER AS i, requests, status, reason, bytes_in, bytes_out, latency_us_sum, upstream_us_sum, latency_buckets, latency_counts FROM {Rollups(command, r)} WHERE {where}),
            top AS (SELECT k, sum(requests)::BIGINT AS n FROM r GROUP BY k ORDER BY n DESC, k NULLS LAST LIMIT $limit),
            f AS NOT MATERIALIZED (SELECT r.* FROM r JOIN top ON r.k IS NOT DISTINCT FROM top.k),
            g AS (SELECT k, i, {Sums} FROM f GROUP BY k, i)
            """;
        command.CommandText = merge == SketchMergeMode.Sql
            ? $"""
              WITH {groupsSql},
              {Percentiles("latency_buckets", "latency_counts", "lat")}
              SELECT g.k, g.i, g.requests, g.errors, g.refused, lat.p50, lat.p99, top.n
              FROM g JOIN top ON g.k IS NOT DISTINCT FROM top.k LEFT JOIN lat ON g.k IS NOT DISTINCT FROM lat.k AND g.i = lat.i
              """
            : $"WITH {groupsSql} SELECT g.k, g.i, g.requests, g.errors, g.refused, NULL, NULL, top.n FROM g JOIN top ON g.k IS NOT DISTINCT FROM top.k";
        var cellsRead = new List<(string? Key, int I, long Requests, long Errors, long Refused, double? P50, double? P99, long Total)>();
        using (var reader = command.ExecuteReader())
        {
            while (reader.Read())
            {
                cellsRead.Add((reader.IsDBNull(0) ? null : reader.GetString(0), Convert.ToInt32(reader.GetValue(1), System.Globalization.CultureInfo.InvariantCulture),
                    Long(reader, 2), Long(reader, 3), Long(reader, 4), Value(reader, 5), Value(reader, 6), Long(reader, 7)));
            }
        }

        var groups = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var c in cellsRead) groups.TryAdd(c.Key ?? SketchMerge.NullKey, groups.Count);
        if (merge == SketchMergeMode.Native && cellsRead.Count > 0)
        {
            if (SketchCells.MaxBytes(cellsRead.Count) > MaxSketchBytes) return Timeseries(connection, p, r, SketchMergeMode.Sql, cancellation);
            // The shown groups' rows again within this snapshot: only their sketch lists, merged per group and step.
            var grouped = p.GroupBy is not null;
            var cells = SketchMerge.Read(connection,
                $"SELECT {(grouped ? "k, " : "")}{(count > 1 ? "i, " : "")}latency_buckets, latency_counts FROM (SELECT {key} AS k, (epoch_us(minute) // $step_us - $first)::INTEGER AS i, latency_buckets, latency_counts FROM {Rollups(command, r)} WHERE {where}){(grouped ? KeyIn(command, groups) : "")}",
                command.Parameters, grouped ? groups : null, count, 1, cancellation);
            for (var n = 0; n < cellsRead.Count; n++)
            {
                var c = cellsRead[n];
                if ((uint)c.I >= (uint)count) continue;
                var g = grouped ? groups[c.Key ?? SketchMerge.NullKey] : 0;
                cellsRead[n] = c with { P50 = cells.Quantile(g, count > 1 ? c.I : 0, 0.5), P99 = cells.Quantile(g, count > 1 ? c.I : 0, 0.99) };
            }
        }

        var byKey = new Dictionary<string, (string? Key, long Total, SeriesPoint?[] Points)>(StringComparer.Ordinal);
        foreach (var c in cellsRead)
        {
            if (!byKey.TryGetValue(c.Key ?? SketchMerge.NullKey, out var series))
            {
                series = (c.Key, c.Total, new SeriesPoint?[count]);
                byKey[c.Key ?? SketchMerge.NullKey] = series;
            }

            if ((uint)c.I < (uint)count) series.Points[c.I] = new SeriesPoint(StepStart(first + c.I, p.Step), c.Requests, c.Errors, c.Refused, c.P50, c.P99);
        }

        // Without a group there is always the one series "all", even with no data.
        if (p.GroupBy is null && byKey.Count == 0) byKey["all"] = ("all", 0, new SeriesPoint?[count]);
        return byKey.Values
            .OrderByDescending(s => s.Total).ThenBy(s => s.Key is null).ThenBy(s => s.Key, StringComparer.Ordinal)
            .Select(s => new Series(s.Key, s.Points.Select((point, i) => point ?? new SeriesPoint(StepStart(first + i, p.Step), 0, 0, 0, null, null)).ToArray()))
            .ToList();
    }

    private static List<SampleRow> Samples(DuckDBConnection connection, AnalyticsQueryParameters p, CancellationToken cancellation)
    {
        using var command = connection.CreateCommand();
        using var interrupt = Interrupt(command, cancellation);
        var where = Where(command, p, "ts");
        command.Parameters.Add(new DuckDBParameter("limit", p.Limit));
        command.CommandText = $"""
            SELECT ts, request_id, trace_id, route, cluster, consumer, consumer_group, client, method, host, path, status, reason, auth, traffic,
                   attempts, bytes_in, bytes_out, latency_us, upstream_us
            FROM samples WHERE {where}
            ORDER BY ts DESC, request_id
            LIMIT $limit
            """;
        using var reader = command.ExecuteReader();
        var rows = new List<SampleRow>();
        while (reader.Read())
        {
            rows.Add(new SampleRow(DateTime.SpecifyKind(reader.GetDateTime(0), DateTimeKind.Utc), reader.GetString(1), Text(reader, 2), Text(reader, 3), Text(reader, 4),
                Text(reader, 5), Text(reader, 6), Text(reader, 7), reader.GetString(8), Text(reader, 9), reader.GetString(10), Int(reader, 11), Text(reader, 12),
                Text(reader, 13), Text(reader, 14), Int(reader, 15), Long(reader, 16), Long(reader, 17), Long(reader, 18), reader.IsDBNull(19) ? null : Long(reader, 19)));
        }

        return rows;
    }
}
