using System.Globalization;
using DuckDB.NET.Data;

namespace Portcullis.Analytics;

/// <summary>
/// Tiered rollups (like RRD or Graphite retention tiers), run by the maintenance job after retention: minute rows
/// older than analytics.compaction.hourlyAfter are merged into one row per hour × key (minute = the hour's start),
/// rows older than dailyAfter into one row per day × key. Counters are summed and sketches merged bucket for
/// bucket, so totals and percentiles stay exactly what they were; only the time resolution becomes coarser.
/// Each hour or day is one transaction (merged rows into a temp table, the range deleted, the merged rows
/// inserted, the progress written), so a crash leaves either the old rows or the merged ones, and re-running a
/// range yields the same rows. The progress (analytics_meta) makes each run touch only new ranges; a run does at
/// most <see cref="MaxHoursPerRun"/> hours and <see cref="MaxDaysPerRun"/> days, so a backlog never stalls the writer.
/// </summary>
internal static class AnalyticsCompaction
{
    public const int MaxHoursPerRun = 48;
    public const int MaxDaysPerRun = 3;

    /// <summary>analytics_meta: every row before this time (UTC, ISO 8601) is at most one per hour × key.</summary>
    public const string HourlyKey = "compaction.hourly";

    /// <summary>analytics_meta: every row before this time is at most one per day × key.</summary>
    public const string DailyKey = "compaction.daily";

    public static readonly TimeSpan Hour = TimeSpan.FromHours(1);
    public static readonly TimeSpan Day = TimeSpan.FromDays(1);

    private static readonly string[] Key = ["route", "cluster", "consumer", "consumer_group", "status", "reason"];

    /// <summary>Compacts what is due at <paramref name="now"/>; returns the hours and days merged.</summary>
    public static (int Hours, int Days) Run(DuckDBConnection connection, CompiledAnalytics options, DateTimeOffset now,
        int maxHours = MaxHoursPerRun, int maxDays = MaxDaysPerRun)
    {
        var hourEnd = Floor(now.UtcDateTime - options.HourlyAfter, Hour);
        // An hour the export has not written yet keeps its minutes (the export fell behind: the files stay per minute).
        if (options.ExportPath is not null) hourEnd = Min(hourEnd, ExportedUntil(connection));
        var hours = Compact(connection, HourlyKey, hourEnd, Hour, maxHours);
        // Days whose hours are all compacted already: each day then merges at most 24 rows per key.
        var dayEnd = Min(Floor(now.UtcDateTime - options.DailyAfter, Day), Floor(Progress(connection, HourlyKey) ?? DateTime.MinValue, Day));
        var days = Compact(connection, DailyKey, dayEnd, Day, maxDays);
        return (hours, days);
    }

