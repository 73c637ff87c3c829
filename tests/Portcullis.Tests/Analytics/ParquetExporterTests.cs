using DuckDB.NET.Data;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Portcullis.Analytics;

namespace Portcullis.Tests.Analytics;

/// <summary>
/// The hourly Parquet export on a real DuckDB store: files per closed hour in the partition layout, none for
/// the open hour, a restart neither repeats nor skips an hour, downtime is caught up (as far as retention
/// keeps data), and an unwritable folder is reported once and recovered from. The clock is fake.
/// </summary>
public sealed class ParquetExporterTests : IDisposable
{
    private static readonly DateTime Day = new(2026, 12, 4, 0, 0, 0, DateTimeKind.Utc);

    private readonly string _dir = Directory.CreateTempSubdirectory("portcullis-export-").FullName;
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(Day.AddHours(12).AddMinutes(30)));
    private readonly ListLogger<ParquetExporter> _logger = new();

    private string StorePath => Path.Combine(_dir, "store.duckdb");

    private string ExportPath => Path.Combine(_dir, "exports");

    [Fact]
    public void ClosedHoursAreWrittenInThePartitionLayout_TheOpenHourIsNot()
    {
        var database = new AnalyticsDatabase(StorePath);
        var data = new ExportTestData(seed: 1);
        foreach (var h in (int[])[8, 10, 11, 12]) data.WriteHour(database, Day.AddHours(h));
        var exporter = NewExporter(database);

        // 12:30: 08..11 are closed (09 has no rows), 12 is open.
        Assert.Equal(4, exporter.ExportClosedHours());

        Assert.Equal(
            [Partition(8, "rollups"), Partition(8, "samples"), Partition(10, "rollups"), Partition(10, "samples"), Partition(11, "rollups"), Partition(11, "samples")],
            Directory.EnumerateFiles(ExportPath, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(ExportPath, f)).Order(StringComparer.Ordinal));
        foreach (var h in (int[])[8, 10, 11])
        {
            Assert.Equal(data.RequestsByHour[Day.AddHours(h)], ScalarOfFile($"SELECT sum(requests)::BIGINT FROM read_parquet('{Path.Combine(ExportPath, Partition(h, "rollups"))}', hive_partitioning = false)"));
        }

        // Same rows, same columns, as the store holds for the hour (DuckDB compares the two relations).
        var file = Path.Combine(ExportPath, Partition(10, "rollups"));
        using (var connection = database.OpenConnection())
        using (var command = connection.CreateCommand())
        {
            command.CommandText = $"""
                SELECT (SELECT count(*) FROM (SELECT * FROM rollups WHERE minute >= TIMESTAMP '2026-12-04 10:00:00' AND minute < TIMESTAMP '2026-12-04 11:00:00'
                                             EXCEPT ALL SELECT * FROM read_parquet('{file}', hive_partitioning = false))),
                       (SELECT count(*) FROM read_parquet('{file}', hive_partitioning = false))
                """;
            using var reader = command.ExecuteReader();
            Assert.True(reader.Read());
            Assert.Equal(0L, Convert.ToInt64(reader.GetValue(0)));
            Assert.Equal(25L, Convert.ToInt64(reader.GetValue(1)));
        }

        // Times as Parquet timestamps in microseconds, not adjusted to UTC (DuckDB's TIMESTAMP), as docs/analytics.md says.
        using (var connection = new DuckDBConnection("DataSource=:memory:"))
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = $"SELECT type, logical_type::VARCHAR FROM parquet_schema('{file}') WHERE name = 'minute'";
            using var reader = command.ExecuteReader();
            Assert.True(reader.Read());
            Assert.Equal("INT64", reader.GetString(0));
            Assert.Contains("isAdjustedToUTC=0", reader.GetString(1), StringComparison.Ordinal);
            Assert.Contains("MICROS=MicroSeconds()", reader.GetString(1), StringComparison.Ordinal);
        }

        // The hour 12 closes at 13:00 + flushInterval (5 s) + grace (1 min), not a tick sooner.
        _time.SetUtcNow(new DateTimeOffset(Day.AddHours(13)) + exporter.Settings.CloseDelay - TimeSpan.FromTicks(1));
        Assert.Equal(0, exporter.ExportClosedHours());
        Assert.False(Directory.Exists(Path.Combine(ExportPath, "dt=2026-12-04", "hour=12")));
        _time.Advance(TimeSpan.FromTicks(1));
        Assert.Equal(1, exporter.ExportClosedHours());
        Assert.True(File.Exists(Path.Combine(ExportPath, Partition(12, "rollups"))));
        Assert.Empty(Directory.EnumerateFiles(ExportPath, ".*", SearchOption.AllDirectories)); // no temporary file left
    }

    [Fact]
    public void ARestartNeitherRepeatsNorSkipsAnHour()
    {
        var data = new ExportTestData(seed: 2);
        var first = new AnalyticsDatabase(StorePath);
        data.WriteHour(first, Day.AddHours(10));
        data.WriteHour(first, Day.AddHours(11));
        Assert.Equal(2, NewExporter(first).ExportClosedHours()); // 10, 11

        // Gone from the folder (an operator moved it away) and late rows in the store: not exported again.
        File.Delete(Path.Combine(ExportPath, Partition(10, "rollups")));
        data.WriteHour(first, Day.AddHours(10), rows: 3);
        data.WriteHour(first, Day.AddHours(12));

        // "Restart": a new database object and exporter over the same file.
        var second = new AnalyticsDatabase(StorePath);
        var restarted = NewExporter(second);
        Assert.Equal(0, restarted.ExportClosedHours());
        Assert.False(File.Exists(Path.Combine(ExportPath, Partition(10, "rollups"))));

        _time.Advance(TimeSpan.FromHours(1)); // 13:30: 12 is closed
        Assert.Equal(1, restarted.ExportClosedHours());
        Assert.Equal(data.RequestsByHour[Day.AddHours(12)], ScalarOfFile($"SELECT sum(requests)::BIGINT FROM read_parquet('{Path.Combine(ExportPath, Partition(12, "rollups"))}', hive_partitioning = false)"));
        Assert.Equal(Day.AddHours(12), restarted.Health.LastHour);
    }

    [Fact]
    public void HoursMissedWhileDownAreCaughtUp_AsFarBackAsRetentionKeepsData()
    {
        var database = new AnalyticsDatabase(StorePath);
        var data = new ExportTestData(seed: 3);
        for (var h = 0; h < 12; h++) data.WriteHour(database, Day.AddHours(h), rows: 5);
        var exporter = NewExporter(database, retention: TimeSpan.FromHours(5));

        // Never exported, 12:30, retention 5 h: the store keeps 07:00 onwards, so 07..11 are written.
        Assert.Equal(5, exporter.ExportClosedHours());
        Assert.Equal(["hour=07", "hour=08", "hour=09", "hour=10", "hour=11"], HourFolders("2026-12-04"));

        // Down from 12:30 until 03:30 the next day; the hours with rows in between are caught up, in order.
        data.WriteHour(database, Day.AddHours(12));
        data.WriteHour(database, Day.AddHours(20));
        data.WriteHour(database, Day.AddHours(25));
        _time.SetUtcNow(new DateTimeOffset(Day.AddHours(27).AddMinutes(30)));
        var afterDowntime = NewExporter(new AnalyticsDatabase(StorePath), retention: TimeSpan.FromDays(30));
        Assert.Equal(15, afterDowntime.ExportClosedHours()); // 12:00 .. 02:00 next day
        Assert.Equal(["hour=07", "hour=08", "hour=09", "hour=10", "hour=11", "hour=12", "hour=20"], HourFolders("2026-12-04"));
        Assert.Equal(["hour=01"], HourFolders("2026-12-05"));
        Assert.Equal(Day.AddHours(26), afterDowntime.Health.LastHour);
    }

    [Fact]
    public void PartitionsOlderThanTheRetentionAreDeleted_OnlyThisInstances_AndEmptyFoldersWithThem()
    {
        var database = new AnalyticsDatabase(StorePath);
        var data = new ExportTestData(seed: 3);
        foreach (var h in (int[])[-3, -2, 8, 9]) data.WriteHour(database, Day.AddHours(h)); // 21:00 and 22:00 the day before, 08:00, 09:00
        var exporter = NewExporter(database, retention: TimeSpan.FromHours(12));
        // Another instance's partition of an expired hour, and an unrelated folder: both stay.
        var other = Path.Combine(ExportPath, "dt=2026-12-03", "hour=21", "instance=gw-2");
        Directory.CreateDirectory(other);
        File.WriteAllText(Path.Combine(other, "rollups.parquet"), "not ours");
        Directory.CreateDirectory(Path.Combine(ExportPath, "notes"));

        // 12:30, retention 12 h: the store keeps 00:30 onwards, so the hours before were never exported; 08 and 09 are.
        exporter.ExportClosedHours();
        Assert.Equal(["hour=08", "hour=09"], HourFolders("2026-12-04"));
        Assert.False(Directory.Exists(Path.Combine(ExportPath, "dt=2026-12-03", "hour=22")));

        // Write the old hours as an earlier run would have (a longer retention then), then run at 12:30 again.
        foreach (var h in (int[])[-3, -2])
        {
            var folder = Path.Combine(ExportPath, Path.GetDirectoryName(Partition(h, "rollups"))!);
            Directory.CreateDirectory(folder);
            File.WriteAllText(Path.Combine(folder, "rollups.parquet"), "old");
        }

        Assert.Equal(0, exporter.ExportClosedHours()); // nothing new to write; the expired partitions are deleted by the run
        Assert.False(Directory.Exists(Path.Combine(ExportPath, "dt=2026-12-03", "hour=22")), "an expired hour of this instance, emptied, is gone");
        Assert.False(Directory.Exists(Path.Combine(ExportPath, "dt=2026-12-03", "hour=21", "instance=gw-1")));
        Assert.True(File.Exists(Path.Combine(other, "rollups.parquet")), "another instance's partition is left to it");
        Assert.True(Directory.Exists(Path.Combine(ExportPath, "notes")));

        // 20:59:59.9: hour 08 ended (09:00) exactly 12 h before 21:00, not yet expired; at 21:00 it is, 09 still not.
        _time.SetUtcNow(new DateTimeOffset(Day.AddHours(21)) - TimeSpan.FromTicks(1));
        Assert.Equal(0, exporter.DeleteExpiredPartitions(_time.GetUtcNow()));
        _time.Advance(TimeSpan.FromTicks(1));
        Assert.Equal(1, exporter.DeleteExpiredPartitions(_time.GetUtcNow()));
        Assert.Equal(["hour=09"], HourFolders("2026-12-04"));
        _time.Advance(TimeSpan.FromHours(1));
        exporter.ExportClosedHours();
        Assert.False(Directory.Exists(Path.Combine(ExportPath, "dt=2026-12-04")), "the day's folder goes with its last partition");
        Assert.True(File.Exists(Path.Combine(other, "rollups.parquet")));
    }

    [Fact]
    public void AnHourWithRollupsButNoSamplesWritesAnEmptySamplesFile()
    {
        var database = new AnalyticsDatabase(StorePath);
        new ExportTestData(seed: 4).WriteHour(database, Day.AddHours(11), samples: false);
        NewExporter(database).ExportClosedHours();

        var samples = Path.Combine(ExportPath, Partition(11, "samples"));
        Assert.Equal(0L, ScalarOfFile($"SELECT count(*) FROM read_parquet('{samples}', hive_partitioning = false)"));
        Assert.Equal(20L, ScalarOfFile($"SELECT count(*) FROM (DESCRIBE SELECT * FROM read_parquet('{samples}', hive_partitioning = false))")); // the samples columns
    }

    [Fact]
    public async Task AnUnwritableFolderIsReportedOnce_TheExportRecoversWhenItIsWritable()
    {
        var database = new AnalyticsDatabase(StorePath);
        var data = new ExportTestData(seed: 5);
        data.WriteHour(database, Day.AddHours(10));
        data.WriteHour(database, Day.AddHours(11));
        // A file where the export folder's parent should be: no directory can be created (even as root).
        var blocker = Path.Combine(_dir, "mount");
        File.WriteAllText(blocker, "not a folder");
        var exporter = NewExporter(database, exportPath: Path.Combine(blocker, "exports"));
        var check = new ParquetExportHealthCheck(exporter);

        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(0, exporter.ExportClosedHours());
            _time.Advance(exporter.Settings.RetryInterval);
        }

        Assert.True(exporter.Health.Failing);
        var degraded = await check.CheckHealthAsync(new HealthCheckContext());
        Assert.Equal(HealthStatus.Degraded, degraded.Status);
        Assert.Contains(blocker, degraded.Description, StringComparison.Ordinal);
        Assert.Single(_logger.Lines, l => l.Level == LogLevel.Error && l.EventId == 8230);

        File.Delete(blocker);
        Assert.Equal(2, exporter.ExportClosedHours());
        Assert.False(exporter.Health.Failing);
        Assert.Equal(HealthStatus.Healthy, (await check.CheckHealthAsync(new HealthCheckContext())).Status);
        Assert.Single(_logger.Lines, l => l.EventId == 8231);
        Assert.True(File.Exists(Path.Combine(blocker, "exports", Partition(10, "rollups"))));
        Assert.True(File.Exists(Path.Combine(blocker, "exports", Partition(11, "samples"))));
    }

    [Fact]
    public async Task TheServiceExportsAtStartAndWhenTheNextHourCloses()
    {
        var database = new AnalyticsDatabase(StorePath);
        var data = new ExportTestData(seed: 6);
        data.WriteHour(database, Day.AddHours(11));
        data.WriteHour(database, Day.AddHours(12));
        var exporter = NewExporter(database);
        using var service = new ParquetExportService(exporter, _time);
        await service.StartAsync(CancellationToken.None);
        try
        {
            await Eventually.TrueAsync(() => File.Exists(Path.Combine(ExportPath, Partition(11, "rollups"))), "hour 11 exported at start");
            Assert.False(File.Exists(Path.Combine(ExportPath, Partition(12, "rollups"))));

            _time.SetUtcNow(new DateTimeOffset(Day.AddHours(13)) + exporter.Settings.CloseDelay);
            await Eventually.TrueAsync(() => File.Exists(Path.Combine(ExportPath, Partition(12, "rollups"))), "hour 12 exported when it closed");
        }
        finally
        {
            await service.StopAsync(CancellationToken.None);
        }
    }

    private ParquetExporter NewExporter(AnalyticsDatabase database, TimeSpan? retention = null, string? exportPath = null) =>
        new(database, new ParquetExportSettings(exportPath ?? ExportPath, "gw-1", TimeSpan.FromSeconds(5), retention ?? TimeSpan.FromDays(30)), _time, _logger);

    private static string Partition(int hour, string table)
    {
        var start = Day.AddHours(hour);
        return Path.Combine($"dt={start:yyyy-MM-dd}", $"hour={start:HH}", "instance=gw-1", table + ".parquet");
    }

    private List<string> HourFolders(string day) =>
        [.. Directory.EnumerateDirectories(Path.Combine(ExportPath, "dt=" + day)).Select(d => Path.GetFileName(d)!).Order(StringComparer.Ordinal)];

    private static long ScalarOfFile(string sql)
    {
        using var connection = new DuckDBConnection("DataSource=:memory:");
        connection.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return Convert.ToInt64(command.ExecuteScalar());
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
