using DuckDB.NET.Data;
using Microsoft.Extensions.Logging;

namespace Portcullis.Analytics;

/// <summary>
/// Retention by age and by size, run by the writer on its own connection between flushes (at start, then
/// every <see cref="Interval"/>): rows older than analytics.retention are deleted; while the data takes more
/// than analytics.maxSize, the oldest hour is deleted, then the database is checkpointed. DuckDB reuses the
/// freed blocks for new rows (and gives back free blocks at the end of the file on checkpoint), so the file
/// stops growing at about maxSize (docs/analytics.md, "Retention and size"). The tiered rollups are compacted
/// (<see cref="AnalyticsCompaction"/>) and closed days summarized (<see cref="AnalyticsDaySummaries"/>) and the size
/// cap is checked again after them, so it counts every table as the job leaves them.
/// </summary>
internal sealed partial class AnalyticsMaintenance(AnalyticsDatabase database, ILogger logger)
{
    internal static readonly TimeSpan Interval = TimeSpan.FromMinutes(5);

    /// <summary>Deleting by size stops once the data is below this share of maxSize (room until the next run).</summary>
    internal const double SizeTarget = 0.8;

    private DateTimeOffset _nextRun = DateTimeOffset.MinValue;

    public long RowsDeletedByAge { get; private set; }

    public long RowsDeletedBySize { get; private set; }

    /// <summary>After a flush: the whole job when due; the size cap at once when the file is above maxSize (a stat, no query).</summary>
    public void RunIfDue(DuckDBConnection connection, CompiledAnalytics options, DateTimeOffset now)
    {
        if (now >= _nextRun)
        {
            Run(connection, options, now);
            _nextRun = now + Interval;
        }
        else if (FileSize(database.Path) > options.MaxSize)
        {
            CapSize(connection, options);
        }

        // The WAL holds every flush since the last checkpoint (DuckDB's own trigger is 16 MiB): bounded to a
        // share of maxSize, so the file plus WAL stays near the cap instead of carrying a large unmerged tail.
        if (WalSize(database.Path) > WalLimit(options)) Execute(connection, "CHECKPOINT");
    }

    /// <summary>The WAL size that triggers a checkpoint after a flush: 1/16 of maxSize, at most DuckDB's default 16 MiB.</summary>
    internal static long WalLimit(CompiledAnalytics options) => Math.Min(16L << 20, options.MaxSize / 16);

    /// <summary>Deletes what is older than the retention, then the oldest hours while the data is above maxSize.</summary>
    internal void Run(DuckDBConnection connection, CompiledAnalytics options, DateTimeOffset now)
    {
        var cutoff = (now - options.Retention).UtcDateTime;
        var deleted = DeleteBefore(connection, cutoff);
        deleted += DeleteArrivalsBefore(connection, (now - options.ArrivalRetention).UtcDateTime);
        RowsDeletedByAge += deleted;
        if (deleted > 0)
        {
            LogRetention(logger, deleted, cutoff);
            Execute(connection, "CHECKPOINT");
        }

        CapSize(connection, options);

        var (hours, days) = AnalyticsCompaction.Run(connection, options, now);
        HoursCompacted += hours;
        DaysCompacted += days;
        if (hours + days > 0) LogCompacted(logger, hours, days);
        var summarized = AnalyticsDaySummaries.Run(connection, now.UtcDateTime - AnalyticsDaySummaries.ClosingDelay(options));
        DaysSummarized += summarized;
        if (summarized > 0) LogSummarized(logger, summarized);

        // Again once they are written, so the day summaries count too (consumer_days can be as large as a day's rollups
        // when most consumers call once): the data is below maxSize when the job ends; the trim deletes them with the oldest hours.
        CapSize(connection, options);
    }

    /// <summary>Closed days summarized into rollup_days since start (AnalyticsDaySummaries).</summary>
    public long DaysSummarized { get; private set; }

    /// <summary>Hours of minute rows and days of hourly rows merged since start (tiered rollups).</summary>
    public long HoursCompacted { get; private set; }

    public long DaysCompacted { get; private set; }

