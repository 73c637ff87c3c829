using System.Globalization;
using DuckDB.NET.Data;
using Microsoft.Extensions.Logging;

namespace Portcullis.Analytics;

/// <summary>The export's state for readiness: failing since when and why, and the last hour handled.</summary>
internal sealed record ParquetExportHealth(bool Failing, string? Error, DateTimeOffset? Since, DateTime? LastHour);

/// <summary>
/// Writes every closed hour of the store once, as {path}/dt=YYYY-MM-DD/hour=HH/instance=ID/rollups.parquet
/// and samples.parquet (DuckDB COPY to a hidden temporary name, then a rename, so a reader never sees half a
/// file). The hours handled are kept in the store (analytics_exports), so a restart neither repeats nor skips
/// one, and the hours missed while the gateway was down are caught up, oldest first, as far back as retention
/// keeps data. An hour without rows writes nothing; an hour with rollups but no samples (or the reverse)
/// writes both files, one of them with no rows, so every partition has both.
/// </summary>
internal sealed partial class ParquetExporter(AnalyticsDatabase database, ParquetExportSettings settings, TimeProvider time, ILogger<ParquetExporter> logger)
{
    /// <summary>The exporter's own table in the store: one row per hour handled (0 rows = nothing to write).</summary>
    public const string CreateExports = """
        CREATE TABLE IF NOT EXISTS analytics_exports (
            hour        TIMESTAMP PRIMARY KEY, -- start of the hour, UTC
            instance    VARCHAR NOT NULL,      -- the instance id it was written as
            rollups     BIGINT NOT NULL,       -- rows written to rollups.parquet
            samples     BIGINT NOT NULL,       -- rows written to samples.parquet
            exported_at TIMESTAMP NOT NULL
        )
        """;

    private static readonly TimeSpan Hour = TimeSpan.FromHours(1);

    // Order of the rows in the files: by time first, so engines skip row groups on a time filter.
    private const string RollupsOrder = "minute, route, cluster, consumer, consumer_group, status, reason";
    private const string SamplesOrder = "ts, request_id";

    private ParquetExportHealth _health = new(false, null, null, null);
    // One caller at a time (the export service's loop, or a test).
    private bool _tableReady;
    private bool _failing;
    private bool _expiryFailing;

    public ParquetExportSettings Settings => settings;

    public ParquetExportHealth Health => Volatile.Read(ref _health);

    /// <summary>The folder of one hour of this instance.</summary>
    public string PartitionOf(DateTime hour) => Path.Combine(settings.Path,
        "dt=" + hour.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
        "hour=" + hour.ToString("HH", CultureInfo.InvariantCulture),
        "instance=" + settings.Instance);

    /// <summary>The start of the newest closed hour at <paramref name="now"/>.</summary>
    public DateTime LastClosedHour(DateTimeOffset now) => FloorHour(now.UtcDateTime - settings.CloseDelay) - Hour;

    /// <summary>When the hour after the newest closed one closes.</summary>
    public DateTimeOffset NextClose(DateTimeOffset now) =>
        new(DateTime.SpecifyKind(LastClosedHour(now) + 2 * Hour + settings.CloseDelay, DateTimeKind.Utc));

    /// <summary>
    /// Exports every closed hour not handled yet, oldest first; returns how many hours were handled. A failure
    /// (unwritable folder, store error) stops the run, marks the export unhealthy, and is logged once until it
    /// works again; the hour is retried by the next run.
    /// </summary>
    public int ExportClosedHours(CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow();
        var last = LastClosedHour(now);
        var handled = 0;
        DateTime? hour = null;
        var lastDone = Health.LastHour;
        try
        {
            using var connection = database.OpenConnection();
            EnsureTable(connection);
            for (hour = FirstPending(connection, now); hour is { } h && h <= last && !cancellationToken.IsCancellationRequested; hour = h + Hour)
            {
                ExportHour(connection, h, now);
                lastDone = h;
                handled++;
            }

            Volatile.Write(ref _health, new ParquetExportHealth(false, null, null, lastDone));
            if (_failing) Log.Recovered(logger, settings.Path);
            _failing = false;
            DeleteExpiredPartitions(now);
        }
        catch (Exception e)
        {
            // Any failure, not only I/O and DuckDB's: the export must never stop the gateway (a faulted
            // background service stops the host), so it is reported and retried like the others.
            // The store may have been replaced (a corrupt file moved away): create the table again next time.
            _tableReady = false;
            Volatile.Write(ref _health, new ParquetExportHealth(true, e.Message, Health.Since ?? now, lastDone));
            if (!_failing) Log.Failed(logger, hour is { } h ? h.ToString("yyyy-MM-dd HH:00", CultureInfo.InvariantCulture) : "(reading the store)", settings.Path, e.Message, settings.RetryInterval);
            _failing = true;
        }

        return handled;
    }

