using System.Text;
using System.Text.Json;
using DuckDB.NET.Data;
using Portcullis.Analytics;
using Portcullis.Testing;

namespace Portcullis.Tests.Analytics;

/// <summary>Tiered rollups on a real DuckDB file: minute rows merged per hour, hourly rows per day, nothing lost.</summary>
public sealed class AnalyticsCompactionTests : IDisposable
{
    private static readonly DateTime Start = new(2026, 11, 1, 0, 0, 0, DateTimeKind.Utc);
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("portcullis-compaction-");

    public void Dispose() => _dir.Delete(recursive: true);

    private AnalyticsDatabase Database() => new(Path.Combine(_dir.FullName, "a.duckdb"));

    private CompiledAnalytics Options(TimeSpan? hourlyAfter = null, TimeSpan? dailyAfter = null) => new()
    {
        Path = Path.Combine(_dir.FullName, "a.duckdb"),
        FlushInterval = TimeSpan.FromSeconds(5),
        Retention = TimeSpan.FromDays(30),
        MaxSize = 1L << 30,
        SuccessRate = 0.01,
        QueueSize = 100,
        RawPaths = false,
        HourlyAfter = hourlyAfter ?? TimeSpan.FromHours(48),
        DailyAfter = dailyAfter ?? TimeSpan.FromDays(7),
    };

    private static DateTime Floor(DateTime t, TimeSpan size) => new(t.Ticks - t.Ticks % size.Ticks, DateTimeKind.Utc);

    private static string KeyOf(DateTime t, string? route, string? cluster, string? consumer, string? group, short status, string? reason) =>
        $"{t:O}|{route ?? "\0"}|{cluster ?? "\0"}|{consumer ?? "\0"}|{group ?? "\0"}|{status}|{reason ?? "\0"}";

    private sealed record Merged(long Requests, long BytesIn, long BytesOut, long LatencySum, long UpstreamSum, string Latency, string Upstream);

    private static string Text(long[] dense) => string.Join(",", dense.Select((n, b) => (n, b)).Where(x => x.n != 0).Select(x => $"{x.b}:{x.n}"));

    // What the rows of a resolution must be: the generated rows grouped by (their time floored to the tier) × key.
    private static Dictionary<string, Merged> Expected(IEnumerable<GeneratedRollup> rows, Func<DateTime, DateTime> tier) =>
        rows.GroupBy(r => KeyOf(tier(r.Minute), r.Route, r.Cluster, r.Consumer, r.ConsumerGroup, r.Status, r.Reason))
            .ToDictionary(g => g.Key, g => new Merged(g.Sum(r => r.Requests), g.Sum(r => r.BytesIn), g.Sum(r => r.BytesOut),
                g.Sum(r => r.LatenciesUs.Sum()), g.Sum(r => r.UpstreamUs?.Sum() ?? 0),
                Text(AnalyticsDataGenerator.Dense(g)), Text(AnalyticsDataGenerator.Dense(g, upstream: true))));

    // The stored rows of [from, to), one entry per row (a duplicate key fails: a tier has one row per key).
    private static Dictionary<string, Merged> Stored(DuckDBConnection connection, DateTime from, DateTime to) => Rows(connection, from, to).ToDictionary();

    // Every stored row of [from, to) in a fixed order.
    private static List<KeyValuePair<string, Merged>> Rows(DuckDBConnection connection, DateTime from, DateTime to)
    {
        using var command = connection.CreateCommand();
        command.CommandText = """
            SELECT minute, route, cluster, consumer, consumer_group, status, reason, requests, bytes_in, bytes_out, latency_us_sum, upstream_us_sum,
                   latency_buckets, latency_counts, upstream_buckets, upstream_counts
            FROM rollups WHERE minute >= $from AND minute < $to
            """;
        command.Parameters.Add(new DuckDBParameter("from", from));
        command.Parameters.Add(new DuckDBParameter("to", to));
        using var reader = command.ExecuteReader();
        var rows = new List<KeyValuePair<string, Merged>>();
        string? S(int i) => reader.IsDBNull(i) ? null : reader.GetString(i);
        string Sketch(int b, int c)
        {
            var dense = new long[LatencySketch.BucketCount];
            var buckets = reader.GetFieldValue<List<short>>(b);
            var counts = reader.GetFieldValue<List<long>>(c);
            for (var i = 0; i < buckets.Count; i++) dense[buckets[i]] += counts[i];
            return Text(dense);
        }

        while (reader.Read())
        {
            var key = KeyOf(DateTime.SpecifyKind(reader.GetDateTime(0), DateTimeKind.Utc), S(1), S(2), S(3), S(4), reader.GetInt16(5), S(6));
            rows.Add(KeyValuePair.Create(key, new Merged(reader.GetInt64(7), reader.GetInt64(8), reader.GetInt64(9), reader.GetInt64(10), reader.GetInt64(11), Sketch(12, 13), Sketch(14, 15))));
        }

        return [.. rows.OrderBy(r => r.Key, StringComparer.Ordinal).ThenBy(r => r.Value.ToString(), StringComparer.Ordinal)];
    }

