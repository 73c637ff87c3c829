using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Portcullis.Advice;
using Portcullis.Analytics;
using Portcullis.Configuration;
using Portcullis.Tests.Analytics;
using Xunit.Abstractions;

namespace Portcullis.Tests.Advice;

/// <summary>
/// The issue's performance figure: one advisor run (every registered detector, as the engine runs them each minute)
/// over 30 days of rollups for 200 routes × 1,000 consumers, in the tiered shape the store's compaction leaves
/// (AnalyticsQueryBenchmark's tiered data: 2.16 M rollup rows), plus 2 days of samples at that traffic's density and
/// 7 days (advice.window) of per-second arrivals when the store has that table. Runs only when
/// PORTCULLIS_BENCH_ADVICE_CYCLE names a folder (bench/advisor/cycle.sh); results in {folder}/results.txt.
/// </summary>
public sealed class AdviceCycleBenchmark(ITestOutputHelper output)
{
    public const string Variable = "PORTCULLIS_BENCH_ADVICE_CYCLE";
    private static readonly DateTime End = AnalyticsQueryBenchmark.End;
    private readonly List<string> _lines = [];

    [Fact]
    [Trait("Category", "Benchmark")]
    public void One_advisor_run_over_30_days_of_200_routes_and_1000_consumers()
    {
        if (Environment.GetEnvironmentVariable(Variable) is not { Length: > 0 } folder) return; // a benchmark, not a test: opt in
        Directory.CreateDirectory(folder);
        var store = Path.Combine(folder, "analytics-30d-tiered.duckdb");
        var database = new AnalyticsDatabase(store);
        using (var connection = database.OpenConnection())
        {
            if (Scalar(connection, "SELECT count(*) FROM rollups") == 0) Generate(connection);
            Say($"rollups {Scalar(connection, "SELECT count(*) FROM rollups"):N0} rows, samples {Scalar(connection, "SELECT count(*) FROM samples"):N0}, arrivals {(HasArrivals(connection) ? Scalar(connection, "SELECT count(*) FROM arrivals") : 0):N0}; file {new FileInfo(store).Length / 1048576.0:0} MiB");
        }

        var snapshot = Snapshot(folder, store);
        if (Environment.GetEnvironmentVariable(Variable + "_GENERATE_ONLY") == "1")
        {
            // bench/advisor/proxy-latency.sh: the store only, and a copy moved to end at the current hour (a gateway reads it with the real clock).
            if (Environment.GetEnvironmentVariable(Variable + "_SHIFTED") is { Length: > 0 } shifted) Shift(store, shifted);
            return;
        }

        var source = AnalyticsSource.Local(database);
        using var keepOpen = database.OpenConnection(); // the gateway's writer keeps the database instance open
        if (HasArrivals(keepOpen)) Execute(keepOpen, $"DELETE FROM arrivals WHERE minute >= TIMESTAMP '{End:yyyy-MM-dd HH:mm:ss}'"); // minutes an earlier run appended
        var runs = Environment.GetEnvironmentVariable(Variable + "_RUNS") is { Length: > 0 } n ? int.Parse(n, CultureInfo.InvariantCulture) : 5;
        var minute = 0;

        // Offline (`portcullis advise`, and the upper bound of the live cycle): every detector inline, the rate-limit replay included.
        Say("offline: every detector inline (OfflineAdviceRuntime), as `portcullis advise` and an upper bound of the gateway's cycle");
        var (engine, detectors) = Engine();
        Say($"{detectors.Count} detectors: {string.Join(", ", detectors.Select(d => d.Name))}");
        Cycles(engine, detectors, snapshot, source, keepOpen, OfflineAdviceRuntime.Instance, runs, ref minute);

        // Live: the engine as the gateway's AdviceService runs it each minute (a live runtime: the rate-limit replay on a thread
        // of its own, waited for at most BackgroundDetection.WaitBudget), new detectors so the first cycle is cold again.
        Say($"live: the engine as AdviceService runs it (live runtime; the rate-limit replay in the background, waited for at most {BackgroundDetection.WaitBudget.TotalMilliseconds:0} ms)");
        (engine, detectors) = Engine();
        Cycles(engine, detectors, snapshot, source, keepOpen, new LiveRuntime(), runs, ref minute);
    }

