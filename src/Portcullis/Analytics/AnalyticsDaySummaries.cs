using System.Globalization;
using DuckDB.NET.Data;

namespace Portcullis.Analytics;

/// <summary>
/// Per-day summaries of closed days (table rollup_days), so a query over weeks reads a few thousand rows per day
/// instead of every rollup row's sketch: for each closed day (ended more than the export's closing delay ago, so
/// the flusher writes no more rows into it; a row flushed later than that is missed, as by the export) the day's rollups are merged into one row per day × status × reason for each <see cref="Grain"/> (the
/// other dimensions NULL): counters summed, sketches merged bucket for bucket, so totals and percentiles are
/// exactly those of the rows they summarize. A query whose groupBy and filters are all kept by a grain reads the
/// whole days of its window that are covered from rollup_days, and only the ragged edges (and the uncovered
/// days) from rollups (<see cref="AnalyticsQuery"/>). The same transaction writes the day's per-consumer latency
/// sketches (table consumer_days, for top by consumer ordered by p99: no grain keeps the consumer). Run by the
/// maintenance job after compaction, one day per transaction; retention keeps the covered range exact (<see cref="Trim"/>).
/// </summary>
internal static class AnalyticsDaySummaries
{
    public const int MaxDaysPerRun = 7;

    /// <summary>analytics_meta: every closed day before this time (UTC, ISO 8601) is summarized in rollup_days.</summary>
    public const string UntilKey = "days.until";

    /// <summary>analytics_meta: no day before this one is covered (retention deleted part of it); absent: from the start.</summary>
    public const string FromKey = "days.from";

    /// <summary>
    /// analytics_meta: the first day summarized with its consumer sketches (consumer_days); days summarized before
    /// (by a version without them) are not covered for top by consumer. Absent: no consumer day is covered.
    /// </summary>
    public const string ConsumersFromKey = "days.consumers.from";

    /// <summary>The cover's grain for consumer_days (top by consumer ordered by p99: sketches only, counters from rollups).</summary>
    public const int ConsumerGrain = -1;

    public static readonly TimeSpan Day = TimeSpan.FromDays(1);

    /// <summary>The dimensions a grain keeps besides status and reason (its index is the rows' grain column).</summary>
    internal static readonly string[][] Grains = [[], ["route", "cluster"], ["cluster"], ["consumer_group"]];

    /// <summary>How long after a day's end it is closed: the export's closing delay (a flush interval and a minute of grace for requests in flight).</summary>
    public static TimeSpan ClosingDelay(CompiledAnalytics options) => options.FlushInterval + TimeSpan.FromMinutes(1);

    /// <summary>
    /// Summarizes the days that ended before <paramref name="closedBefore"/> and are not summarized yet (at most
    /// <paramref name="max"/>, oldest first); returns how many.
    /// </summary>
    public static int Run(DuckDBConnection connection, DateTime closedBefore, int max = MaxDaysPerRun)
    {
        var end = Floor(closedBefore);
        var cursor = Max(AnalyticsCompaction.Progress(connection, UntilKey), AnalyticsCompaction.Progress(connection, FromKey));
        // From here on every summarized day has its consumer sketches (a store summarized before them is covered from now).
        if (AnalyticsCompaction.Progress(connection, ConsumersFromKey) is null) SetMeta(connection, ConsumersFromKey, cursor);
        var done = 0;
        while (done < max)
        {
            var next = NextRow(connection, cursor, end);
            if (next is null) break;
            var day = Floor(next.Value);
            using (var transaction = connection.BeginTransaction())
            {
                Summarize(connection, day);
                SetMeta(connection, UntilKey, day + Day);
                transaction.Commit();
            }

            cursor = day + Day;
            done++;
        }

        return done;
    }

    /// <summary>
    /// Writes the summaries of one day (inside the caller's transaction), replacing any: each grain from the next
    /// finer one where it can (cluster from route × cluster, none from cluster), so the day's sketches are unnested once or twice.
    /// </summary>
    internal static void Summarize(DuckDBConnection connection, DateTime day)
    {
        Execute(connection, "DELETE FROM rollup_days WHERE minute >= $from AND minute < $to", day);
        Execute(connection, Insert(1, "rollups"), day);
        Execute(connection, Insert(2, "(SELECT * FROM rollup_days WHERE grain = 1)"), day);
        Execute(connection, Insert(0, "(SELECT * FROM rollup_days WHERE grain = 2)"), day);
        Execute(connection, Insert(3, "rollups"), day);
        Execute(connection, "DELETE FROM consumer_days WHERE minute >= $from AND minute < $to", day);
        Execute(connection, ConsumerInsert, day);
    }

