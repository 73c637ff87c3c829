using DuckDB.NET.Data;
using Portcullis.Advice;
using Portcullis.Analytics;
using Portcullis.Configuration;

namespace Portcullis.Tests.Advice;

/// <summary>
/// A real temporary DuckDB store with realistic clean traffic for the anomaly detectors, written as the gateway's
/// flusher and compaction leave it: hour rows for the 3 days before the last 8 hours, minute rows for the last 8 hours. Four routes,
/// 30 consumers with heavy-tailed (Pareto) rates, a diurnal shape, ~3 % 404s from the upstream, ~1 % 401s
/// (auth.missing), ~0.5 % 5xx, a few unmatched requests (/favicon.ico, typos), one client whose token expired
/// 20 minutes ago and keeps calling at its usual pace (jwt.expired), and samples of every ≥ 400 request plus
/// ~1 % of successes. Incidents are added on top by each test.
/// </summary>
internal sealed class AnomalyTestData : IDisposable
{
    public static readonly DateTime Now = new(2026, 12, 4, 14, 0, 30, DateTimeKind.Utc);
    public const string ExpiredClient = "203.0.113.50";

    public static readonly string[] Routes = ["orders", "users", "search", "admin"];

    private readonly string _dir = Directory.CreateTempSubdirectory("portcullis-anomaly-").FullName;
    private readonly List<object?[]> _rollups = [];
    private readonly List<object?[]> _samples = [];
    private readonly Random _random = new(17);
    private int _requestId;

    public AnomalyTestData(bool rawPaths = false, bool clean = true, string extraRoutes = "")
    {
        Database = new AnalyticsDatabase(Path.Combine(_dir, "analytics.duckdb"));
        File.WriteAllText(Path.Combine(_dir, "portcullis.yaml"), $$"""
            listeners: [{ name: public, address: 127.0.0.1:8080 }]
            analytics: { path: analytics.duckdb, compaction: { hourlyAfter: 8h }, samples: { rawPaths: {{(rawPaths ? "true" : "false")}} } }
            routes:
              - { name: orders, match: { path: "/orders/{id}" }, respond: { status: 200 } }
              - { name: users, match: { path: "/users/{id}" }, respond: { status: 200 } }
              - { name: search, match: { pathPrefix: /search }, respond: { status: 200 } }
              - { name: admin, match: { pathPrefix: /admin }, respond: { status: 200 } }
              {{extraRoutes}}
            """);
        var build = new SnapshotBuilder().Build(Path.Combine(_dir, "portcullis.yaml"));
        Assert.True(build.Succeeded, string.Join("\n", build.Diagnostics));
        Snapshot = build.Snapshot!;
        if (clean) Clean();
    }

    public AnalyticsDatabase Database { get; }

    public GatewaySnapshot Snapshot { get; }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public AdviceContext Context(DateTime? now = null, AdviceAnomalyOptions? options = null) => new()
    {
        Now = now ?? Now,
        Snapshot = Snapshot,
        Settings = (Snapshot.Advice ?? new CompiledAdvice { Interval = TimeSpan.FromMinutes(1), Window = TimeSpan.FromDays(7) }) with { Anomalies = options ?? new() },
        Analytics = AnalyticsSource.Local(Database),
        Runtime = OfflineAdviceRuntime.Instance,
    };

    public static IReadOnlyList<Finding> Run(IAdviceDetector detector, AdviceContext context) => detector.Detect(context);

    // Consumer i's share: Pareto-distributed weights (a few heavy callers, a long tail).
    private static double Weight(int consumer) => 1 / Math.Pow(consumer, 1.1);

    private static double Diurnal(DateTime t) => 1 + (0.6 * Math.Sin(2 * Math.PI * (t.Hour + (t.Minute / 60.0) - 8) / 24));