    private static void AssertSame(Dictionary<string, Merged> expected, Dictionary<string, Merged> actual)
    {
        Assert.Equal(expected.Count, actual.Count);
        foreach (var (key, value) in expected) Assert.Equal(value, actual[key]);
    }

    private static long Scalar(DuckDBConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return Convert.ToInt64(command.ExecuteScalar());
    }

    [Fact]
    public void Minute_rows_older_than_hourlyAfter_become_one_row_per_hour_and_key_with_exact_totals_and_sketches()
    {
        var database = Database();
        var generator = new AnalyticsDataGenerator().Traffic(Start, minutes: 4 * 60, rowsPerMinute: 6);
        var now = Start.AddHours(4 + 48).AddMinutes(30);
        generator.Traffic(now.AddHours(-3), minutes: 150, rowsPerMinute: 6, seed: 2); // recent: kept per minute
        using var connection = database.OpenConnection();
        generator.WriteTo(connection);
        var old = generator.Rollups.Where(r => r.Minute < Start.AddHours(4)).ToList();
        var recent = generator.Rollups.Where(r => r.Minute >= Start.AddHours(4)).ToList();
        var recentBefore = Rows(connection, Start.AddHours(4), now);

        Assert.Equal((4, 0), AnalyticsCompaction.Run(connection, Options(), now));

        AssertSame(Expected(old, t => Floor(t, TimeSpan.FromHours(1))), Stored(connection, Start, Start.AddHours(4)));
        Assert.True(Expected(old, t => Floor(t, TimeSpan.FromHours(1))).Count < old.Count, "nothing to merge: the test data has one row per hour and key");
        Assert.Equal(recentBefore, Rows(connection, Start.AddHours(4), now)); // the same rows, untouched
        Assert.Equal(recent.Count, Scalar(connection, $"SELECT count(*) FROM rollups WHERE minute >= TIMESTAMP '{Start.AddHours(4):yyyy-MM-dd HH:mm:ss}'"));
        Assert.Equal(generator.Rollups.Sum(r => r.Requests), Scalar(connection, "SELECT sum(requests)::BIGINT FROM rollups"));
        Assert.Equal(Start.AddHours(4), AnalyticsCompaction.Progress(connection, AnalyticsCompaction.HourlyKey)); // up to now-48h, floored to the hour
    }

    [Fact]
    public void Nine_days_of_minutes_become_minutes_hours_and_days_in_bounded_runs_and_re_running_changes_nothing()
    {
        var database = Database();
        var generator = new AnalyticsDataGenerator().Traffic(Start, minutes: 9 * 1440, rowsPerMinute: 1);
        var now = Start.AddDays(9);
        using (var connection = database.OpenConnection())
        {
            generator.WriteTo(connection);
            // At most 48 hours and (here) one day per run, days only once their hours are done: the backlog takes 4 runs.
            var runs = new List<(int, int)>();
            for (var i = 0; i < 5; i++) runs.Add(AnalyticsCompaction.Run(connection, Options(), now, maxHours: 48, maxDays: 1));
            Assert.Equal([(48, 1), (48, 1), (48, 0), (24, 0), (0, 0)], runs);

            // The tiered shape: days before now-7d, hours before now-48h, minutes after.
            var daily = now.AddDays(-7);
            var hourly = now.AddHours(-48);
            AssertSame(Expected(generator.Rollups.Where(r => r.Minute < daily), t => Floor(t, TimeSpan.FromDays(1))), Stored(connection, Start, daily));
            AssertSame(Expected(generator.Rollups.Where(r => r.Minute >= daily && r.Minute < hourly), t => Floor(t, TimeSpan.FromHours(1))), Stored(connection, daily, hourly));
            AssertSame(Expected(generator.Rollups.Where(r => r.Minute >= hourly), t => t), Stored(connection, hourly, now));

            // Merging a compacted range again, or forgetting the progress and compacting all again: the same rows.
            var before = Rows(connection, Start, now);
            using (var transaction = connection.BeginTransaction())
            {
                AnalyticsCompaction.Merge(connection, Start, Start.AddDays(1));
                AnalyticsCompaction.Merge(connection, daily, daily.AddHours(1));
                transaction.Commit();
            }

            using (var command = connection.CreateCommand())
            {
                command.CommandText = "DELETE FROM analytics_meta WHERE key LIKE 'compaction.%'";
                command.ExecuteNonQuery();
            }

            while (AnalyticsCompaction.Run(connection, Options(), now) != (0, 0))
            {
            }

            Assert.Equal(before, Rows(connection, Start, now));
        }

        // A restart (a new database instance on the same file): the progress is remembered, the next run only takes the new hour.
        var reopened = new AnalyticsDatabase(database.Path);
        using (var connection = reopened.OpenConnection())
        {
            Assert.Equal((0, 0), AnalyticsCompaction.Run(connection, Options(), now));
            Assert.Equal((1, 0), AnalyticsCompaction.Run(connection, Options(), now.AddHours(1)));
            Assert.Equal(60 * 47, Scalar(connection, $"SELECT count(*) FROM rollups WHERE minute >= TIMESTAMP '{now.AddHours(-47):yyyy-MM-dd HH:mm:ss}'"));
        }
    }