    /// <summary>The progress of a tier: rows before it are merged to that tier's resolution (null: nothing yet).</summary>
    public static DateTime? Progress(DuckDBConnection connection, string key)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT value FROM analytics_meta WHERE key = $key";
        command.Parameters.Add(new DuckDBParameter("key", key));
        return command.ExecuteScalar() is string text
            ? DateTime.Parse(text, CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal)
            : null;
    }

    /// <summary>
    /// The resolution of the rows at <paramref name="time"/> on this connection: 1d or 1h where a tier's progress
    /// is past it, else null (per minute). Null on a fleet's Parquet views (exported per minute, never compacted).
    /// </summary>
    public static TimeSpan? ResolutionAt(DuckDBConnection connection, DateTime time)
    {
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'analytics_meta'";
            if (Convert.ToInt64(command.ExecuteScalar(), CultureInfo.InvariantCulture) == 0) return null;
        }

        if (Progress(connection, DailyKey) is { } daily && time < daily) return Day;
        if (Progress(connection, HourlyKey) is { } hourly && time < hourly) return Hour;
        return null;
    }

    private static int Compact(DuckDBConnection connection, string key, DateTime end, TimeSpan size, int max)
    {
        var cursor = Progress(connection, key);
        var merged = 0;
        while (merged < max)
        {
            var next = NextRow(connection, cursor, end);
            // Nothing left before the end. The progress stays at the last merged range (it tells readers where the
            // coarse rows end; a gap costs one min() next time), and an idle store writes nothing.
            if (next is null) break;

            var start = Floor(next.Value, size);
            using (var transaction = connection.BeginTransaction())
            {
                Merge(connection, start, start + size);
                SetProgress(connection, key, start + size);
                transaction.Commit();
            }

            cursor = start + size;
            merged++;
        }

        return merged;
    }

    // The oldest row in [cursor, end), so a gap in the data is skipped in one step.
    private static DateTime? NextRow(DuckDBConnection connection, DateTime? cursor, DateTime end)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT min(minute) FROM rollups WHERE minute >= $cursor AND minute < $end";
        command.Parameters.Add(new DuckDBParameter("cursor", cursor ?? DateTime.UnixEpoch));
        command.Parameters.Add(new DuckDBParameter("end", end));
        return command.ExecuteScalar() is DateTime next ? DateTime.SpecifyKind(next, DateTimeKind.Utc) : null;
    }

    /// <summary>Merges the rows of [from, to) into one per key at <paramref name="from"/> (inside the caller's transaction).</summary>
    internal static void Merge(DuckDBConnection connection, DateTime from, DateTime to)
    {
        Execute(connection, $"CREATE OR REPLACE TEMP TABLE compacted AS {MergeSql("rollups", Key)}", from, to);
        Execute(connection, "DELETE FROM rollups WHERE minute >= $from AND minute < $to", from, to);
        Execute(connection, "INSERT INTO rollups SELECT * FROM compacted");
        Execute(connection, "DROP TABLE compacted");
    }

    /// <summary>
    /// A SELECT of rollups' columns: the rows of <paramref name="source"/> (a table or parenthesized query with rollups'
    /// columns) in [$from, $to) merged into one per <paramref name="keys"/> at $from (counters summed, sketches merged
    /// bucket for bucket); the dimensions not in <paramref name="keys"/> are NULL (AnalyticsDaySummaries' coarser rows).
    /// </summary>
    internal static string MergeSql(string source, string[] keys)
    {
        var key = string.Join(", ", keys);
        string On(string other) => string.Join(" AND ", keys.Select(c => $"t.{c} IS NOT DISTINCT FROM {other}.{c}"));
        string Sketch(string name, string buckets, string counts) => $"""
            {name}_b AS (SELECT {key}, b, sum(n)::BIGINT AS n FROM (SELECT {key}, unnest({buckets}) AS b, unnest({counts}) AS n FROM src) GROUP BY ALL),
            {name} AS (SELECT {key}, list(b ORDER BY b) AS buckets, list(n ORDER BY b) AS counts FROM {name}_b GROUP BY ALL)
            """;
        return $"""
            WITH src AS (SELECT * FROM {source} WHERE minute >= $from AND minute < $to),
            t AS (SELECT {key}, sum(requests)::BIGINT AS requests, sum(bytes_in)::BIGINT AS bytes_in, sum(bytes_out)::BIGINT AS bytes_out,
                         sum(latency_us_sum)::BIGINT AS latency_us_sum, sum(upstream_us_sum)::BIGINT AS upstream_us_sum FROM src GROUP BY ALL),
            {Sketch("l", "latency_buckets", "latency_counts")},
            {Sketch("u", "upstream_buckets", "upstream_counts")}
            SELECT $from::TIMESTAMP AS minute, {string.Join(", ", Key.Select(c => keys.Contains(c) ? "t." + c : c == "status" ? "NULL::SMALLINT" : $"NULL::VARCHAR AS {c}"))},
                   t.requests, t.bytes_in, t.bytes_out, t.latency_us_sum, t.upstream_us_sum,
                   coalesce(l.buckets, []::SMALLINT[]), coalesce(l.counts, []::BIGINT[]),
                   coalesce(u.buckets, []::SMALLINT[]), coalesce(u.counts, []::BIGINT[])
            FROM t LEFT JOIN l ON {On("l")} LEFT JOIN u ON {On("u")}
            """;
    }

    // The hour after the newest one the export handled (nothing before the export's first run).
    private static DateTime ExportedUntil(DuckDBConnection connection)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'analytics_exports'";
        if (Convert.ToInt64(command.ExecuteScalar(), CultureInfo.InvariantCulture) == 0) return DateTime.MinValue;
        command.CommandText = "SELECT max(hour) FROM analytics_exports";
        return command.ExecuteScalar() is DateTime hour ? DateTime.SpecifyKind(hour, DateTimeKind.Utc) + Hour : DateTime.MinValue;
    }

    private static void SetProgress(DuckDBConnection connection, string key, DateTime value)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT OR REPLACE INTO analytics_meta VALUES ($key, $value)";
        command.Parameters.Add(new DuckDBParameter("key", key));
        command.Parameters.Add(new DuckDBParameter("value", value.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture)));
        command.ExecuteNonQuery();
    }

    private static void Execute(DuckDBConnection connection, string sql, DateTime? from = null, DateTime? to = null)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        if (from is { } f) command.Parameters.Add(new DuckDBParameter("from", f));
        if (to is { } t) command.Parameters.Add(new DuckDBParameter("to", t));
        command.ExecuteNonQuery();
    }

    private static DateTime Floor(DateTime time, TimeSpan size) =>
        time.Ticks < size.Ticks ? DateTime.MinValue : new DateTime(time.Ticks - (time.Ticks % size.Ticks), DateTimeKind.Utc);

    private static DateTime Min(DateTime a, DateTime b) => a < b ? a : b;
}
