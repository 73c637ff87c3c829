using System.Diagnostics;
using Portcullis.Analytics;
using Xunit.Abstractions;

namespace Portcullis.Tests.Analytics;

/// <summary>
/// The issue's query figure: 30 days × 200 routes × 1,000 consumers of per-minute rollups, and how long the
/// query API's queries take on it. Runs only when PORTCULLIS_BENCH_ANALYTICS names a folder (bench/analytics-query.sh);
/// the store is generated there once (SQL, reproducible) and reused.
/// </summary>
/// <remarks>
/// The data: 1,000 consumers each call 5 of the 200 routes (5,000 consumer × route pairs, 20 clusters, 10 consumer
/// groups); every pair is active one minute in ten, so each minute has 500 rows and 30 days 21.6 M rows. A row counts
/// 4 to 66 requests over 1 to 6 latency buckets; 2 % are 503 upstream.unavailable, 3 % 429 ratelimit.exceeded,
/// 2 % 401 auth.missing (no upstream sketch), the rest 200. With PORTCULLIS_BENCH_ANALYTICS_DENSITY=hourly: one row per
/// pair and hour (3.6 M rows, 4 to 20 buckets a row: six minute rows of 1 to 6 buckets overlap once merged), the shape an hourly compaction of older minutes would leave.
/// With PORTCULLIS_BENCH_ANALYTICS_DENSITY=tiered: what the store's compaction leaves with its defaults (AnalyticsCompaction,
/// hourlyAfter 48h, dailyAfter 7d): the last 48 h per minute (1.44 M rows), 48 h to 7 d one row per pair and hour (600 k rows),
/// older one row per pair and day (115 k rows, 150 to 299 buckets a row: 144 minute rows of 1 to 6 buckets spread over
/// ~345 buckets, merged), 2.16 M rows in all.
/// </remarks>
public sealed class AnalyticsQueryBenchmark(ITestOutputHelper output)
{
    public const string Variable = "PORTCULLIS_BENCH_ANALYTICS";
    internal static readonly DateTime End = new(2026, 12, 1, 0, 0, 0, DateTimeKind.Utc);
    internal const int Days = 30;
    private const int RowsPerMinute = 500;