    private void CapSize(DuckDBConnection connection, CompiledAnalytics options)
    {
        // The file, not only the data in it: DuckDB keeps freed blocks inside the file for reuse.
        if (FileSize(database.Path) <= options.MaxSize && UsedBytes(connection, database.Path) <= options.MaxSize) return;
        var target = (long)(options.MaxSize * SizeTarget);
        while (UsedBytes(connection, database.Path) > target && Oldest(connection) is { } oldest)
        {
            // Whole hours, oldest first: the hour after the oldest row's.
            var before = new DateTime(oldest.Ticks - (oldest.Ticks % TimeSpan.TicksPerHour) + TimeSpan.TicksPerHour, DateTimeKind.Utc);
            var rows = DeleteBefore(connection, before);
            RowsDeletedBySize += rows;
            LogSizeCap(logger, rows, before, options.MaxSize);
            Execute(connection, "CHECKPOINT");
        }

    }

    private static long DeleteBefore(DuckDBConnection connection, DateTime cutoff)
    {
        // The day summaries of the days the cutoff cuts into go first, so no query reads a summary of deleted rows.
        AnalyticsDaySummaries.Trim(connection, cutoff);
        long rows = 0;
        foreach (var sql in (string[])["DELETE FROM rollups WHERE minute < $cutoff", "DELETE FROM samples WHERE ts < $cutoff", "DELETE FROM arrivals WHERE minute < $cutoff"])
        {
            using var command = connection.CreateCommand();
            command.CommandText = sql;
            command.Parameters.Add(new DuckDBParameter("cutoff", cutoff));
            rows += command.ExecuteNonQuery();
        }

        return rows;
    }

    // The advisor's arrivals have their own, shorter retention (advice.window).
    private static long DeleteArrivalsBefore(DuckDBConnection connection, DateTime cutoff)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "DELETE FROM arrivals WHERE minute < $cutoff";
        command.Parameters.Add(new DuckDBParameter("cutoff", cutoff));
        return command.ExecuteNonQuery();
    }

    private static DateTime? Oldest(DuckDBConnection connection)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT least((SELECT min(minute) FROM rollups), (SELECT min(ts) FROM samples))";
        var value = command.ExecuteScalar();
        return value is DateTime oldest ? DateTime.SpecifyKind(oldest, DateTimeKind.Utc) : null;
    }

    /// <summary>Bytes in use by the data: DuckDB's used blocks (the file can be larger by blocks it keeps free for reuse) plus the WAL.</summary>
    internal static long UsedBytes(DuckDBConnection connection, string path)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT block_size, used_blocks FROM pragma_database_size() WHERE database_name = current_database()";
        using var reader = command.ExecuteReader();
        if (!reader.Read()) return FileSize(path);
        return (Convert.ToInt64(reader.GetValue(0)) * Convert.ToInt64(reader.GetValue(1))) + WalSize(path);
    }

    /// <summary>The store file plus its WAL.</summary>
    internal static long FileSize(string path)
    {
        var file = new FileInfo(path);
        return (file.Exists ? file.Length : 0) + WalSize(path);
    }

    private static long WalSize(string path)
    {
        var wal = new FileInfo(path + ".wal");
        return wal.Exists ? wal.Length : 0;
    }

    private static void Execute(DuckDBConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    [LoggerMessage(EventId = 8210, Level = LogLevel.Information, Message = "Analytics retention: deleted {Rows} rows older than {Cutoff:O}")]
    private static partial void LogRetention(ILogger logger, long rows, DateTime cutoff);

    [LoggerMessage(EventId = 8212, Level = LogLevel.Debug, Message = "Analytics compaction: merged {Hours} hours of minute rows and {Days} days of hourly rows")]
    private static partial void LogCompacted(ILogger logger, int hours, int days);

    [LoggerMessage(EventId = 8213, Level = LogLevel.Debug, Message = "Analytics compaction: summarized {Days} closed days into rollup_days")]
    private static partial void LogSummarized(ILogger logger, int days);

    [LoggerMessage(EventId = 8211, Level = LogLevel.Warning, Message = "Analytics store above its size cap ({MaxSize} bytes): deleted {Rows} rows older than {Cutoff:O}")]
    private static partial void LogSizeCap(ILogger logger, long rows, DateTime cutoff, long maxSize);
}
