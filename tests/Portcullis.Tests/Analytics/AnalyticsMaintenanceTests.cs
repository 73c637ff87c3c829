using Portcullis.Configuration;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Portcullis.Analytics;
using Portcullis.Pipeline;
using Xunit.Abstractions;

namespace Portcullis.Tests.Analytics;

/// <summary>The writer's flushes and the retention job on a real DuckDB file, on fake time.</summary>
public sealed class AnalyticsMaintenanceTests(ITestOutputHelper output) : IDisposable
{
    private static readonly DateTimeOffset Start = new(2026, 11, 1, 0, 0, 0, TimeSpan.Zero);
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("portcullis-maintenance-");

    public void Dispose() => _dir.Delete(recursive: true);

    private (AnalyticsRecorder Recorder, AnalyticsWriter Writer, AnalyticsDatabase Database, GatewaySnapshot Snapshot) Store(FakeTimeProvider time, string analytics)
    {
        var snapshot = AnalyticsRecorderTests.Snapshot(_dir, analytics);
        var recorder = new AnalyticsRecorder(snapshot.Analytics!);
        var database = new AnalyticsDatabase(snapshot.Analytics!.Path);
        var writer = new AnalyticsWriter(database, recorder, new SnapshotStore(snapshot), time, NullLogger<AnalyticsWriter>.Instance);
        return (recorder, writer, database, snapshot);
    }

    private static void Send(AnalyticsRecorder recorder, GatewaySnapshot snapshot, DateTimeOffset at, int count, string consumer = "alice")
    {
        for (var i = 0; i < count; i++)
        {
            var (context, gateway) = AnalyticsRecorderTests.Request(snapshot, at, status: 500, consumer: consumer);
            recorder.Completed(context, gateway);
        }
    }

    private static long Count(AnalyticsDatabase database, string sql)
    {
        using var connection = database.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return Convert.ToInt64(command.ExecuteScalar());
    }

    [Fact]
    public void Retention_deletes_rows_older_than_the_retention_and_keeps_the_rest()
    {
        var time = new FakeTimeProvider(Start);
        var (recorder, writer, database, snapshot) = Store(time, ", retention: 7d");
        using (writer)
        {
            Send(recorder, snapshot, time.GetUtcNow(), 3);
            writer.Flush();
            Assert.Equal(3, Count(database, "SELECT sum(requests)::BIGINT FROM rollups"));
            Assert.Equal(3, Count(database, "SELECT count(*) FROM samples"));

            time.Advance(TimeSpan.FromDays(6));
            Send(recorder, snapshot, time.GetUtcNow(), 2);
            writer.Flush();
            Assert.Equal(5, Count(database, "SELECT sum(requests)::BIGINT FROM rollups")); // 6 days old: kept

            time.Advance(TimeSpan.FromDays(1) + TimeSpan.FromMinutes(1));
            writer.Flush(); // the first batch is now 7 days and a minute old
            Assert.Equal(2, Count(database, "SELECT sum(requests)::BIGINT FROM rollups"));
            Assert.Equal(2, Count(database, "SELECT count(*) FROM samples"));
            Assert.Equal(4, writer.Maintenance.RowsDeletedByAge); // one rollup row and three samples
        }
    }

    [Fact]
    public void The_maintenance_job_merges_minutes_older_than_hourlyAfter_into_their_hour()
    {
        var time = new FakeTimeProvider(Start);
        var (recorder, writer, database, snapshot) = Store(time, ", compaction: { hourlyAfter: 2h, dailyAfter: 1d }");
        using (writer)
        {
            Send(recorder, snapshot, time.GetUtcNow(), 3);
            writer.Flush();
            time.Advance(TimeSpan.FromMinutes(10));
            Send(recorder, snapshot, time.GetUtcNow(), 2);
            writer.Flush();
            Assert.Equal(2, Count(database, "SELECT count(*) FROM rollups"));

            time.Advance(TimeSpan.FromHours(3));
            Send(recorder, snapshot, time.GetUtcNow(), 1);
            writer.Flush(); // the job is due: the first hour is 3 hours old
            Assert.Equal(1, writer.Maintenance.HoursCompacted);
            Assert.Equal(2, Count(database, "SELECT count(*) FROM rollups")); // the merged hour and the new minute
            Assert.Equal(5, Count(database, $"SELECT requests FROM rollups WHERE minute = TIMESTAMP '{Start:yyyy-MM-dd HH:mm:ss}'"));
            Assert.Equal(6, Count(database, "SELECT sum(requests)::BIGINT FROM rollups"));
        }
    }