    [Fact]
    [Trait("Category", "Benchmark")]
    public void Queries_over_30_days_of_rollups()
    {
        if (Environment.GetEnvironmentVariable(Variable) is not { Length: > 0 } folder) return; // a benchmark, not a test: opt in
        Directory.CreateDirectory(folder);
        // PORTCULLIS_BENCH_ANALYTICS_DENSITY=hourly: one row per pair and hour instead (what an hourly compaction of old minutes would leave).
        var density = Environment.GetEnvironmentVariable(Variable + "_DENSITY") is { Length: > 0 } d ? d : "minute";
        if (density is not ("minute" or "hourly" or "tiered")) throw new InvalidOperationException($"{Variable}_DENSITY must be minute, hourly or tiered");
        var database = new AnalyticsDatabase(Path.Combine(folder, density == "minute" ? "analytics-30d.duckdb" : $"analytics-30d-{density}.duckdb"));
        using (var connection = database.OpenConnection())
        {
            if (Count(connection) == 0)
            {
                var watch = Stopwatch.StartNew();
                if (density == "tiered")
                {
                    // Oldest first, as the tiers lie: days 0–22 daily, then 5 days hourly, then 2 days per minute.
                    Generate(connection, Tier.Daily, 0, Days - 7);
                    Generate(connection, Tier.Hourly, Days - 7, 5);
                    Generate(connection, Tier.Minute, Days - 2, 2);
                    // The compaction's progress, as it would have written it: timeseries steps are rounded up to the tiers.
                    using var meta = connection.CreateCommand();
                    meta.CommandText = $"INSERT OR REPLACE INTO analytics_meta VALUES ('{AnalyticsCompaction.HourlyKey}', '{End.AddDays(-2):yyyy-MM-ddTHH:mm:ssZ}'), ('{AnalyticsCompaction.DailyKey}', '{End.AddDays(-7):yyyy-MM-ddTHH:mm:ssZ}')";
                    meta.ExecuteNonQuery();
                }
                else
                {
                    Generate(connection, density == "hourly" ? Tier.Hourly : Tier.Minute, 0, Days);
                }

                using var checkpoint = connection.CreateCommand();
                checkpoint.CommandText = "CHECKPOINT";
                checkpoint.ExecuteNonQuery();
                Say($"generated in {watch.Elapsed.TotalSeconds:0.0} s");
            }

            if (Scalar(connection, "SELECT count(*) FROM samples") == 0) GenerateSamples(connection);
            // The day summaries the maintenance job writes after compaction (every day closed at End: all 30).
            var summaryWatch = Stopwatch.StartNew();
            if (density == "tiered" && AnalyticsDaySummaries.Run(connection, End, int.MaxValue) is > 0 and var days)
            {
                Say($"day summaries: {days} days in {summaryWatch.Elapsed.TotalSeconds:0.0} s; {Scalar(connection, "SELECT count(*) FROM rollup_days"):N0} rows, " +
                    $"{Scalar(connection, "SELECT sum(len(latency_buckets))::BIGINT FROM rollup_days"):N0} latency sketch entries");
                using var checkpoint = connection.CreateCommand();
                checkpoint.CommandText = "CHECKPOINT";
                checkpoint.ExecuteNonQuery();
            }

            if (density == "tiered")
                Say($"consumer_days (top by consumer orderBy p99): {Scalar(connection, "SELECT count(*) FROM consumer_days"):N0} rows, {Scalar(connection, "SELECT coalesce(sum(len(latency_buckets)), 0)::BIGINT FROM consumer_days"):N0} latency sketch entries");
            Say($"rows: {Count(connection):N0}; requests: {Scalar(connection, "SELECT sum(requests)::BIGINT FROM rollups"):N0}; samples: {Scalar(connection, "SELECT count(*) FROM samples"):N0}");
        }

        Say($"file: {new FileInfo(database.Path).Length / 1048576.0:0} MiB");
        var now = End;
        (string Name, AnalyticsQueryKind Kind, (string, string)[] Query)[] queries =
        [
            ("summary 30d", AnalyticsQueryKind.Summary, [("from", "now-30d")]),
            ("summary 24h", AnalyticsQueryKind.Summary, [("from", "now-24h")]),
            ("summary 1h", AnalyticsQueryKind.Summary, [("from", "now-1h")]),
            // Windows ending at 23:59: the last day is not whole, so its 720 k minute rows are read (the worst case for the day summaries).
            ("summary 30d to 23:59", AnalyticsQueryKind.Summary, [("from", "2026-10-31T23:59:00Z"), ("to", "2026-11-30T23:59:00Z")]),
            ("summary 30d consumer=consumer-42", AnalyticsQueryKind.Summary, [("from", "now-30d"), ("consumer", "consumer-42")]),
            ("top 30d by consumer", AnalyticsQueryKind.Top, [("from", "now-30d"), ("by", "consumer")]),
            ("top 30d by route orderBy p99", AnalyticsQueryKind.Top, [("from", "now-30d"), ("by", "route"), ("orderBy", "p99")]),
            ("top 30d to 23:59 by route orderBy p99", AnalyticsQueryKind.Top, [("from", "2026-10-31T23:59:00Z"), ("to", "2026-11-30T23:59:00Z"), ("by", "route"), ("orderBy", "p99")]),
            ("top 30d by consumer orderBy p99", AnalyticsQueryKind.Top, [("from", "now-30d"), ("by", "consumer"), ("orderBy", "p99")]),
            ("top 30d by route orderBy errors", AnalyticsQueryKind.Top, [("from", "now-30d"), ("by", "route"), ("orderBy", "errors")]),
            ("top 30d by route orderBy errorRate", AnalyticsQueryKind.Top, [("from", "now-30d"), ("by", "route"), ("orderBy", "errorRate")]),
            ("top 30d by cluster orderBy bytesOut", AnalyticsQueryKind.Top, [("from", "now-30d"), ("by", "cluster"), ("orderBy", "bytesOut")]),
            ("top 24h by consumer", AnalyticsQueryKind.Top, [("from", "now-24h"), ("by", "consumer")]),
            ("timeseries 30d (1d)", AnalyticsQueryKind.Timeseries, [("from", "now-30d")]),
            ("timeseries 30d 1h by route", AnalyticsQueryKind.Timeseries, [("from", "now-30d"), ("step", "1h"), ("groupBy", "route")]),
            ("timeseries 24h (5m)", AnalyticsQueryKind.Timeseries, [("from", "now-24h")]),
            ("timeseries 1h (1m) by consumer", AnalyticsQueryKind.Timeseries, [("from", "now-1h"), ("groupBy", "consumer")]),
            ("samples 30d", AnalyticsQueryKind.Samples, [("from", "now-30d")]),
            ("samples 30d minStatus=500 consumer=…", AnalyticsQueryKind.Samples, [("from", "now-30d"), ("minStatus", "500"), ("consumer", "consumer-42")]),
        ];
        // The gateway's writer keeps the database instance open; so does this connection, so a query's time is the
        // query's, not opening the file.
        using var keepOpen = database.OpenConnection();
        Say($"load average before: {LoadAverage()}");
        // Each query runs with the day summaries (the default) and without (every rollup row, as before them), alternating,
        // so a busy machine slows both alike: the two columns compare within one run.
        Say("query | with day summaries: median ms (min–max) | without: median ms (min–max); 5 runs each after 1 warm-up, alternating");
        foreach (var (name, kind, query) in queries)
        {
            var parameters = AnalyticsQueryParameters.Parse(kind, query.Select(q => KeyValuePair.Create(q.Item1, new[] { q.Item2 })), now);
            var times = new[] { new List<double>(), new List<double>() };
            string? step = null;
            for (var run = 0; run < 12; run++)
            {
                var days = run % 2 == 0;
                var watch = Stopwatch.StartNew();
                using var connection = database.OpenConnection();
                step = AnalyticsQuery.Run(connection, parameters, "local", SketchMergeMode.Native, days).Parameters.StepName;
                if (run > 1) times[days ? 0 : 1].Add(watch.Elapsed.TotalMilliseconds);
            }

            // The same answer either way, on this data too.
            using (var check = database.OpenConnection())
            {
                if (Json(AnalyticsQuery.Run(check, parameters, "local", SketchMergeMode.Native, true)) != Json(AnalyticsQuery.Run(check, parameters, "local", SketchMergeMode.Native, false)))
                    throw new InvalidOperationException($"{name}: the answer with day summaries differs from the one without");
            }

            foreach (var t in times) t.Sort();
            Say($"{name}{(kind == AnalyticsQueryKind.Timeseries && step != parameters.StepName ? $" [step used: {step}]" : "")} | " +
                $"{times[0][2]:0} ({times[0][0]:0}–{times[0][^1]:0}) | {times[1][2]:0} ({times[1][0]:0}–{times[1][^1]:0})");
        }

        Say($"load average after: {LoadAverage()}");
    }