    // One row per consumer (NULL: anonymous) with the day's latency buckets merged; a consumer with no buckets has no row.
    private const string ConsumerInsert = """
        INSERT INTO consumer_days
        SELECT $from::TIMESTAMP, consumer, list(b ORDER BY b), list(n ORDER BY b)
        FROM (SELECT consumer, b, sum(n)::BIGINT AS n
              FROM (SELECT consumer, unnest(latency_buckets) AS b, unnest(latency_counts) AS n FROM rollups WHERE minute >= $from AND minute < $to)
              GROUP BY ALL)
        GROUP BY ALL
        """;

    private static string Insert(int grain, string source) =>
        $"INSERT INTO rollup_days SELECT *, {grain}::TINYINT FROM ({AnalyticsCompaction.MergeSql(source, [.. Grains[grain], "status", "reason"])})";

    /// <summary>
    /// Before retention deletes rollups older than <paramref name="cutoff"/>: the day it cuts into (and every older one)
    /// leaves the covered range and loses its summaries, in one transaction, so no query sees a summary of rows that are gone.
    /// </summary>
    public static void Trim(DuckDBConnection connection, DateTime cutoff)
    {
        var from = Floor(cutoff) == cutoff ? cutoff : Floor(cutoff) + Day;
        if (AnalyticsCompaction.Progress(connection, FromKey) is { } current && current >= from) return;
        using var transaction = connection.BeginTransaction();
        SetMeta(connection, FromKey, from);
        Execute(connection, "DELETE FROM rollup_days WHERE minute < $from", from);
        Execute(connection, "DELETE FROM consumer_days WHERE minute < $from", from);
        transaction.Commit();
    }

    /// <summary>
    /// The whole days of [<paramref name="from"/>, <paramref name="to"/>) that rollup_days covers on this connection
    /// (in the caller's snapshot); null when none, or on a fleet's Parquet views (no such table).
    /// </summary>
    /// <param name="consumers">Covered in consumer_days too (from <see cref="ConsumersFromKey"/> on).</param>
    public static (DateTime From, DateTime To)? Covered(DuckDBConnection connection, DateTime from, DateTime to, bool consumers = false)
    {
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT count(*) FROM duckdb_tables() WHERE table_name IN ('rollup_days', 'consumer_days', 'analytics_meta')";
            if (Convert.ToInt64(command.ExecuteScalar(), CultureInfo.InvariantCulture) < 3) return null;
        }

        if (AnalyticsCompaction.Progress(connection, UntilKey) is not { } until) return null;
        var first = Max(Floor(from) == from ? from : Floor(from) + Day, AnalyticsCompaction.Progress(connection, FromKey));
        if (consumers)
        {
            if (AnalyticsCompaction.Progress(connection, ConsumersFromKey) is not { } consumersFrom) return null;
            first = Max(first, consumersFrom);
        }

        var last = Min(Floor(to), until);
        return first < last ? (first, last) : null;
    }

    /// <summary>The coarsest grain keeping every one of <paramref name="dimensions"/> (status and reason are in all); null: none does.</summary>
    public static int? GrainFor(IEnumerable<string> dimensions)
    {
        var needed = dimensions.Where(d => d is not ("status" or "reason")).Distinct().ToList();
        int? best = null;
        for (var g = 0; g < Grains.Length; g++)
        {
            if (needed.All(Grains[g].Contains) && (best is null || Grains[g].Length < Grains[best.Value].Length)) best = g;
        }

        return best;
    }

    private static DateTime? NextRow(DuckDBConnection connection, DateTime cursor, DateTime end)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT min(minute) FROM rollups WHERE minute >= $cursor AND minute < $end";
        command.Parameters.Add(new DuckDBParameter("cursor", cursor));
        command.Parameters.Add(new DuckDBParameter("end", end));
        return command.ExecuteScalar() is DateTime next ? DateTime.SpecifyKind(next, DateTimeKind.Utc) : null;
    }

    private static void SetMeta(DuckDBConnection connection, string key, DateTime value)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT OR REPLACE INTO analytics_meta VALUES ($key, $value)";
        command.Parameters.Add(new DuckDBParameter("key", key));
        command.Parameters.Add(new DuckDBParameter("value", value.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture)));
        command.ExecuteNonQuery();
    }

    private static void Execute(DuckDBConnection connection, string sql, DateTime from)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Parameters.Add(new DuckDBParameter("from", from));
        if (sql.Contains("$to", StringComparison.Ordinal)) command.Parameters.Add(new DuckDBParameter("to", from + Day));
        command.ExecuteNonQuery();
    }

    private static DateTime Floor(DateTime time) => new(time.Ticks - (time.Ticks % Day.Ticks), DateTimeKind.Utc);

    private static DateTime Max(DateTime? a, DateTime? b)
    {
        var (x, y) = (a ?? DateTime.UnixEpoch, b ?? DateTime.UnixEpoch);
        return x > y ? x : y;
    }

    private static DateTime Min(DateTime a, DateTime b) => a < b ? a : b;
}
