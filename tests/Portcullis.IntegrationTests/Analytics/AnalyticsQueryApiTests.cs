using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Portcullis.Admin;
using Portcullis.Analytics;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.Testing;

namespace Portcullis.IntegrationTests.Analytics;

/// <summary>
/// GET /admin/analytics/* through a real gateway's admin listener, on a store file filled before the start:
/// the JSON shapes of docs/analytics.md, 400 for bad parameters, 404 while analytics is off, 401 without the
/// token, and SQL injection attempted in every parameter (the tables keep every row; 400, or a filter value
/// that matches nothing).
/// </summary>
public sealed class AnalyticsQueryApiTests : IAsyncLifetime
{
    private const string Token = "analytics-reader-token-0123456789abcdef";

    private readonly string _directory = Directory.CreateTempSubdirectory("portcullis-analytics-api-").FullName;
    private readonly DateTime _start = Minute(DateTime.UtcNow).AddMinutes(-60);
    private readonly AnalyticsDataGenerator _data = new();

    private string Database => Path.Combine(_directory, "analytics.duckdb");

    private static DateTime Minute(DateTime t) => new(t.Ticks - t.Ticks % TimeSpan.TicksPerMinute, DateTimeKind.Utc);

    private string Config(string? auth = null, bool analytics = true) => $$"""
        {{(analytics ? $"analytics:\n  path: \"{Database}\"\n" : "")}}
        routes:
          - { name: orders, match: { pathPrefix: /orders }, cluster: api }
        clusters:
          api: { destinations: [{ name: a, address: "http://127.0.0.1:9" }] }
        {{auth ?? ""}}
        """;

    public Task InitializeAsync()
    {
        _data.Traffic(_start, minutes: 50, rowsPerMinute: 6, seed: 3);
        for (var i = 0; i < 20; i++) _data.Sample(_start.AddMinutes(i), $"req-{i:00}", "orders", i % 2 == 0 ? "alice" : null, (short)(i % 3 == 0 ? 503 : 200), path: "/orders/{id}");
        _data.WriteTo(new AnalyticsDatabase(Database));
        return Task.CompletedTask;
    }

    public Task DisposeAsync()
    {
        Directory.Delete(_directory, recursive: true);
        return Task.CompletedTask;
    }

    private string Range => $"from={Uri.EscapeDataString(_start.ToString("O"))}&to={Uri.EscapeDataString(_start.AddHours(1).ToString("O"))}";

    private static async Task<(HttpStatusCode Status, JsonElement Body, string? MediaType)> GetAsync(TestGateway gateway, string path, string? token = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (token is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var response = await gateway.Admin.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone(), response.Content.Headers.ContentType?.MediaType);
    }

    private static string[] Names(JsonElement element) => [.. element.EnumerateObject().Select(p => p.Name)];

    [Fact]
    public async Task With_a_fleet_path_the_api_answers_for_every_instance_in_the_folder()
    {
        // Two instances' stores with closed hours (three hours ago), exported into one folder as the fleet does.
        var fleet = Path.Combine(_directory, "fleet");
        var hour = new DateTime(DateTime.UtcNow.Ticks - DateTime.UtcNow.Ticks % TimeSpan.TicksPerHour, DateTimeKind.Utc).AddHours(-3);
        var instances = new[] { ("gw-a", new AnalyticsDataGenerator().Traffic(hour, minutes: 50, rowsPerMinute: 4, seed: 11)),
                                ("gw-b", new AnalyticsDataGenerator().Traffic(hour.AddHours(1), minutes: 40, rowsPerMinute: 5, seed: 12)) };
        foreach (var (instance, data) in instances)
        {
            var store = new AnalyticsDatabase(Path.Combine(_directory, instance + ".duckdb"));
            data.WriteTo(store);
            var exporter = new ParquetExporter(store, new ParquetExportSettings(fleet, instance, TimeSpan.FromSeconds(5), TimeSpan.FromDays(30)),
                TimeProvider.System, Microsoft.Extensions.Logging.Abstractions.NullLogger<ParquetExporter>.Instance);
            Assert.True(exporter.ExportClosedHours() > 0);
        }

        // This instance's own store has other data: the answer must come from the folder only.
        await using var gateway = await TestGateway.StartAsync(Config().Replace("analytics:\n", $"analytics:\n  fleetPath: \"{fleet}\"\n", StringComparison.Ordinal));
        var range = $"from={Uri.EscapeDataString(hour.ToString("O"))}&to={Uri.EscapeDataString(hour.AddHours(2).ToString("O"))}";

        var (status, summary, _) = await GetAsync(gateway, "/admin/analytics/summary?" + range);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("fleet", summary.GetProperty("source").GetString());
        Assert.Equal(instances.Sum(i => i.Item2.Rollups.Sum(r => r.Requests)), summary.GetProperty("requests").GetInt64());
        Assert.Equal(instances.Sum(i => i.Item2.Rollups.Where(r => r.Status >= 500).Sum(r => r.Requests)), summary.GetProperty("errors").GetInt64());

        var (_, top, _) = await GetAsync(gateway, "/admin/analytics/top?by=route&limit=1000&" + range);
        Assert.Equal(instances.Sum(i => i.Item2.Rollups.Sum(r => r.Requests)), top.GetProperty("rows").EnumerateArray().Sum(r => r.GetProperty("requests").GetInt64()));
    }