    private void Clean()
    {
        var hourEnd = AnomalyWindows.Floor(Now.AddHours(-8), TimeSpan.FromHours(1));
        for (var hour = hourEnd.AddDays(-3).AddHours(-2); hour < hourEnd; hour = hour.AddHours(1)) Period(hour, 60, samples: false);
        for (var minute = hourEnd; minute <= Now; minute = minute.AddMinutes(1))
        {
            var share = minute == AnomalyWindows.Floor(Now, TimeSpan.FromMinutes(1)) ? (Now - minute).TotalMinutes : 1;
            Period(minute, share, samples: true);
        }

        Flush();
    }

    // One period (an hour row or a minute row) of every route × consumer at the diurnal rate.
    private void Period(DateTime start, double minutes, bool samples)
    {
        var factor = Diurnal(start) * minutes;
        for (var c = 1; c <= 30; c++)
        {
            var consumer = $"c{c:00}";
            foreach (var route in Routes)
            {
                if (route == "admin" ? c != 1 : (c + Array.IndexOf(Routes, route)) % 3 == 0) continue; // each consumer calls two of the three public routes
                var mean = 400 * Weight(c) * factor * (route == "search" ? 0.5 : 1);
                var n = Poisson(mean);
                if (n == 0) continue;
                var notFound = Binomial(n, 0.03);
                var errors = Binomial(n, 0.005);
                var ok = n - notFound - errors;
                var latency = route == "search" ? 40_000 : 15_000;
                Rollup(start, route, consumer, 200, null, ok, latency);
                Rollup(start, route, consumer, 404, null, notFound, latency);
                Rollup(start, route, consumer, 502, "upstream.error", errors, latency);
                if (!samples) continue;
                var client = $"10.1.0.{c}";
                for (var i = 0; i < notFound; i++) Sample(start.AddSeconds(_random.NextDouble() * 60 * minutes), route, consumer, client, Template(route), 404, null);
                for (var i = 0; i < errors; i++) Sample(start.AddSeconds(_random.NextDouble() * 60 * minutes), route, consumer, client, Template(route), 502, "upstream.error");
                var sampled = Binomial(ok, 0.01);
                for (var i = 0; i < sampled; i++) Sample(start.AddSeconds(_random.NextDouble() * 60 * minutes), route, consumer, client, Template(route), 200, null);
            }
        }

        // Anonymous callers without a credential (401 auth.missing) on admin, from a handful of addresses.
        var anonymous = Poisson(3 * factor);
        Rollup(start, "admin", null, 401, "auth.missing", anonymous, 300);
        for (var i = 0; i < anonymous && samples; i++) Sample(start.AddSeconds(_random.NextDouble() * 60 * minutes), "admin", null, $"198.51.100.{_random.Next(1, 40)}", "/admin/{**rest}", 401, "auth.missing");

        // A few unmatched requests: browsers asking for a favicon, typos.
        var unmatched = Poisson(0.5 * factor);
        Rollup(start, null, null, 404, "route.unmatched", unmatched, 200);
        for (var i = 0; i < unmatched && samples; i++)
        {
            string[] paths = ["/favicon.ico", "/robots.txt", "/order/12", "/", "/user"];
            Sample(start.AddSeconds(_random.NextDouble() * 60 * minutes), null, null, $"198.51.100.{_random.Next(1, 200)}", paths[_random.Next(paths.Length)], 404, "route.unmatched");
        }

        // The client whose token expired 20 minutes ago: 10 requests a minute as always, now refused.
        var expired = start >= Now.AddMinutes(-20);
        var pace = Poisson(10 * minutes);
        if (expired)
        {
            Rollup(start, "orders", null, 401, "jwt.expired", pace, 300);
            for (var i = 0; i < pace && samples; i++) Sample(start.AddSeconds(_random.NextDouble() * 60 * minutes), "orders", null, ExpiredClient, "/orders/{id}", 401, "jwt.expired");
        }
        else
        {
            Rollup(start, "orders", "c31", 200, null, pace, 15_000);
            var sampled = Binomial(pace, 0.01);
            for (var i = 0; i < sampled && samples; i++) Sample(start.AddSeconds(_random.NextDouble() * 60 * minutes), "orders", "c31", ExpiredClient, "/orders/{id}", 200, null);
        }
    }

    public static string Template(string route) => route switch { "orders" => "/orders/{id}", "users" => "/users/{id}", "search" => "/search/{**rest}", _ => "/admin/{**rest}" };

