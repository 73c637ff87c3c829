using Portcullis.Analytics;
using Portcullis.Testing;

namespace Portcullis.Tests.Analytics;

/// <summary>
/// The query layer on a real DuckDB store filled by <see cref="AnalyticsDataGenerator"/>: every answer is
/// compared with the same numbers computed in memory from the rows the generator wrote (sums with LINQ,
/// percentiles with <see cref="LatencySketch.Quantile"/> over the merged buckets).
/// </summary>
public sealed class AnalyticsQueryTests : IDisposable
{
    private static readonly DateTime Start = new(2026, 12, 4, 10, 0, 0, DateTimeKind.Utc);
    private static readonly DateTime Now = Start.AddHours(3);

    private readonly string _dir = Directory.CreateTempSubdirectory("portcullis-query-").FullName;
    private readonly AnalyticsDatabase _database;
    private readonly AnalyticsDataGenerator _data = new();

    public AnalyticsQueryTests()
    {
        _database = new AnalyticsDatabase(Path.Combine(_dir, "analytics.duckdb"));
        _data.Traffic(Start, minutes: 150, rowsPerMinute: 12, seed: 7).WriteTo(_database);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private AnalyticsResult Query(AnalyticsQueryKind kind, params (string Name, string Value)[] query)
    {
        var parameters = AnalyticsQueryParameters.Parse(kind, query.Select(q => KeyValuePair.Create(q.Name, new[] { q.Value })), Now);
        using var connection = _database.OpenConnection();
        return AnalyticsQuery.Run(connection, parameters, "local");
    }

    private static (string, string)[] Range(DateTime from, DateTime to) => [("from", from.ToString("O")), ("to", to.ToString("O"))];

    private IEnumerable<GeneratedRollup> In(DateTime from, DateTime to) => _data.Rollups.Where(r => r.Minute >= from && r.Minute < to);

    private static double? Q(IEnumerable<GeneratedRollup> rows, double q, bool upstream = false) => LatencySketch.Quantile(AnalyticsDataGenerator.Dense(rows, upstream), q);

    [Fact]
    public void Summary_counts_statuses_reasons_and_percentiles_equal_the_data_in_the_range()
    {
        var (from, to) = (Start.AddMinutes(20), Start.AddMinutes(100));
        var rows = In(from, to).ToList();
        var s = Query(AnalyticsQueryKind.Summary, Range(from, to)).Summary!;

        Assert.Equal(rows.Sum(r => r.Requests), s.Requests);
        Assert.True(s.Requests < _data.Rollups.Sum(r => r.Requests), "the range leaves rows out");
        Assert.Equal(rows.Where(r => r.Status >= 500).Sum(r => r.Requests), s.Errors);
        Assert.Equal(rows.Where(r => r.Reason is not null && r.Status < 500).Sum(r => r.Requests), s.Refused);
        Assert.Equal(rows.Sum(r => r.BytesIn), s.BytesIn);
        Assert.Equal(rows.Sum(r => r.BytesOut), s.BytesOut);
        Assert.Equal(rows.Where(r => r.Status / 100 == 2).Sum(r => r.Requests), s.Status2xx);
        Assert.Equal(rows.Where(r => r.Status / 100 == 3).Sum(r => r.Requests), s.Status3xx);
        Assert.Equal(rows.Where(r => r.Status / 100 == 4).Sum(r => r.Requests), s.Status4xx);
        Assert.Equal(rows.Where(r => r.Status / 100 == 5).Sum(r => r.Requests), s.Status5xx);
        var reasons = rows.Where(r => r.Reason is not null).GroupBy(r => r.Reason).Select(g => new KeyCount(g.Key, g.Sum(r => r.Requests)))
            .OrderByDescending(k => k.Requests).ThenBy(k => k.Key, StringComparer.Ordinal).ToList();
        Assert.Equal(reasons, s.Reasons);

        Assert.Equal(new Latencies(Q(rows, 0.5), Q(rows, 0.95), Q(rows, 0.99), rows.Sum(r => r.LatenciesUs.Sum()) / (double)s.Requests), s.Latency);
        var proxied = rows.Where(r => r.UpstreamUs is not null).ToList();
        Assert.Equal(new Latencies(Q(rows, 0.5, true), Q(rows, 0.95, true), Q(rows, 0.99, true), proxied.Sum(r => r.UpstreamUs!.Sum()) / (double)proxied.Sum(r => r.Requests)), s.Upstream);
    }

    [Fact]
    public void Percentiles_of_known_latencies_are_within_the_sketchs_one_percent()
    {
        // 1,000 requests at 1, 2, …, 1000 ms spread over rows and minutes: true p50 = 500 ms, p95 = 950 ms, p99 = 990 ms (rank ⌊q·(n−1)⌋).
        var data = new AnalyticsDataGenerator();
        var minute = Start.AddDays(-1);
        for (var i = 0; i < 100; i++) data.Rollup(minute.AddMinutes(i % 7), "known", "k", 200, null, [.. Enumerable.Range(i * 10 + 1, 10).Select(ms => ms * 1000L)]);
        data.WriteTo(_database);

        var s = Query(AnalyticsQueryKind.Summary, [.. Range(minute, minute.AddHours(1)), ("route", "known")]).Summary!;
        Assert.Equal(1000, s.Requests);
        foreach (var (actual, expected) in new[] { (s.Latency.P50, 500_000.0), (s.Latency.P95, 950_000.0), (s.Latency.P99, 990_000.0) })
        {
            Assert.InRange(actual!.Value, expected * (1 - LatencySketch.RelativeAccuracy), expected * (1 + LatencySketch.RelativeAccuracy));
        }

        Assert.Equal(500_500.0, s.Latency.Mean);
        Assert.Null(s.Upstream); // nothing proxied
    }

    [Theory]
    [InlineData("route")]
    [InlineData("cluster")]
    [InlineData("consumer")]
    [InlineData("consumerGroup")]
    [InlineData("status")]
    [InlineData("reason")]
    public void Top_groups_by_each_column_with_none_as_null(string by)
    {
        Func<GeneratedRollup, string?> key = by switch
        {
            "route" => r => r.Route,
            "cluster" => r => r.Cluster,
            "consumer" => r => r.Consumer,
            "consumerGroup" => r => r.ConsumerGroup,
            "status" => r => r.Status.ToString(System.Globalization.CultureInfo.InvariantCulture),
            _ => r => r.Reason,
        };
        var (from, to) = (Start, Start.AddHours(2));
        var expected = In(from, to).GroupBy(key)
            .Select(g => new TopRow(g.Key, g.Sum(r => r.Requests), g.Where(r => r.Status >= 500).Sum(r => r.Requests), g.Where(r => r.Reason is not null && r.Status < 500).Sum(r => r.Requests),
                g.Sum(r => r.BytesIn), g.Sum(r => r.BytesOut), Q(g, 0.5), Q(g, 0.95), Q(g, 0.99)))
            .OrderByDescending(r => r.Requests).ThenBy(r => r.Key is null).ThenBy(r => r.Key, StringComparer.Ordinal).ToList();

        var result = Query(AnalyticsQueryKind.Top, [.. Range(from, to), ("by", by), ("limit", "1000")]);
        Assert.Equal(expected, result.Top);
        if (by is not "status") Assert.Contains(result.Top!, r => r.Key is null); // the "(none)" group is there, as null

        var two = Query(AnalyticsQueryKind.Top, [.. Range(from, to), ("by", by), ("limit", "2")]).Top!;
        Assert.Equal(expected.Take(2), two);
    }

    [Theory]
    [InlineData("errors")]
    [InlineData("errorRate")]
    [InlineData("p99")]
    [InlineData("bytesOut")]
    public void Top_orders_by_the_named_measure(string orderBy)
    {
        var rows = Query(AnalyticsQueryKind.Top, [("from", "now-3h"), ("by", "consumer"), ("orderBy", orderBy)]).Top!;
        Assert.Equal(4, rows.Count);
        Func<TopRow, double> measure = orderBy switch
        {
            "errors" => r => r.Errors,
            "errorRate" => r => r.ErrorRate,
            "p99" => r => r.P99!.Value,
            _ => r => r.BytesOut,
        };
        Assert.Equal(rows.Select(measure).OrderDescending(), rows.Select(measure));
        Assert.True(rows.Select(measure).Distinct().Count() > 1, "the measure differs between rows, so the order means something");
    }

    public static TheoryData<string, string> Filters => new()
    {
        { "route", "orders" }, { "route", "(none)" }, { "cluster", "users-cluster" }, { "cluster", "(none)" }, { "consumer", "alice" }, { "consumer", "(none)" },
        { "consumerGroup", "gold" }, { "consumerGroup", "(none)" }, { "reason", "ratelimit.exceeded" }, { "reason", "(none)" },
        { "status", "503" }, { "status", "5xx" }, { "status", "2xx" }, { "status", "404" },
    };

    [Theory]
    [MemberData(nameof(Filters))]
    public void Every_filter_selects_exactly_its_rows(string name, string value)
    {
        var match = (GeneratedRollup r) =>
        {
            var wanted = value == "(none)" ? null : value;
            return name switch
            {
                "route" => r.Route == wanted,
                "cluster" => r.Cluster == wanted,
                "consumer" => r.Consumer == wanted,
                "consumerGroup" => r.ConsumerGroup == wanted,
                "reason" => r.Reason == wanted,
                _ => value.EndsWith("xx", StringComparison.Ordinal) ? r.Status / 100 == value[0] - '0' : r.Status == short.Parse(value, System.Globalization.CultureInfo.InvariantCulture),
            };
        };
        var rows = In(Start, Now).Where(match).ToList();
        Assert.NotEmpty(rows);
        var s = Query(AnalyticsQueryKind.Summary, [.. Range(Start, Now), (name, value)]).Summary!;
        Assert.Equal(rows.Sum(r => r.Requests), s.Requests);
        Assert.Equal(Q(rows, 0.99), s.Latency.P99);

        // Filters combine (AND): with consumer=alice (or route=orders for the consumer filter) as well.
        var (otherName, otherValue, other) = name == "consumer" ? ("route", "orders", (Func<GeneratedRollup, bool>)(r => r.Route == "orders")) : ("consumer", "alice", r => r.Consumer == "alice");
        Assert.Equal(rows.Where(other).Sum(r => r.Requests), Query(AnalyticsQueryKind.Summary, [.. Range(Start, Now), (name, value), (otherName, otherValue)]).Summary!.Requests);
    }

    [Fact]
    public void Timeseries_buckets_by_step_fills_empty_steps_and_keeps_the_top_groups()
    {
        // 10:07 .. 11:07 at 5m: steps from 10:05 to 11:05 (13 points, aligned to whole steps).
        var (from, to) = (Start.AddMinutes(7), Start.AddMinutes(67));
        var result = Query(AnalyticsQueryKind.Timeseries, [.. Range(from, to), ("step", "5m")]);
        var series = Assert.Single(result.Series!);
        Assert.Equal("all", series.Key);
        Assert.Equal(13, series.Points.Count);
        Assert.Equal(Start.AddMinutes(5), series.Points[0].T);
        Assert.Equal(Start.AddMinutes(65), series.Points[^1].T);
        foreach (var point in series.Points)
        {
            var rows = In(from, to).Where(r => r.Minute >= point.T && r.Minute < point.T.AddMinutes(5)).ToList();
            Assert.Equal(rows.Sum(r => r.Requests), point.Requests);
            Assert.Equal(rows.Where(r => r.Status >= 500).Sum(r => r.Requests), point.Errors);
            Assert.Equal(rows.Where(r => r.Reason is not null && r.Status < 500).Sum(r => r.Requests), point.Refused);
            Assert.Equal(Q(rows, 0.5), point.P50);
            Assert.Equal(Q(rows, 0.99), point.P99);
        }

        Assert.Equal(In(from, to).Sum(r => r.Requests), series.Points.Sum(p => p.Requests));

        // Grouped, limit 2: the two consumers with the most requests, every point present (zeros where none).
        var grouped = Query(AnalyticsQueryKind.Timeseries, [("from", Start.AddMinutes(140).ToString("O")), ("to", Start.AddMinutes(160).ToString("O")), ("step", "1m"), ("groupBy", "consumer"), ("limit", "2")]);
        var rowsIn = In(Start.AddMinutes(140), Start.AddMinutes(160)).ToList();
        var top = rowsIn.GroupBy(r => r.Consumer).OrderByDescending(g => g.Sum(r => r.Requests)).Take(2).Select(g => g.Key).ToList();
        Assert.Equal(top, grouped.Series!.Select(s => s.Key));
        Assert.All(grouped.Series!, s => Assert.Equal(20, s.Points.Count));
        Assert.Contains(grouped.Series!.SelectMany(s => s.Points), p => p.Requests == 0 && p.P99 is null); // 150.. has no data
        Assert.Equal(rowsIn.Where(r => r.Consumer == top[0]).Sum(r => r.Requests), grouped.Series![0].Points.Sum(p => p.Requests));
    }

    [Theory]
    [InlineData("now-15m", "1m", 16)]
    [InlineData("now-1h", "1m", 61)]
    [InlineData("now-24h", "5m", 289)]
    [InlineData("now-7d", "1h", 169)]
    [InlineData("now-30d", "1d", 31)]
    public void The_default_step_keeps_at_most_360_points(string from, string step, int points)
    {
        var p = AnalyticsQueryParameters.Parse(AnalyticsQueryKind.Timeseries, [KeyValuePair.Create("from", new[] { from })], Now.AddSeconds(30));
        Assert.Equal(step, p.StepName);
        Assert.Equal(points, AnalyticsQueryParameters.Points(p.From, p.To, p.Step));
    }

    [Fact]
    public void Samples_newest_first_limited_and_filtered()
    {
        var data = new AnalyticsDataGenerator();
        for (var i = 0; i < 30; i++)
        {
            data.Sample(Start.AddSeconds(i * 10), $"r{i:00}", i % 3 == 0 ? null : "orders", i % 2 == 0 ? "alice" : null, (short)(i % 5 == 0 ? 503 : i % 4 == 0 ? 429 : 200),
                i % 4 == 0 && i % 5 != 0 ? "ratelimit.exceeded" : null, path: "/orders/{id}", latencyUs: 1234 + i, upstreamUs: i % 3 == 0 ? null : 1000);
        }

        data.WriteTo(_database);
        var all = Query(AnalyticsQueryKind.Samples, Range(Start, Now)).Samples!;
        Assert.Equal(data.Samples.OrderByDescending(s => s.Ts), all);
        Assert.Equal(["r29", "r28", "r27"], Query(AnalyticsQueryKind.Samples, [.. Range(Start, Now), ("limit", "3")]).Samples!.Select(s => s.RequestId));
        Assert.Equal(data.Samples.Where(s => s.Status >= 400).OrderByDescending(s => s.Ts), Query(AnalyticsQueryKind.Samples, [.. Range(Start, Now), ("minStatus", "400")]).Samples);
        Assert.Equal(data.Samples.Where(s => s.Route is null && s.Consumer == "alice").OrderByDescending(s => s.Ts),
            Query(AnalyticsQueryKind.Samples, [.. Range(Start, Now), ("route", "(none)"), ("consumer", "alice")]).Samples);
        Assert.Equal(data.Samples.Where(s => s.Reason == "ratelimit.exceeded" && s.Ts >= Start.AddMinutes(1) && s.Ts < Start.AddMinutes(4)).OrderByDescending(s => s.Ts),
            Query(AnalyticsQueryKind.Samples, [.. Range(Start.AddMinutes(1), Start.AddMinutes(4)), ("reason", "ratelimit.exceeded")]).Samples);
    }

    [Fact]
    public void A_filter_value_with_sql_in_it_is_a_value_that_matches_nothing_and_changes_nothing()
    {
        long Count() { using var c = _database.OpenConnection(); using var cmd = c.CreateCommand(); cmd.CommandText = "SELECT count(*) FROM rollups"; return Convert.ToInt64(cmd.ExecuteScalar()); }
        var before = Count();
        foreach (var name in (string[])["route", "cluster", "consumer", "consumerGroup", "reason"])
        {
            foreach (var value in (string[])["x' OR 1=1 --", "'; DROP TABLE rollups; --", "orders\" OR \"1\"=\"1", "$from"])
            {
                Assert.Equal(0, Query(AnalyticsQueryKind.Summary, [.. Range(Start, Now), (name, value)]).Summary!.Requests);
                Assert.Empty(Query(AnalyticsQueryKind.Top, [.. Range(Start, Now), (name, value)]).Top!);
            }
        }

        Assert.Equal(before, Count());
    }

    public static TheoryData<string, string, string, string> BadParameters => new()
    {
        { "Summary", "window", "1h", "window" },
        { "Summary", "from", "yesterday", "from" },
        { "Summary", "from", "now'--", "from" },
        { "Summary", "to", "2026-13-01T00:00:00Z", "to" },
        { "Summary", "to", "12/04/2026", "to" },
        { "Summary", "from", "now+1h", "from" },
        { "Summary", "from", "now-0m", "from" },
        { "Summary", "from", "now", "from" }, // from = to
        { "Summary", "status", "5XX", "status" },
        { "Summary", "status", "600", "status" },
        { "Summary", "status", "50", "status" },
        { "Summary", "status", "503 OR 1=1", "status" },
        { "Summary", "by", "route", "by" }, // not a summary parameter
        { "Top", "by", "route; DROP TABLE rollups", "by" },
        { "Top", "by", "Route", "by" },
        { "Top", "orderBy", "p98", "orderBy" },
        { "Top", "limit", "1001", "limit" },
        { "Top", "limit", "0", "limit" },
        { "Top", "limit", "-1", "limit" },
        { "Top", "limit", "10 ", "limit" },
        { "Top", "step", "1m", "step" },
        { "Timeseries", "step", "2m", "step" },
        { "Timeseries", "groupBy", "path", "groupBy" },
        { "Timeseries", "limit", "51", "limit" },
        { "Samples", "limit", "1001", "limit" },
        { "Samples", "minStatus", "4xx", "minStatus" },
        { "Samples", "orderBy", "requests", "orderBy" },
    };

    [Theory]
    [MemberData(nameof(BadParameters))]
    public void A_bad_parameter_is_refused_naming_it(string query, string name, string value, string named)
    {
        var kind = Enum.Parse<AnalyticsQueryKind>(query);
        var ex = Assert.Throws<AnalyticsQueryException>(() => AnalyticsQueryParameters.Parse(kind, [KeyValuePair.Create(name, new[] { value })], Now));
        Assert.Equal(named, ex.Parameter);
        Assert.Contains(named, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Too_many_points_repeated_and_from_after_to_are_refused()
    {
        KeyValuePair<string, string[]> P(string n, params string[] v) => KeyValuePair.Create(n, v);
        // 2 days at 1m = 2881 points > 1500.
        Assert.Equal("step", Assert.Throws<AnalyticsQueryException>(() => AnalyticsQueryParameters.Parse(AnalyticsQueryKind.Timeseries, [P("from", "now-2d"), P("step", "1m")], Now)).Parameter);
        // 5 years at the largest step.
        Assert.Equal("from", Assert.Throws<AnalyticsQueryException>(() => AnalyticsQueryParameters.Parse(AnalyticsQueryKind.Timeseries, [P("from", "2021-01-01T00:00:00Z")], Now)).Parameter);
        Assert.Equal("route", Assert.Throws<AnalyticsQueryException>(() => AnalyticsQueryParameters.Parse(AnalyticsQueryKind.Summary, [P("route", "a", "b")], Now)).Parameter);
        Assert.Equal("from", Assert.Throws<AnalyticsQueryException>(() => AnalyticsQueryParameters.Parse(AnalyticsQueryKind.Summary, [P("from", "now-1h"), P("to", "now-2h")], Now)).Parameter);
        Assert.Equal("route", Assert.Throws<AnalyticsQueryException>(() => AnalyticsQueryParameters.Parse(AnalyticsQueryKind.Summary, [P("route", new string('a', 513))], Now)).Parameter);
        // 1500 points exactly is allowed.
        Assert.Equal(1500, AnalyticsQueryParameters.Points(Now.AddMinutes(-1500), Now, TimeSpan.FromMinutes(1)));
        AnalyticsQueryParameters.Parse(AnalyticsQueryKind.Timeseries, [P("from", Now.AddMinutes(-1500).ToString("O")), P("to", Now.ToString("O")), P("step", "1m")], Now);
    }

    [Fact]
    public void Times_are_iso_8601_or_relative_to_now()
    {
        var p = AnalyticsQueryParameters.Parse(AnalyticsQueryKind.Summary, [], Now);
        Assert.Equal((Now.AddHours(-1), Now), (p.From, p.To));
        p = AnalyticsQueryParameters.Parse(AnalyticsQueryKind.Summary, [KeyValuePair.Create("from", new[] { "now-7d" }), KeyValuePair.Create("to", new[] { "now-15m" })], Now);
        Assert.Equal((Now.AddDays(-7), Now.AddMinutes(-15)), (p.From, p.To));
        // -1h is short for now-1h (a natural guess); "--1h" is not.
        p = AnalyticsQueryParameters.Parse(AnalyticsQueryKind.Summary, [KeyValuePair.Create("from", new[] { "-7d" }), KeyValuePair.Create("to", new[] { "-15m" })], Now);
        Assert.Equal((Now.AddDays(-7), Now.AddMinutes(-15)), (p.From, p.To));
        Assert.Throws<AnalyticsQueryException>(() => AnalyticsQueryParameters.Parse(AnalyticsQueryKind.Summary, [KeyValuePair.Create("from", new[] { "--1h" })], Now));
        p = AnalyticsQueryParameters.Parse(AnalyticsQueryKind.Summary, [KeyValuePair.Create("from", new[] { "2026-12-04T11:00:00+01:00" }), KeyValuePair.Create("to", new[] { "2026-12-04T10:30:00" })], Now);
        Assert.Equal((Start, Start.AddMinutes(30)), (p.From, p.To));
        Assert.Equal(DateTimeKind.Utc, p.From.Kind);
    }
}
