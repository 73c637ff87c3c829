using System.Text;
using System.Text.Json;
using DuckDB.NET.Data;
using Microsoft.Extensions.Logging.Abstractions;
using Portcullis.Analytics;
using Portcullis.Testing;

namespace Portcullis.Tests.Analytics;

/// <summary>
/// The day summaries (rollup_days) on a real DuckDB file: every query that reads them answers byte for byte what
/// it answers from every rollup row, with ragged window edges, filters and groupings, and after retention cuts into a day.
/// </summary>
public sealed class AnalyticsDaySummariesTests(AnalyticsDaySummariesTests.Store store) : IClassFixture<AnalyticsDaySummariesTests.Store>
{
    private static readonly DateTime Start = new(2026, 11, 1, 0, 0, 0, DateTimeKind.Utc);
    private static readonly DateTime Now = Start.AddDays(10).AddHours(7);

    /// <summary>
    /// Ten days and seven hours of minutes, compacted and summarized as the maintenance job leaves them (days,
    /// hours, minutes), built once per class: the tests that change a store copy the file first.
    /// </summary>
    public sealed class Store : IDisposable
    {
        public DirectoryInfo Dir { get; } = Directory.CreateTempSubdirectory("portcullis-days-");

        internal AnalyticsDataGenerator Data { get; } = new();

        internal AnalyticsDatabase Database { get; }

        public Store()
        {
            Database = new AnalyticsDatabase(Path.Combine(Dir.FullName, "a.duckdb"));
            Data.Traffic(Start, minutes: (int)(Now - Start).TotalMinutes, rowsPerMinute: 2, seed: 7);
            using var connection = Database.OpenConnection();
            Data.WriteTo(connection);
            while (AnalyticsCompaction.Run(connection, Options(Database.Path), Now, maxHours: 1000, maxDays: 100) != (0, 0))
            {
            }

            while (AnalyticsDaySummaries.Run(connection, Now, 100) > 0)
            {
            }

            using var checkpoint = connection.CreateCommand();
            checkpoint.CommandText = "CHECKPOINT";
            checkpoint.ExecuteNonQuery();
        }

        /// <summary>A copy of the store's file to change (closed: the copy is taken between connections).</summary>
        internal AnalyticsDatabase Copy(string name)
        {
            var path = Path.Combine(Dir.FullName, name);
            File.Copy(Database.Path, path);
            if (File.Exists(Database.Path + ".wal")) File.Copy(Database.Path + ".wal", path + ".wal");
            return new AnalyticsDatabase(path);
        }

        public void Dispose() => Dir.Delete(recursive: true);
    }

    private static CompiledAnalytics Options(string path, TimeSpan? retention = null) => new()
    {
        Path = path,
        FlushInterval = TimeSpan.FromSeconds(5),
        Retention = retention ?? TimeSpan.FromDays(30),
        MaxSize = 1L << 30,
        SuccessRate = 0.01,
        QueueSize = 100,
        RawPaths = false,
    };