    [Fact]
    public async Task Each_endpoint_answers_the_documented_shape_with_the_stores_numbers()
    {
        await using var gateway = await TestGateway.StartAsync(Config());
        var rows = _data.Rollups;

        var (status, summary, type) = await GetAsync(gateway, "/admin/analytics/summary?" + Range);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("application/json", type);
        Assert.Equal(["from", "to", "source", "requests", "errors", "refused", "errorRate", "bytesIn", "bytesOut", "latency", "upstreamLatency", "statusClasses", "reasons"], Names(summary));
        Assert.Equal("local", summary.GetProperty("source").GetString());
        Assert.Equal(rows.Sum(r => r.Requests), summary.GetProperty("requests").GetInt64());
        Assert.Equal(rows.Where(r => r.Status >= 500).Sum(r => r.Requests), summary.GetProperty("errors").GetInt64());
        Assert.Equal(["p50", "p95", "p99", "mean"], Names(summary.GetProperty("latency")));
        var p99 = LatencySketch.Quantile(AnalyticsDataGenerator.Dense(rows), 0.99)!.Value / 1000;
        Assert.Equal(Math.Round(p99, 3), summary.GetProperty("latency").GetProperty("p99").GetDouble());
        Assert.Equal(["2xx", "3xx", "4xx", "5xx"], Names(summary.GetProperty("statusClasses")));
        Assert.Equal(["reason", "requests"], Names(summary.GetProperty("reasons")[0]));

        var (_, series, _) = await GetAsync(gateway, "/admin/analytics/timeseries?" + Range + "&step=5m&groupBy=consumer&limit=2");
        Assert.Equal(["from", "to", "source", "step", "groupBy", "series"], Names(series));
        Assert.Equal("5m", series.GetProperty("step").GetString());
        Assert.Equal("consumer", series.GetProperty("groupBy").GetString());
        Assert.Equal(2, series.GetProperty("series").GetArrayLength());
        var point = series.GetProperty("series")[0].GetProperty("points")[0];
        Assert.Equal(["t", "requests", "errors", "refused", "p50", "p99"], Names(point));
        Assert.Equal(JsonValueKind.String, point.GetProperty("t").ValueKind);

        var (_, top, _) = await GetAsync(gateway, "/admin/analytics/top?" + Range + "&by=route&orderBy=errors");
        Assert.Equal(["from", "to", "source", "by", "orderBy", "rows"], Names(top));
        Assert.Equal(["key", "requests", "errors", "refused", "errorRate", "bytesIn", "bytesOut", "p50", "p95", "p99"], Names(top.GetProperty("rows")[0]));
        Assert.Equal(rows.Select(r => r.Route).Distinct().Count(), top.GetProperty("rows").GetArrayLength());
        Assert.Contains(top.GetProperty("rows").EnumerateArray(), r => r.GetProperty("key").ValueKind == JsonValueKind.Null);

        var (_, samples, _) = await GetAsync(gateway, "/admin/analytics/samples?" + Range + "&minStatus=500&limit=5");
        Assert.Equal(["from", "to", "source", "rows"], Names(samples));
        var sample = samples.GetProperty("rows")[0];
        Assert.Equal(["ts", "requestId", "traceId", "route", "cluster", "consumer", "consumerGroup", "client", "method", "host", "path",
            "status", "reason", "auth", "traffic", "attempts", "bytesIn", "bytesOut", "latencyMs", "upstreamMs"], Names(sample));
        Assert.Equal(["req-18", "req-15", "req-12", "req-09", "req-06"], samples.GetProperty("rows").EnumerateArray().Select(r => r.GetProperty("requestId").GetString()));

        // Default range (the last hour) and the filters through the API.
        var (_, filtered, _) = await GetAsync(gateway, "/admin/analytics/summary?consumer=(none)&status=5xx&from=now-2h");
        Assert.Equal(rows.Where(r => r.Consumer is null && r.Status >= 500).Sum(r => r.Requests), filtered.GetProperty("requests").GetInt64());
    }