    /// <summary>
    /// Adds a rollup row: <paramref name="requests"/> requests, 98 % near <paramref name="latencyUs"/> and 2 % at 2.5× it;
    /// proxied ones spent <paramref name="upstreamUs"/> (default: all of it) waiting for the upstream, in the same shape.
    /// </summary>
    public AnomalyTestData Rollup(DateTime minute, string? route, string? consumer, short status, string? reason, long requests, long latencyUs, long? upstreamUs = null)
    {
        if (requests <= 0) return this;
        var tail = requests / 50;
        var buckets = new List<short> { (short)LatencySketch.BucketOf(latencyUs) };
        var counts = new List<long> { requests - tail };
        if (tail > 0)
        {
            buckets.Add((short)LatencySketch.BucketOf(latencyUs * 5 / 2));
            counts.Add(tail);
        }

        var upstream = upstreamUs ?? latencyUs;
        var upstreamBuckets = new List<short> { (short)LatencySketch.BucketOf(upstream) };
        if (tail > 0) upstreamBuckets.Add((short)LatencySketch.BucketOf(upstream * 5 / 2));
        var proxied = route is not null && reason is null or "upstream.error";
        _rollups.Add([minute, route, route is null ? null : route + "-cluster", consumer, consumer is null ? null : "gold", status, reason, requests, 0L, 0L,
            requests * latencyUs, proxied ? requests * upstream : 0L, buckets, counts, proxied ? upstreamBuckets : new List<short>(), proxied ? counts : new List<long>()]);
        return this;
    }

    public AnomalyTestData Sample(DateTime ts, string? route, string? consumer, string client, string path, short status, string? reason)
    {
        _samples.Add([ts, $"r{++_requestId}", null, route, route is null ? null : route + "-cluster", consumer, consumer is null ? null : "gold", client, "GET", "api.example.test", path,
            status, reason, consumer is null ? reason : "apikey.valid", "admitted", (sbyte)1, 0L, 0L, 1000L, null]);
        return this;
    }

    /// <summary>Writes what was added since the last flush.</summary>
    public void Flush()
    {
        using var connection = Database.OpenConnection();
        using (var appender = connection.CreateAppender(AnalyticsSchema.Rollups))
        {
            foreach (var row in _rollups) Append(appender.CreateRow(), row).EndRow();
        }

        using (var appender = connection.CreateAppender(AnalyticsSchema.Samples))
        {
            foreach (var row in _samples) Append(appender.CreateRow(), row).EndRow();
        }

        _rollups.Clear();
        _samples.Clear();
    }

    private static IDuckDBAppenderRow Append(IDuckDBAppenderRow row, object?[] values)
    {
        foreach (var value in values)
        {
            row = value switch
            {
                null => row.AppendNullValue(),
                DateTime t => row.AppendValue(t),
                string s => row.AppendValue(s),
                short s => row.AppendValue(s),
                sbyte b => row.AppendValue(b),
                long l => row.AppendValue(l),
                List<short> l => row.AppendValue(l),
                List<long> l => row.AppendValue(l),
                _ => throw new ArgumentException(value.GetType().Name),
            };
        }

        return row;
    }

    private int Poisson(double mean)
    {
        if (mean <= 0) return 0;
        if (mean > 50) return Math.Max(0, (int)Math.Round(mean + (Math.Sqrt(mean) * Gaussian())));
        var limit = Math.Exp(-mean);
        var k = 0;
        var p = _random.NextDouble();
        while (p > limit)
        {
            k++;
            p *= _random.NextDouble();
        }

        return k;
    }

    private long Binomial(long n, double p) => n > 200 ? Math.Max(0, (long)Math.Round((n * p) + (Math.Sqrt(n * p * (1 - p)) * Gaussian()))) : Enumerable.Range(0, (int)n).Count(_ => _random.NextDouble() < p);

    private double Gaussian() => Math.Sqrt(-2 * Math.Log(1 - _random.NextDouble())) * Math.Cos(2 * Math.PI * _random.NextDouble());
}