    private static string Json(AnalyticsResult result)
    {
        using var stream = new MemoryStream();
        using (var writer = new System.Text.Json.Utf8JsonWriter(stream))
        {
            writer.WriteStartObject();
            result.WriteJson(writer);
            writer.WriteEndObject();
        }

        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    private static string LoadAverage() => File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Trim() : "?";

    // 2 M samples over the 30 days (every 503/429/401 of a real store would be far more; the query reads the newest).
    private static void GenerateSamples(DuckDB.NET.Data.DuckDBConnection connection)
    {
        using var command = connection.CreateCommand();
        command.CommandTimeout = 0;
        command.CommandText = $"""
            INSERT INTO samples
            SELECT TIMESTAMP '{End.AddDays(-Days):yyyy-MM-dd HH:mm:ss}' + to_microseconds((n * 1296)::BIGINT), 'req-' || n, NULL,
                   'route-' || (n % 200), 'cluster-' || (n % 20), 'consumer-' || (n % 1000), 'group-' || (n % 10), '192.0.2.1', 'GET', 'api.example.test',
                   '/orders/' || chr(123) || 'id' || chr(125), CASE WHEN n % 7 = 0 THEN 503 WHEN n % 7 = 1 THEN 429 ELSE 200 END::SMALLINT,
                   CASE WHEN n % 7 = 0 THEN 'upstream.unavailable' WHEN n % 7 = 1 THEN 'ratelimit.exceeded' END, 'apikey.valid', 'admitted',
                   1::TINYINT, 100, 2000, 1000 + n % 5000, CASE WHEN n % 7 = 1 THEN NULL ELSE 800 + n % 4000 END
            FROM range(2000000) t(n)
            """;
        command.ExecuteNonQuery();
    }

    private readonly List<string> _lines = [];

    // To the test output and to {folder}/results.txt (the output is shown only with a verbose logger).
    private void Say(string line)
    {
        output.WriteLine(line);
        _lines.Add(line);
        if (Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } folder) File.WriteAllLines(Path.Combine(folder, "results.txt"), _lines);
    }