    [Theory]
    [InlineData("summary?window=1h", "window")]
    [InlineData("summary?from=yesterday", "from")]
    [InlineData("summary?from=now-1h&to=now-2h", "from")]
    [InlineData("timeseries?from=now-7d&step=1m", "step")]
    [InlineData("top?limit=5000", "limit")]
    [InlineData("top?by=path", "by")]
    [InlineData("samples?status=6xx", "status")]
    public async Task A_bad_parameter_answers_400_naming_it(string query, string parameter)
    {
        await using var gateway = await TestGateway.StartAsync(Config());
        var (status, problem, type) = await GetAsync(gateway, "/admin/analytics/" + query);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("application/problem+json", type);
        Assert.Equal("analytics.bad-parameter", problem.GetProperty("reason").GetString());
        Assert.Contains($"'{parameter}'", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Analytics_off_answers_404_and_the_token_is_required_when_admin_auth_is_set()
    {
        await using (var off = await TestGateway.StartAsync(Config(analytics: false)))
        {
            var (status, problem, _) = await GetAsync(off, "/admin/analytics/summary");
            Assert.Equal(HttpStatusCode.NotFound, status);
            Assert.Equal("analytics.off", problem.GetProperty("reason").GetString());
        }

        const string Auth = "admin:\n  auth:\n    tokens:\n      - { name: grafana, scope: read, env: READ_TOKEN }";
        await using var gateway = await TestGateway.StartAsync(Config(Auth), environment: name => name == "READ_TOKEN" ? Token : null);
        foreach (var (path, _) in AdminAnalyticsApi.Endpoints)
        {
            var (status, problem, _) = await GetAsync(gateway, path);
            Assert.Equal(HttpStatusCode.Unauthorized, status);
            Assert.Equal("admin.unauthenticated", problem.GetProperty("reason").GetString());
            Assert.Equal(HttpStatusCode.OK, (await GetAsync(gateway, path + "?" + Range, Token)).Status); // read scope suffices
        }
    }

    public static TheoryData<string, string, bool> Injections => new()
    {
        // endpoint, parameter=value (value escaped by the test), answered 400 (else 200 with nothing matched)
        { "summary", "route=x' OR 1=1 --", false },
        { "summary", "cluster='; DROP TABLE rollups; --", false },
        { "summary", "consumer=alice' OR '1'='1", false },
        { "summary", "consumerGroup=gold\"; DELETE FROM rollups; --", false },
        { "summary", "reason=x') UNION SELECT * FROM samples --", false },
        { "summary", "status=503 OR 1=1", true },
        { "summary", "from=now'--", true },
        { "summary", "to=2026-12-04'; DROP TABLE rollups; --", true },
        { "timeseries", "step=1m; DROP TABLE rollups", true },
        { "timeseries", "groupBy=route; DROP TABLE rollups", true },
        { "timeseries", "limit=10; DELETE FROM rollups", true },
        { "top", "by=route; DROP TABLE rollups", true },
        { "top", "orderBy=requests; DELETE FROM rollups", true },
        { "top", "limit=1 OR 1=1", true },
        { "samples", "minStatus=400 OR 1=1", true },
        { "samples", "limit=1); DELETE FROM samples; --", true },
        { "samples", "route=orders' OR 'a'='a", false },
        { "samples", "x'; DROP TABLE samples; --=1", true },
    };

    [Theory]
    [MemberData(nameof(Injections))]
    public async Task Sql_injection_in_any_parameter_changes_nothing(string endpoint, string parameter, bool refused)
    {
        await using var gateway = await TestGateway.StartAsync(Config());
        var database = gateway.Services.GetRequiredService<AnalyticsDatabase>();
        var before = Counts(database);
        var split = parameter.IndexOf('=', StringComparison.Ordinal);
        var query = Uri.EscapeDataString(parameter[..split]) + "=" + Uri.EscapeDataString(parameter[(split + 1)..]);
        var (status, body, _) = await GetAsync(gateway, $"/admin/analytics/{endpoint}?{query}" + (parameter.StartsWith("from", StringComparison.Ordinal) || parameter.StartsWith("to", StringComparison.Ordinal) ? "" : "&" + Range));

        Assert.Equal(before, Counts(database));
        if (refused)
        {
            Assert.Equal(HttpStatusCode.BadRequest, status);
            Assert.Equal("analytics.bad-parameter", body.GetProperty("reason").GetString());
            Assert.DoesNotContain("SELECT", body.GetProperty("detail").GetString(), StringComparison.OrdinalIgnoreCase);
        }
        else
        {
            // A filter value with a quote is a legitimate value; no route, consumer, … has it, so nothing matches.
            Assert.Equal(HttpStatusCode.OK, status);
            if (endpoint == "samples") Assert.Equal(0, body.GetProperty("rows").GetArrayLength());
            else Assert.Equal(0, body.GetProperty("requests").GetInt64());
        }
    }

    private static (long Rollups, long Samples) Counts(AnalyticsDatabase database)
    {
        using var connection = database.OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT (SELECT count(*) FROM rollups), (SELECT count(*) FROM samples)";
        using var reader = command.ExecuteReader();
        reader.Read();
        return (reader.GetInt64(0), reader.GetInt64(1));
    }
}