    [Fact]
    public void The_query_api_answers_the_same_summary_and_top_before_and_after_compaction()
    {
        var database = Database();
        var generator = new AnalyticsDataGenerator().Traffic(Start, minutes: 3 * 1440, rowsPerMinute: 2);
        var now = Start.AddDays(3 + 7);
        using var connection = database.OpenConnection();
        generator.WriteTo(connection);
        (AnalyticsQueryKind, (string, string)[])[] queries =
        [
            (AnalyticsQueryKind.Summary, []),
            (AnalyticsQueryKind.Summary, [("consumer", "alice")]),
            (AnalyticsQueryKind.Summary, [("status", "5xx")]),
            (AnalyticsQueryKind.Top, [("by", "route"), ("orderBy", "p99")]),
            (AnalyticsQueryKind.Top, [("by", "consumer"), ("orderBy", "requests")]),
            (AnalyticsQueryKind.Top, [("by", "reason"), ("orderBy", "errors")]),
            (AnalyticsQueryKind.Timeseries, [("step", "1d"), ("groupBy", "route")]),
        ];
        string Answers() => string.Join("\n", queries.Select(q => Json(connection, q.Item1,
            [("from", Start.ToString("O")), ("to", Start.AddDays(3).ToString("O")), .. q.Item2], now)));
        var before = Answers();
        while (AnalyticsCompaction.Run(connection, Options(), now) != (0, 0))
        {
        }

        Assert.True(Scalar(connection, "SELECT count(*) FROM rollups") < generator.Rollups.Count / 5);
        Assert.Contains("\"p99\":", before, StringComparison.Ordinal);
        Assert.Equal(before, Answers());
    }

    [Fact]
    public void A_timeseries_step_finer_than_the_stored_resolution_is_rounded_up_and_the_answer_says_so()
    {
        var database = Database();
        var generator = new AnalyticsDataGenerator().Traffic(Start, minutes: 9 * 1440, rowsPerMinute: 1);
        var now = Start.AddDays(9);
        using var connection = database.OpenConnection();
        generator.WriteTo(connection);
        string Step(string from, string step) => Parameters(connection, AnalyticsQueryKind.Timeseries, [("from", from), ("step", step)], now).StepName;

        Assert.Equal("5m", Step("now-3d", "5m")); // not compacted yet: as asked
        while (AnalyticsCompaction.Run(connection, Options(), now) != (0, 0))
        {
        }

        Assert.Equal("5m", Step("now-24h", "5m")); // per minute there
        Assert.Equal("1h", Step("now-3d", "5m"));  // starts in the hourly part
        Assert.Equal("1h", Step("now-3d", "1h"));
        Assert.Equal("1d", Step("now-8d", "1h"));  // starts in the daily part

        // The rounded series counts every request of its hours once.
        var p = AnalyticsQueryParameters.Parse(AnalyticsQueryKind.Timeseries, Query([("from", "now-3d"), ("to", "now-2d"), ("step", "15m")]), now);
        var series = AnalyticsQuery.Run(connection, p, "local").Series!.Single();
        Assert.Equal(24, series.Points.Count);
        var hourly = generator.Rollups.Where(r => r.Minute >= now.AddDays(-3) && r.Minute < now.AddDays(-2)).GroupBy(r => Floor(r.Minute, TimeSpan.FromHours(1)))
            .ToDictionary(g => g.Key, g => g.Sum(r => r.Requests));
        Assert.All(series.Points, point => Assert.Equal(hourly[point.T], point.Requests));
    }

    private static IEnumerable<KeyValuePair<string, string[]>> Query((string, string)[] query) => query.Select(q => KeyValuePair.Create(q.Item1, new[] { q.Item2 }));

    private static AnalyticsQueryParameters Parameters(DuckDBConnection connection, AnalyticsQueryKind kind, (string, string)[] query, DateTime now)
    {
        var result = AnalyticsQuery.Run(connection, AnalyticsQueryParameters.Parse(kind, Query(query), now), "local");
        return result.Parameters;
    }

    private static string Json(DuckDBConnection connection, AnalyticsQueryKind kind, (string, string)[] query, DateTime now)
    {
        var result = AnalyticsQuery.Run(connection, AnalyticsQueryParameters.Parse(kind, Query(query), now), "local");
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream))
        {
            writer.WriteStartObject();
            result.WriteJson(writer);
            writer.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }
}