    // Whether the query reads summaries ("days"), and the query.
    public static TheoryData<bool, string, string> Queries() => new()
    {
        { true, "summary", "from=now-30d" },
        { true, "summary", "from=2026-11-02T05:17:00Z&to=2026-11-09T13:00:00Z" },
        { true, "summary", "from=2026-11-01T00:00:00Z&to=2026-11-08T00:00:00Z&status=5xx" },
        { true, "summary", "from=now-30d&route=orders" },
        { true, "summary", "from=now-30d&route=(none)" },
        { true, "summary", "from=now-30d&cluster=users-cluster&reason=upstream.unavailable" },
        { true, "summary", "from=now-30d&consumerGroup=gold" },
        { false, "summary", "from=now-30d&consumer=alice" },
        { false, "summary", "from=now-30d&route=orders&consumerGroup=gold" },
        { true, "top", "from=now-30d&by=route&orderBy=p99" },
        { true, "top", "from=2026-11-02T05:17:00Z&by=route&orderBy=requests&limit=2" },
        { true, "top", "from=now-30d&by=cluster&orderBy=bytesOut" },
        { true, "top", "from=now-30d&by=cluster&orderBy=errorRate&route=payments" },
        { true, "top", "from=now-30d&by=consumerGroup&orderBy=errors" },
        { true, "top", "from=now-30d&by=status&orderBy=p99" },
        { true, "top", "from=now-30d&by=reason&orderBy=requests&status=4xx" },
        // Top by consumer ordered by p99: sketches from consumer_days, counters from rollups; any other filter or order: rollups.
        { true, "top", "from=now-30d&by=consumer&orderBy=p99" },
        { true, "top", "from=2026-11-02T05:17:00Z&to=2026-11-09T13:00:00Z&by=consumer&orderBy=p99&limit=2" },
        { true, "top", "from=now-30d&by=consumer&orderBy=p99&consumer=alice" },
        { true, "top", "from=now-30d&by=consumer&orderBy=p99&consumer=(none)" },
        { false, "top", "from=now-30d&by=consumer&orderBy=p99&route=orders" },
        { false, "top", "from=now-30d&by=consumer&orderBy=p99&status=5xx" },
        { false, "top", "from=now-30d&by=consumer&orderBy=requests" },
        { true, "timeseries", "from=now-30d" },
        { true, "timeseries", "from=2026-11-02T05:17:00Z&step=1d&groupBy=route" },
        { true, "timeseries", "from=now-30d&step=1d&groupBy=cluster&limit=2" },
        { false, "timeseries", "from=now-30d&step=1d&groupBy=consumer" },
        { false, "timeseries", "from=now-5d&step=1h&groupBy=route" },
        { false, "samples", "from=now-30d" },
    };