    /// <summary>
    /// Deletes this instance's partitions whose hour ended more than analytics.retention ago (the store no longer
    /// has those rows either), then the dt=/hour= folders that became empty; returns how many were deleted. Other
    /// instances' partitions in a shared folder are left to them. A failure is logged once (until a run succeeds)
    /// and never stops the export: it is retried with the next run.
    /// </summary>
    public int DeleteExpiredPartitions(DateTimeOffset now)
    {
        var cutoff = now.UtcDateTime - settings.Retention;
        var deleted = 0;
        try
        {
            if (!Directory.Exists(settings.Path)) return 0;
            foreach (var day in Directory.EnumerateDirectories(settings.Path, "dt=*"))
            {
                if (!DateTime.TryParseExact(Path.GetFileName(day).AsSpan(3), "yyyy-MM-dd", CultureInfo.InvariantCulture,
                        DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out var date) || date >= cutoff)
                {
                    continue; // not a partition folder, or no hour of the day is past the cutoff
                }

                foreach (var hourFolder in Directory.EnumerateDirectories(day, "hour=*"))
                {
                    if (!int.TryParse(Path.GetFileName(hourFolder).AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out var h) || h > 23) continue;
                    if (date.AddHours(h) + Hour > cutoff) continue;
                    var mine = Path.Combine(hourFolder, "instance=" + settings.Instance);
                    if (Directory.Exists(mine))
                    {
                        Directory.Delete(mine, recursive: true);
                        deleted++;
                    }

                    DeleteIfEmpty(hourFolder);
                }

                DeleteIfEmpty(day);
            }

            if (_expiryFailing) Log.ExpiryRecovered(logger, settings.Path);
            _expiryFailing = false;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            if (!_expiryFailing) Log.ExpiryFailed(logger, settings.Path, e.Message);
            _expiryFailing = true;
        }

        return deleted;
    }

    // Another instance may write into the folder meanwhile: then it is not empty, and stays.
    private static void DeleteIfEmpty(string folder)
    {
        if (Directory.EnumerateFileSystemEntries(folder).Any()) return;
        try
        {
            Directory.Delete(folder);
        }
        catch (IOException)
        {
        }
    }

    private void EnsureTable(DuckDBConnection connection)
    {
        if (_tableReady) return;
        Execute(connection, CreateExports);
        _tableReady = true;
    }

    // The hour after the newest one handled; on a store never exported, its oldest hour with data. Never
    // older than retention (those rows are deleted, or about to be).
    private DateTime? FirstPending(DuckDBConnection connection, DateTimeOffset now)
    {
        var oldestKept = FloorHour(now.UtcDateTime - settings.Retention);
        var handled = Scalar(connection, "SELECT max(hour) FROM analytics_exports");
        DateTime? first = handled is DateTime h ? h + Hour
            : Scalar(connection, $"SELECT least((SELECT min(minute) FROM {AnalyticsSchema.Rollups}), (SELECT min(ts) FROM {AnalyticsSchema.Samples}))") is DateTime oldest ? FloorHour(oldest) : null;
        return first is { } f && f < oldestKept ? oldestKept : first;
    }