    private static (AdviceEngine Engine, List<IAdviceDetector> Detectors) Engine()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(End));
        var services = new ServiceCollection()
            .AddLogging(b => b.SetMinimumLevel(LogLevel.Warning))
            .AddSingleton<TimeProvider>(time)
            .AddAdviceDetectors()
            .BuildServiceProvider();
        var detectors = services.GetServices<IAdviceDetector>().ToList();
        // The engine as the gateway runs it each minute: every detector, then each patch validated (compiled in memory).
        return (new AdviceEngine(detectors, new AdvicePatchValidator(_ => null, null, time), services.GetRequiredService<ILogger<AdviceEngine>>()), detectors);
    }

    // A cold cycle, then `runs` more a minute apart, each after the minute's arrivals were appended (as the writer's flushes
    // add them). Live, the gateway's minute leaves the background replay time to complete between cycles: waited for here.
    private void Cycles(AdviceEngine engine, List<IAdviceDetector> detectors, GatewaySnapshot snapshot, AnalyticsSource source, DuckDB.NET.Data.DuckDBConnection connection, IAdviceRuntime runtime, int runs, ref int minute)
    {
        var limits = detectors.OfType<RateLimitAdvisor>().Single();
        var totals = new List<double>();
        // CPU time of the process over the run (all threads, DuckDB's included): on a machine shared with other work the
        // wall time measures the contention; CPU time / 2 is what the run needs of 2 idle cores at least.
        var cpu = new List<double>();
        var background = new List<double>();
        var perDetector = detectors.ToDictionary(d => d.Name, _ => new List<double>());
        FindingSet? result = null;
        for (var run = 0; run <= runs; run++)
        {
            if (run > 0 && HasArrivals(connection)) AppendMinute(connection, minute++);
            // The first run is the cold one (as after a start: the advisor's kept history and replays, DuckDB's caches and the patch validator's per-snapshot cache empty).
            var context = new AdviceContext { Now = End.AddMinutes(minute), Snapshot = snapshot, Settings = snapshot.Advice!, Analytics = source, Runtime = runtime };
            var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
            var total = Stopwatch.StartNew();
            result = engine.Run(context);
            var wall = total.Elapsed.TotalMilliseconds;
            var cpuMs = (Process.GetCurrentProcess().TotalProcessorTime - cpuBefore).TotalMilliseconds;
            var waited = Stopwatch.StartNew();
            Assert.True(limits.Background.WaitForCompletion(TimeSpan.FromMinutes(10)));
            var rest = runtime.IsLive ? $"; the background replay completed {waited.Elapsed.TotalMilliseconds:0} ms after the cycle (it ran {limits.Background.LastDuration.TotalMilliseconds:0} ms before the previous cycle collected it)" : "";
            var line = $"{wall:0} ms wall, {cpuMs:0} ms CPU, rate-limit arrivals read: {limits.LastMinutesRead} minute(s), load average {LoadAverage()}; "
                + string.Join(", ", result.LastRun!.Detectors.OrderByDescending(d => d.Duration).Select(d => $"{d.Name} {d.Duration.TotalMilliseconds:0}")) + rest;
            if (run == 0)
            {
                Say("  first (cold) cycle: " + line);
                continue;
            }

            Say($"  cycle {run}: " + line);
            cpu.Add(cpuMs);
            totals.Add(wall);
            if (runtime.IsLive && run > 1) background.Add(limits.Background.LastDuration.TotalMilliseconds);
            foreach (var d in result.LastRun!.Detectors) perDetector[d.Name].Add(d.Duration.TotalMilliseconds);
        }

        var errors = result!.LastRun!.Detectors.Where(d => d.Error is not null).Select(d => $"{d.Name}: {d.Error}").ToList();
        Say($"  steady state (median of {runs} cycles after the cold one): {Median(totals):0} ms wall (min {totals.Min():0}, max {totals.Max():0}), {Median(cpu):0} ms CPU; {result.Open.Count()} open findings "
            + $"({string.Join(", ", result.Open.GroupBy(e => e.Finding.Kind).Select(g => $"{g.Key} {g.Count()}"))}); load average {LoadAverage()}, {Environment.ProcessorCount} cores");
        if (background.Count > 0) Say($"  background rate-limit replay per cycle (median): {Median(background):0} ms");
        foreach (var (name, times) in perDetector.OrderByDescending(p => Median(p.Value))) Say($"    {name}: {Median(times):0} ms");
        foreach (var error in errors) Say($"  error: {error}");
        Assert.Empty(errors);
        Assert.Contains(result.Open, e => e.Finding.Kind == FindingKinds.RateLimitSuggested);
    }

    // One more minute of arrivals after End (minute k), in the generator's pattern: 500 (route, consumer) rows.
    private static void AppendMinute(DuckDB.NET.Data.DuckDBConnection connection, int k)
    {
        var first = ((7 * 1440) + k) * 500L;
        Execute(connection, $"""
            INSERT INTO arrivals
            WITH base AS (SELECT n, n // 500 AS m, ((n % 500) * 10 + (n // 500) % 10) % 5000 AS p, 1 + n % 6 AS k FROM range({first}, {first + 500}) t(n))
            {ArrivalSelect}
            FROM base
            """);
    }

    private sealed class LiveRuntime : IAdviceRuntime
    {
        public bool IsLive => true;

        public IReadOnlyList<Portcullis.Clusters.HealthTransition> HealthTransitions(DateTime since) => [];

        public IReadOnlyList<RuntimeCertificate> Certificates() => [];

        public IReadOnlyList<RuntimeJwks> Jwks() => [];

        public IReadOnlyList<(string Route, string Finding, long Count)> ResponseHeaderFindings() => [];
    }

    private static GatewaySnapshot Snapshot(string folder, string store)
    {
        var yaml = new StringBuilder($"listeners:\n  - {{ name: public, address: \"127.0.0.1:8080\" }}\nidentity:\n  apiKeys: {{ file: keys.yaml }}\nanalytics:\n  path: \"{store}\"\nrateLimits:\n  per-consumer: {{ key: [consumer], limit: 20, per: 1s, burst: 40 }}\nroutes:\n");
        for (var r = 0; r < 200; r++)
        {
            yaml.Append(CultureInfo.InvariantCulture, $"  - name: route-{r}\n    match: {{ pathPrefix: /route-{r} }}\n    auth: {{ apiKey: true }}\n    cluster: cluster-{r % 20}\n");
            if (r % 2 == 0) yaml.Append("    rateLimits: [per-consumer]\n");
        }

        yaml.Append("clusters:\n");
        for (var c = 0; c < 20; c++)
        {
            yaml.Append(CultureInfo.InvariantCulture, $"  cluster-{c}:\n    destinations: [http://10.0.{c}.1:8080, http://10.0.{c}.2:8080]\n");
            if (c % 2 == 0) yaml.Append("    healthCheck: { active: { path: /healthz, interval: 5s } }\n");
        }

        File.WriteAllText(Path.Combine(folder, "keys.yaml"), "consumers: {}\n");
        File.WriteAllText(Path.Combine(folder, "portcullis.yaml"), yaml.ToString());
        var result = new SnapshotBuilder(environment: _ => null).Build(Path.Combine(folder, "portcullis.yaml"));
        Assert.True(result.Succeeded, string.Join("\n", result.Diagnostics));
        return result.Snapshot!;
    }

    private void Generate(DuckDB.NET.Data.DuckDBConnection connection)
    {
        var watch = Stopwatch.StartNew();
        const int days = AnalyticsQueryBenchmark.Days;
        AnalyticsQueryBenchmark.Generate(connection, AnalyticsQueryBenchmark.Tier.Daily, 0, days - 7);
        AnalyticsQueryBenchmark.Generate(connection, AnalyticsQueryBenchmark.Tier.Hourly, days - 7, 5);
        AnalyticsQueryBenchmark.Generate(connection, AnalyticsQueryBenchmark.Tier.Minute, days - 2, 2);
        Execute(connection, $"INSERT OR REPLACE INTO analytics_meta VALUES ('{AnalyticsCompaction.HourlyKey}', '{End.AddDays(-2):yyyy-MM-ddTHH:mm:ssZ}'), ('{AnalyticsCompaction.DailyKey}', '{End.AddDays(-7):yyyy-MM-ddTHH:mm:ssZ}')");
        // Samples of the last 2 days at the data's density: ~7 % of ~10,500 requests a minute fail or are refused (all
        // kept) plus 1 % of the rest: 840 a minute, in time order as the writer appends them; 0.5 % unmatched paths.
        Execute(connection, $$"""
            INSERT INTO samples
            WITH base AS (SELECT n, n // 840 AS m, hash(n) % 1000 AS h, (n * 7919) % 5000 AS p FROM range({{2 * 1440 * 840}}) t(n))
            SELECT TIMESTAMP '{{End.AddDays(-2):yyyy-MM-dd HH:mm:ss}}' + to_minutes(m::BIGINT) + to_microseconds(((n % 840) * 71000)::BIGINT),
                   printf('%016x', n), NULL,
                   CASE WHEN h < 5 THEN NULL ELSE 'route-' || (((p // 5) * 7 + (p % 5) * 37) % 200) END,
                   CASE WHEN h < 5 THEN NULL ELSE 'cluster-' || ((((p // 5) * 7 + (p % 5) * 37) % 200) % 20) END,
                   CASE WHEN h < 5 THEN NULL ELSE 'consumer-' || (p // 5) END,
                   CASE WHEN h < 5 THEN NULL ELSE 'group-' || ((p // 5) % 10) END,
                   '10.' || ((p // 5) // 250) || '.' || ((p // 5) % 250) || '.1', 'GET', 'api.example.test',
                   CASE WHEN h < 5 THEN '/unknown/' || (n % 50) ELSE '/route-' || (((p // 5) * 7 + (p % 5) * 37) % 200) || '/{**rest}' END,
                   (CASE WHEN h < 5 THEN 404 WHEN h < 290 THEN 503 WHEN h < 720 THEN 429 WHEN h < 880 THEN 401 ELSE 200 END)::SMALLINT,
                   CASE WHEN h < 5 THEN 'route.unmatched' WHEN h < 290 THEN 'upstream.unavailable' WHEN h < 720 THEN 'ratelimit.exceeded' WHEN h < 880 THEN 'auth.missing' END,
                   CASE WHEN h < 720 AND h >= 5 THEN 'apikey.valid' END, NULL, 1, 300, 2500, 40000 + hash(n * 3) % 400000, NULL
            FROM base
            """);
        if (HasArrivals(connection))
        {
            // advice.window (7 days) of arrivals: each pair active one minute in ten (as the minute rollups), 1–6 busy seconds a minute.
            Execute(connection, $"""
                INSERT INTO arrivals
                WITH base AS (SELECT n, n // 500 AS m, ((n % 500) * 10 + (n // 500) % 10) % 5000 AS p, 1 + n % 6 AS k FROM range({7 * 1440 * 500}) t(n))
                {ArrivalSelect}
                FROM base
                """);
        }

        Execute(connection, "CHECKPOINT");
        Say($"generated in {watch.Elapsed.TotalSeconds:0} s");
    }

    // An arrivals row of pair p in minute m (from 7 days before End): 1–6 busy seconds, 1–11 requests each.
    private static readonly string ArrivalSelect = $"""
        SELECT TIMESTAMP '{End.AddDays(-7):yyyy-MM-dd HH:mm:ss}' + to_minutes(m::BIGINT), 'route-' || (((p // 5) * 7 + (p % 5) * 37) % 200),
               'consumer-' || (p // 5), 'group-' || ((p // 5) % 10), false, NULL,
               list_sum(list_transform(range(k), x -> 1 + (n + x) % 11))::BIGINT,
               list_transform(range(k), x -> ((hash(n) % 10 + x * 9) % 60)::UTINYINT),
               list_transform(range(k), x -> (1 + (n + x) % 11)::INTEGER)
        """;

    // A copy of the store with every timestamp moved by whole hours so its data ends at the current hour.
    private void Shift(string store, string copy)
    {
        var hours = (long)Math.Floor((DateTime.UtcNow - End).TotalHours);
        File.Copy(store, copy, overwrite: true);
        var database = new AnalyticsDatabase(copy);
        using var connection = database.OpenConnection();
        foreach (var (table, column) in new[] { ("rollups", "minute"), ("rollup_days", "minute"), ("samples", "ts"), ("arrivals", "minute") })
        {
            Execute(connection, $"UPDATE {table} SET {column} = {column} + to_hours({hours})");
        }

        Execute(connection, $"INSERT OR REPLACE INTO analytics_meta VALUES ('{AnalyticsCompaction.HourlyKey}', '{End.AddHours(hours).AddDays(-2):yyyy-MM-ddTHH:mm:ssZ}'), ('{AnalyticsCompaction.DailyKey}', '{End.AddHours(hours).AddDays(-7):yyyy-MM-ddTHH:mm:ssZ}')");
        Execute(connection, "CHECKPOINT");
        Say($"shifted copy {copy}: +{hours} h, data ends {End.AddHours(hours):yyyy-MM-ddTHH:mm}Z");
    }

    private static bool HasArrivals(DuckDB.NET.Data.DuckDBConnection connection) =>
        Scalar(connection, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'arrivals'") > 0;

    private static void Execute(DuckDB.NET.Data.DuckDBConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandTimeout = 0;
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    private static long Scalar(DuckDB.NET.Data.DuckDBConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return Convert.ToInt64(command.ExecuteScalar(), CultureInfo.InvariantCulture);
    }

    private static double Median(List<double> values) => values.Count == 0 ? 0 : values.Order().ElementAt(values.Count / 2);

    private static string LoadAverage() => File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Split(' ')[0] : "?";

    private void Say(string line)
    {
        output.WriteLine(line);
        _lines.Add(line);
        if (Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } folder) File.WriteAllLines(Path.Combine(folder, "results.txt"), _lines);
    }
}