    internal enum Tier { Minute, Hourly, Daily }

    // Days [firstDay, firstDay + days) of the 30 at one resolution.
    internal static void Generate(DuckDB.NET.Data.DuckDBConnection connection, Tier tier, int firstDay, int days)
    {
        var (minute, pair, buckets, rowCount) = tier switch
        {
            Tier.Minute => ($"n // {RowsPerMinute}", $"((n % {RowsPerMinute}) * 10 + (n // {RowsPerMinute}) % 10) % 5000", "1 + n % 6", days * 1440L * RowsPerMinute),
            Tier.Hourly => ("(n // 5000) * 60", "n % 5000", "4 + n % 17", days * 24L * 5000),
            _ => ("(n // 5000) * 1440", "n % 5000", "150 + n % 150", days * 5000L),
        };
        // A day merges 144 minute rows of 1–6 buckets spread over ~345: most buckets of that range are in it.
        var spacing = tier == Tier.Daily ? 1 : 9;
        using var command = connection.CreateCommand();
        command.CommandTimeout = 0;
        // n → minute m = n / 500 and row j = n % 500; pair p = (j·10 + m mod 10) mod 5000 (each pair every 10th minute);
        // consumer c = p / 5, route r = (c·7 + (p mod 5)·37) mod 200. hash() spreads statuses and latencies.
        command.CommandText = $"""
            INSERT INTO rollups
            WITH base AS (
                SELECT n, {minute} AS m, {pair} AS p, hash(n) % 100 AS h, hash(n * 31) % 300 AS b, {buckets} AS k
                FROM range({rowCount}) t(n)),
            rows AS (
                SELECT m, p // 5 AS c, ((p // 5) * 7 + (p % 5) * 37) % 200 AS r, h, k,
                       CASE WHEN h < 2 THEN 503 WHEN h < 5 THEN 429 WHEN h < 7 THEN 401 ELSE 200 END AS status,
                       list_transform(range(k), x -> (400 + b + x * {spacing})::SMALLINT) AS buckets,
                       list_transform(range(k), x -> (1 + (n + x) % 11)::BIGINT) AS counts
                FROM base)
            SELECT TIMESTAMP '{End.AddDays(firstDay - Days):yyyy-MM-dd HH:mm:ss}' + to_minutes(m::BIGINT),
                   'route-' || r, 'cluster-' || (r % 20), 'consumer-' || c, 'group-' || (c % 10), status::SMALLINT,
                   CASE status WHEN 503 THEN 'upstream.unavailable' WHEN 429 THEN 'ratelimit.exceeded' WHEN 401 THEN 'auth.missing' END,
                   list_sum(counts)::BIGINT, list_sum(counts) * 300, list_sum(counts) * 2500,
                   list_sum(list_transform(range(k), x -> (1 + (x % 11)) * 40000))::BIGINT,
                   CASE WHEN status IN (429, 401) THEN 0 ELSE list_sum(counts) * 20000 END::BIGINT,
                   buckets, counts,
                   CASE WHEN status IN (429, 401) THEN []::SMALLINT[] ELSE list_transform(buckets, x -> (x - 30)::SMALLINT) END,
                   CASE WHEN status IN (429, 401) THEN []::BIGINT[] ELSE counts END
            FROM rows
            """;
        command.ExecuteNonQuery();
    }

    private static long Count(DuckDB.NET.Data.DuckDBConnection connection) => Scalar(connection, "SELECT count(*) FROM rollups");

    private static long Scalar(DuckDB.NET.Data.DuckDBConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return Convert.ToInt64(command.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
    }
}