    [Fact]
    public void The_job_writes_each_closed_days_consumer_sketches_and_top_by_consumer_p99_reads_them()
    {
        var time = new FakeTimeProvider(Start);
        var (recorder, writer, database, snapshot) = Store(time, "");
        using (writer)
        {
            Send(recorder, snapshot, time.GetUtcNow(), 3, consumer: "alice");
            Send(recorder, snapshot, time.GetUtcNow(), 2, consumer: "bob");
            writer.Flush();
            time.Advance(TimeSpan.FromHours(23));
            Send(recorder, snapshot, time.GetUtcNow(), 1, consumer: "alice");
            writer.Flush();
            Assert.Equal(0, Count(database, "SELECT count(*) FROM consumer_days")); // the day is not closed yet

            time.Advance(TimeSpan.FromHours(1) + TimeSpan.FromMinutes(2)); // past the day's end and its closing delay
            Send(recorder, snapshot, time.GetUtcNow().AddMinutes(-1), 1, consumer: "bob"); // in the open day, before `now` (the window's exclusive end)
            writer.Flush();
            Assert.Equal(1, writer.Maintenance.DaysSummarized);
            Assert.Equal(2, Count(database, "SELECT count(*) FROM consumer_days"));
            Assert.Equal(4, Count(database, "SELECT list_sum(latency_counts)::BIGINT FROM consumer_days WHERE consumer = 'alice'"));
            Assert.Equal(2, Count(database, "SELECT list_sum(latency_counts)::BIGINT FROM consumer_days WHERE consumer = 'bob'"));

            // Over the two days: day one's sketches from consumer_days, the open day's from rollups; the same answer as without.
            var top = AnalyticsQueryParameters.Parse(AnalyticsQueryKind.Top,
                [KeyValuePair.Create("from", new[] { "now-2d" }), KeyValuePair.Create("by", new[] { "consumer" }), KeyValuePair.Create("orderBy", new[] { "p99" })], time.GetUtcNow().UtcDateTime);
            using var connection = database.OpenConnection();
            Assert.Equal(new AnalyticsQuery.DayCover(Start.UtcDateTime, Start.UtcDateTime.AddDays(1), AnalyticsDaySummaries.ConsumerGrain), AnalyticsQuery.Cover(connection, top));
            var withDays = SketchMergeTests.Json(AnalyticsQuery.Run(connection, top, "local", SketchMergeMode.Native, days: true));
            Assert.Equal(SketchMergeTests.Json(AnalyticsQuery.Run(connection, top, "local", SketchMergeMode.Native, days: false)), withDays);
            Assert.True(withDays.Contains("\"key\":\"bob\",\"requests\":3", StringComparison.Ordinal), withDays);
        }
    }

    [Fact]
    public void A_store_that_cannot_be_written_is_retried_with_backoff_keeps_the_batch_and_writes_it_once_it_can()
    {
        var time = new FakeTimeProvider(Start);
        var (recorder, writer, database, snapshot) = Store(time, "");
        File.WriteAllBytes(database.Path, Enumerable.Repeat((byte)0x5a, 32 * 1024).ToArray()); // not a DuckDB file
        using (writer)
        {
            Send(recorder, snapshot, time.GetUtcNow(), 2);
            var attempts = new List<long>();
            // Flushes every 500 ms of fake time for 8 s: attempts at 0, 1 s, 3 s, 7 s (backoff 1, 2, 4 s).
            for (var i = 0; i <= 16; i++)
            {
                writer.Flush();
                attempts.Add(writer.FailedAttempts);
                if (i < 16) time.Advance(TimeSpan.FromMilliseconds(500));
            }

            Assert.Equal([1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4], attempts);
            Assert.True(writer.Health.IsDown);
            Assert.Equal(Start.AddSeconds(0), writer.Health.Since);

            File.Delete(database.Path);
            Send(recorder, snapshot, time.GetUtcNow(), 1);
            time.Advance(TimeSpan.FromSeconds(8)); // past the next backoff
            writer.Flush();
            Assert.False(writer.Health.IsDown);
            Assert.Equal(3, Count(database, "SELECT sum(requests)::BIGINT FROM rollups")); // the kept batch and the new request
            Assert.Equal(3, Count(database, "SELECT count(*) FROM samples"));
        }
    }

    [Fact]
    public void The_size_cap_deletes_the_oldest_hours_and_the_file_stops_growing()
    {
        var time = new FakeTimeProvider(Start);
        const long MaxSize = 4L << 20;
        var (recorder, writer, database, snapshot) = Store(time, ", maxSize: 4MiB, samples: { successRate: 1 }");
        var sizes = new List<long>();
        var used = new List<long>();
        using (writer)
        {
            // 48 hours of traffic, 2,000 distinct consumers an hour (rows and samples), far beyond 4 MiB in all.
            for (var hour = 0; hour < 48; hour++)
            {
                for (var i = 0; i < 2000; i++) Send(recorder, snapshot, time.GetUtcNow(), 1, consumer: $"consumer-{hour}-{i}");
                time.Advance(TimeSpan.FromHours(1));
                writer.Flush();
                sizes.Add(AnalyticsMaintenance.FileSize(database.Path));
                using var c = database.OpenConnection();
                used.Add(AnalyticsMaintenance.UsedBytes(c, database.Path));
            }
        }

        output.WriteLine("data in it (KiB):                 " + string.Join(" ", used.Select(s => s / 1024)));
        output.WriteLine("file size after each hour (KiB): " + string.Join(" ", sizes.Select(s => s / 1024)));
        var oldest = Count(database, "SELECT epoch(min(minute))::BIGINT FROM rollups");
        var newest = Count(database, "SELECT epoch(max(minute))::BIGINT FROM rollups");
        output.WriteLine($"hours kept: {(newest - oldest) / 3600 + 1}, rows deleted by size: {writer.Maintenance.RowsDeletedBySize}");
        Assert.True(writer.Maintenance.RowsDeletedBySize > 0, "nothing was deleted for size");
        Assert.True(newest - oldest < 47 * 3600, "the oldest hours are still there");
        Assert.True(sizes.Max() <= MaxSize * 1.5, $"file grew to {sizes.Max()} bytes with maxSize {MaxSize}");
        Assert.True(sizes[^1] <= MaxSize * 1.25, $"file is {sizes[^1]} bytes with maxSize {MaxSize}");
    }
}