    private void ExportHour(DuckDBConnection connection, DateTime hour, DateTimeOffset now)
    {
        // Times come from the clock and the store, never from a request: formatted, not parameters (COPY takes none).
        var from = Literal(hour);
        var to = Literal(hour + Hour);
        var rollupsWhere = $"minute >= {from} AND minute < {to}";
        var samplesWhere = $"ts >= {from} AND ts < {to}";

        // One transaction: rollups and samples from the same snapshot, whatever retention or the flusher do meanwhile.
        using (var transaction = connection.BeginTransaction())
        {
            var rollups = Count(connection, $"SELECT count(*) FROM {AnalyticsSchema.Rollups} WHERE {rollupsWhere}");
            var samples = Count(connection, $"SELECT count(*) FROM {AnalyticsSchema.Samples} WHERE {samplesWhere}");
            if (rollups + samples > 0)
            {
                var folder = PartitionOf(hour);
                Directory.CreateDirectory(folder);
                var suffix = ".tmp-" + Guid.NewGuid().ToString("N");
                var rollupsTemp = Path.Combine(folder, "." + AnalyticsSchema.Rollups + ".parquet" + suffix);
                var samplesTemp = Path.Combine(folder, "." + AnalyticsSchema.Samples + ".parquet" + suffix);
                try
                {
                    Copy(connection, $"SELECT * FROM {AnalyticsSchema.Rollups} WHERE {rollupsWhere} ORDER BY {RollupsOrder}", rollupsTemp);
                    Copy(connection, $"SELECT * FROM {AnalyticsSchema.Samples} WHERE {samplesWhere} ORDER BY {SamplesOrder}", samplesTemp);
                    File.Move(samplesTemp, Path.Combine(folder, AnalyticsSchema.Samples + ".parquet"), overwrite: true);
                    File.Move(rollupsTemp, Path.Combine(folder, AnalyticsSchema.Rollups + ".parquet"), overwrite: true);
                }
                finally
                {
                    TryDelete(samplesTemp);
                    TryDelete(rollupsTemp);
                }
            }

            transaction.Commit();
            Record(connection, hour, rollups, samples, now);
            if (rollups + samples > 0) Log.Exported(logger, hour, rollups, samples, PartitionOf(hour));
        }
    }

    // Written after the files: a crash between the two rewrites the same files on restart (same content).
    private void Record(DuckDBConnection connection, DateTime hour, long rollups, long samples, DateTimeOffset now)
    {
        using var command = connection.CreateCommand();
        command.CommandText = """
            INSERT OR REPLACE INTO analytics_exports VALUES ($hour, $instance, $rollups, $samples, $now);
            DELETE FROM analytics_exports WHERE hour < $oldest;
            """;
        command.Parameters.Add(new DuckDBParameter("hour", hour));
        command.Parameters.Add(new DuckDBParameter("instance", settings.Instance));
        command.Parameters.Add(new DuckDBParameter("rollups", rollups));
        command.Parameters.Add(new DuckDBParameter("samples", samples));
        command.Parameters.Add(new DuckDBParameter("now", now.UtcDateTime));
        // Keep the newest row even past retention: it is where the next run continues.
        command.Parameters.Add(new DuckDBParameter("oldest", new[] { hour, FloorHour(now.UtcDateTime - settings.Retention) }.Min()));
        command.ExecuteNonQuery();
    }

    private static void Copy(DuckDBConnection connection, string select, string target) =>
        Execute(connection, $"COPY ({select}) TO {Quote(target)} (FORMAT parquet, COMPRESSION zstd)");

    /// <summary>A SQL string literal (single quotes doubled).</summary>
    public static string Quote(string text) => "'" + text.Replace("'", "''", StringComparison.Ordinal) + "'";

    private static string Literal(DateTime utc) => "TIMESTAMP '" + utc.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture) + "'";

    private static DateTime FloorHour(DateTime utc) => new(utc.Year, utc.Month, utc.Day, utc.Hour, 0, 0, DateTimeKind.Utc);

    private static long Count(DuckDBConnection connection, string sql) => Convert.ToInt64(Scalar(connection, sql), CultureInfo.InvariantCulture);

    private static object? Scalar(DuckDBConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        var value = command.ExecuteScalar();
        return value is DBNull ? null : value;
    }

    private static void Execute(DuckDBConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A leftover hidden temp file matches no reader's glob.
        }
    }

    private static partial class Log
    {
        [LoggerMessage(8230, LogLevel.Error, "Exporting analytics hour {Hour} to {Path} failed: {Message}; retried every {Retry}, the hours are kept in the store meanwhile")]
        public static partial void Failed(ILogger logger, string hour, string path, string message, TimeSpan retry);

        [LoggerMessage(8231, LogLevel.Information, "Exporting analytics to {Path} works again")]
        public static partial void Recovered(ILogger logger, string path);

        [LoggerMessage(8232, LogLevel.Debug, "Exported analytics hour {Hour:yyyy-MM-dd HH}:00: {Rollups} rollup row(s), {Samples} sample(s) to {Folder}")]
        public static partial void Exported(ILogger logger, DateTime hour, long rollups, long samples, string folder);

        [LoggerMessage(8233, LogLevel.Warning, "Deleting analytics export partitions older than the retention under {Path} failed: {Message}; retried with the next export run")]
        public static partial void ExpiryFailed(ILogger logger, string path, string message);

        [LoggerMessage(8234, LogLevel.Information, "Deleting expired analytics export partitions under {Path} works again")]
        public static partial void ExpiryRecovered(ILogger logger, string path);
    }
}