    [Theory]
    [MemberData(nameof(Queries))]
    public void A_query_answers_the_same_from_the_day_summaries_as_from_every_rollup_row(bool days, string kind, string query)
    {
        var parameters = Parse(kind, query);
        using var connection = store.Database.OpenConnection();
        var cover = Cover(connection, parameters);

        Assert.Equal(days, cover is not null);
        foreach (var merge in (SketchMergeMode[])[SketchMergeMode.Native, SketchMergeMode.Sql])
        {
            var withDays = Json(AnalyticsQuery.Run(connection, parameters, "local", merge, days: true));
            Assert.Equal(Json(AnalyticsQuery.Run(connection, parameters, "local", merge, days: false)), withDays);
            if (kind != "samples") Assert.Contains("\"p99\":", withDays, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Closed_days_are_summarized_once_and_each_grain_totals_exactly_the_days_rows()
    {
        using var connection = store.Database.OpenConnection();
        // Every day that ended before now is closed (days, hours and minutes alike: a summary only sums): 10 days, none twice.
        Assert.Equal(Start.AddDays(10), AnalyticsCompaction.Progress(connection, AnalyticsDaySummaries.UntilKey));
        Assert.Equal(0, AnalyticsDaySummaries.Run(connection, Now));
        var generated = store.Data.Rollups.Where(r => r.Minute < Start.AddDays(10)).ToList();
        for (var grain = 0; grain < AnalyticsDaySummaries.Grains.Length; grain++)
        {
            Assert.Equal(generated.Sum(r => r.Requests), Scalar(connection, $"SELECT sum(requests)::BIGINT FROM rollup_days WHERE grain = {grain}"));
            Assert.Equal(10, Scalar(connection, $"SELECT count(DISTINCT minute) FROM rollup_days WHERE grain = {grain}"));
        }

        // The summary of one day at grain 0 (status × reason): the day's requests of that status merged, bucket for bucket.
        var day = Start.AddDays(3);
        var served = generated.Where(r => r.Minute >= day && r.Minute < day.AddDays(1) && r.Status == 200).ToList();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT requests, latency_buckets, latency_counts FROM rollup_days WHERE grain = 0 AND minute = $day AND status = 200";
        command.Parameters.Add(new DuckDBParameter("day", day));
        using var reader = command.ExecuteReader();
        Assert.True(reader.Read());
        Assert.Equal(served.Sum(r => r.Requests), reader.GetInt64(0));
        var dense = new long[LatencySketch.BucketCount];
        var buckets = reader.GetFieldValue<List<short>>(1);
        var counts = reader.GetFieldValue<List<long>>(2);
        for (var i = 0; i < buckets.Count; i++) dense[buckets[i]] += counts[i];
        Assert.Equal(AnalyticsDataGenerator.Dense(served), dense);
        Assert.False(reader.Read());
    }

    [Fact]
    public void Each_closed_day_has_one_consumer_sketch_per_consumer_merging_exactly_that_consumers_rows()
    {
        using var connection = store.Database.OpenConnection();
        var generated = store.Data.Rollups.Where(r => r.Minute < Start.AddDays(10)).ToList();
        Assert.Equal(DateTime.UnixEpoch, AnalyticsCompaction.Progress(connection, AnalyticsDaySummaries.ConsumersFromKey)); // summarized with them from the start
        Assert.Equal(generated.Select(r => (Day: r.Minute.Date, r.Consumer)).Distinct().Count(), Scalar(connection, "SELECT count(*) FROM consumer_days"));
        Assert.Equal(10, Scalar(connection, "SELECT count(DISTINCT minute) FROM consumer_days"));
        foreach (var consumer in (string?[])["alice", null])
        {
            var day = Start.AddDays(4);
            var rows = generated.Where(r => r.Minute >= day && r.Minute < day.AddDays(1) && r.Consumer == consumer).ToList();
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT latency_buckets, latency_counts FROM consumer_days WHERE minute = $day AND consumer IS NOT DISTINCT FROM $consumer";
            command.Parameters.Add(new DuckDBParameter("day", day));
            command.Parameters.Add(new DuckDBParameter("consumer", consumer));
            using var reader = command.ExecuteReader();
            Assert.True(reader.Read());
            var dense = new long[LatencySketch.BucketCount];
            var buckets = reader.GetFieldValue<List<short>>(0);
            var counts = reader.GetFieldValue<List<long>>(1);
            for (var i = 0; i < buckets.Count; i++) dense[buckets[i]] += counts[i];
            Assert.Equal(AnalyticsDataGenerator.Dense(rows), dense);
            Assert.False(reader.Read());
        }
    }

    [Fact]
    public void Days_summarized_before_the_consumer_sketches_existed_are_not_covered_for_top_by_consumer()
    {
        // A store summarized by a version without consumer_days: its days stay covered for the other grains only.
        var database = store.Copy("before-consumers.duckdb");
        using var connection = database.OpenConnection();
        using (var command = connection.CreateCommand())
        {
            command.CommandText = $"DELETE FROM consumer_days; DELETE FROM analytics_meta WHERE key = '{AnalyticsDaySummaries.ConsumersFromKey}'";
            command.ExecuteNonQuery();
        }

        var top = Parse("top", "from=now-30d&by=consumer&orderBy=p99");
        Assert.Null(Cover(connection, top));
        Assert.Equal(0, AnalyticsDaySummaries.Run(connection, Now)); // nothing new to summarize: consumer sketches from day 10 on
        Assert.Equal(Start.AddDays(10), AnalyticsCompaction.Progress(connection, AnalyticsDaySummaries.ConsumersFromKey));
        Assert.Null(Cover(connection, top));
        Assert.NotNull(Cover(connection, Parse("top", "from=now-30d&by=route&orderBy=p99")));
        Assert.Equal(Json(AnalyticsQuery.Run(connection, top, "local", SketchMergeMode.Native, days: false)),
            Json(AnalyticsQuery.Run(connection, top, "local", SketchMergeMode.Native, days: true)));
    }

    [Fact]
    public void Retention_cutting_into_a_summarized_day_leaves_that_day_to_the_rollups_and_the_answers_unchanged()
    {
        // Retention of 9 days at now = day 10 07:00: the cutoff is day 1 07:00, inside a summarized day.
        var database = store.Copy("retention.duckdb");
        var maintenance = new AnalyticsMaintenance(database, NullLogger.Instance);
        using var connection = database.OpenConnection();
        var parameters = Parse("summary", "from=2026-10-20T00:00:00Z");
        Assert.NotNull(Cover(connection, parameters));

        maintenance.Run(connection, Options(database.Path, retention: TimeSpan.FromDays(9)), Now);

        Assert.Equal(Start.AddDays(2), AnalyticsCompaction.Progress(connection, AnalyticsDaySummaries.FromKey));
        Assert.Equal(0, Scalar(connection, $"SELECT count(*) FROM rollup_days WHERE minute < TIMESTAMP '{Start.AddDays(2):yyyy-MM-dd HH:mm:ss}'"));
        Assert.Equal(0, Scalar(connection, $"SELECT count(*) FROM consumer_days WHERE minute < TIMESTAMP '{Start.AddDays(2):yyyy-MM-dd HH:mm:ss}'"));
        Assert.Equal(Start.AddDays(2), Cover(connection, parameters)!.From);
        var withDays = Json(AnalyticsQuery.Run(connection, parameters, "local", SketchMergeMode.Native, days: true));
        Assert.Equal(Json(AnalyticsQuery.Run(connection, parameters, "local", SketchMergeMode.Native, days: false)), withDays);
        var top = Parse("top", "from=2026-10-20T00:00:00Z&by=consumer&orderBy=p99");
        Assert.Equal(new AnalyticsQuery.DayCover(Start.AddDays(2), Start.AddDays(10), AnalyticsDaySummaries.ConsumerGrain), Cover(connection, top));
        Assert.Equal(Json(AnalyticsQuery.Run(connection, top, "local", SketchMergeMode.Native, days: false)),
            Json(AnalyticsQuery.Run(connection, top, "local", SketchMergeMode.Native, days: true)));
        // The rows of the cut day that are kept still count (day 1 was compacted to one row per key at 00:00: all deleted).
        Assert.Equal(store.Data.Rollups.Where(r => r.Minute >= Start.AddDays(2)).Sum(r => r.Requests),
            AnalyticsQuery.Run(connection, parameters, "local").Summary!.Requests);
    }

    [Fact]
    public void A_day_not_yet_closed_is_not_summarized_and_its_rows_are_read_from_the_rollups()
    {
        var database = new AnalyticsDatabase(Path.Combine(store.Dir.FullName, "fresh.duckdb"));
        using var connection = database.OpenConnection();
        new AnalyticsDataGenerator().Traffic(Start, minutes: 3 * 1440, rowsPerMinute: 1).WriteTo(connection);
        var parameters = AnalyticsQueryParameters.Parse(AnalyticsQueryKind.Summary,
            [KeyValuePair.Create("from", new[] { "2026-11-01T00:00:00Z" }), KeyValuePair.Create("to", new[] { "2026-11-04T00:00:00Z" })], Now);
        Assert.Null(AnalyticsQuery.Cover(connection, parameters)); // nothing summarized yet

        // At 02:00 on day 2 the maintenance job closes days 0 and 1 (day 2 is still written).
        new AnalyticsMaintenance(database, NullLogger.Instance).Run(connection, Options(database.Path), new DateTimeOffset(Start.AddDays(2).AddHours(2)));

        Assert.Equal(Start.AddDays(2), AnalyticsCompaction.Progress(connection, AnalyticsDaySummaries.UntilKey));
        Assert.Equal(new AnalyticsQuery.DayCover(Start, Start.AddDays(2), 0), AnalyticsQuery.Cover(connection, parameters));
        Assert.Equal(Json(AnalyticsQuery.Run(connection, parameters, "local", SketchMergeMode.Native, days: false)),
            Json(AnalyticsQuery.Run(connection, parameters, "local", SketchMergeMode.Native, days: true)));
    }

    private static AnalyticsQuery.DayCover? Cover(DuckDBConnection connection, AnalyticsQueryParameters parameters)
    {
        var p = parameters.Kind == AnalyticsQueryKind.Timeseries ? AnalyticsQuery.Coarsened(connection, parameters) : parameters;
        return AnalyticsQuery.Cover(connection, p);
    }

    private static AnalyticsQueryParameters Parse(string kind, string query) =>
        AnalyticsQueryParameters.Parse(Enum.Parse<AnalyticsQueryKind>(kind, ignoreCase: true),
            query.Split('&').Select(q => q.Split('=', 2)).Select(q => KeyValuePair.Create(q[0], new[] { Uri.UnescapeDataString(q[1]) })), Now);

    private static long Scalar(DuckDBConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return Convert.ToInt64(command.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
    }

    private static string Json(AnalyticsResult result) => SketchMergeTests.Json(result);
}
