using System.Net;
using Microsoft.AspNetCore.Http;
using Portcullis.Advice;
using Portcullis.IntegrationTests.Infrastructure;
using static Portcullis.IntegrationTests.Advice.AdviceKindGateway;

namespace Portcullis.IntegrationTests.Advice;

/// <summary>
/// route.volume-anomaly, route.error-anomaly and route.latency-anomaly end to end: three hours of flat history per
/// route written into the store, then a real gateway (real upstreams, its analytics writer on that store) takes live
/// traffic in which one route departs from its baseline while the others stay flat, and the gateway's own engine,
/// run now, reports that route and no other. Each test first runs the engine on ordinary traffic: no finding.
/// The detection window is 5 minutes so a slow machine cannot push the live requests out of it before the run.
/// </summary>
public sealed class RouteAnomalyAdviceTests : IAsyncLifetime
{
    private static readonly string[] RouteNames = ["orders", "catalog", "users"];

    private readonly string _directory = Directory.CreateTempSubdirectory("portcullis-route-anomaly-it-").FullName;
    private readonly Dictionary<string, TestUpstream> _upstreams = [];

    // History ends 6 minutes before the test's first minute, before any run's detection window (the last 5 minutes).
    private readonly DateTime _start = Minute(DateTime.UtcNow);

    public async Task InitializeAsync()
    {
        foreach (var route in RouteNames) _upstreams[route] = await TestUpstream.StartAsync(route);
    }

    public async Task DisposeAsync()
    {
        foreach (var upstream in _upstreams.Values) await upstream.DisposeAsync();
        Directory.Delete(_directory, recursive: true);
    }

    private string Database => Path.Combine(_directory, "analytics.duckdb");

    private Task<TestGateway> StartAsync() => TestGateway.StartAsync($$"""
        trustedProxies: [127.0.0.1]
        analytics: { path: "{{Database}}", flushInterval: 200ms }
        advice:
          interval: 1h
          anomalies: { detectionWindow: 5m, minVolumeChange: 20, minLatencyRequests: 20 }
        routes:
          - { name: orders, match: { pathPrefix: /orders }, cluster: orders }
          - { name: catalog, match: { pathPrefix: /catalog }, cluster: catalog }
          - { name: users, match: { pathPrefix: /users }, cluster: users }
        clusters:
          orders: { destinations: [{{_upstreams["orders"].Url}}] }
          catalog: { destinations: [{{_upstreams["catalog"].Url}}] }
          users: { destinations: [{{_upstreams["users"].Url}}] }
        """);

    private void SeedHistory(Action<Portcullis.Testing.AnalyticsDataGenerator, DateTime, string> perRoute) =>
        Seed(Database, _start.AddHours(-3), _start.AddMinutes(-6), (history, minute) =>
        {
            foreach (var route in RouteNames) perRoute(history, minute, route);
        });

    private static async Task SendOkAsync(TestGateway gateway, string route, int count)
    {
        var statuses = await SendManyAsync(gateway, count, i => $"/{route}/{i}");
        Assert.All(statuses, s => Assert.Equal(HttpStatusCode.OK, s));
    }

    [Fact]
    public async Task A_route_whose_traffic_jumps_to_many_times_its_baseline_is_a_volume_anomaly_and_flat_routes_are_not()
    {
        // 10 requests a minute on every route for three hours.
        SeedHistory((history, minute, route) => history.Rollup(minute, route, null, 200, null, Latencies(10, 20, 40), cluster: route));
        await using var gateway = await StartAsync();
        var live = DateTime.UtcNow;

        // Ordinary traffic (about the baseline's pace over the 5-minute window): nothing.
        foreach (var route in RouteNames) await SendOkAsync(gateway, route, 40);
        await FlushedAsync(gateway, live, 120);
        var quiet = await RunAsync(gateway, FindingKinds.RouteVolume);
        Assert.True(quiet.Count == 0, Describe(quiet));

        // orders takes 400 more requests within the window (~90/min against 10/min); the others stay as they are.
        await SendOkAsync(gateway, "orders", 400);
        await FlushedAsync(gateway, live, 520);
        var findings = await RunAsync(gateway, FindingKinds.RouteVolume);
        var finding = Assert.Single(findings);
        Assert.Equal(("route", "orders"), (SubjectKind(finding), Subject(finding)));
        Assert.Equal("warning", Severity(finding));
        Assert.Equal("low", finding.GetProperty("confidence").GetString()); // under 6 h of history, no seasonal days

        // 440 requests over the window's 4 to 5 minutes, against a baseline of exactly 10 a minute.
        Assert.InRange(Value(finding, "requests per minute"), 440 / 5.0, 440 / 3.9);
        Assert.Equal(10, Baseline(finding, "requests per minute"));
        Assert.True(Value(finding, "robust z") >= 6, finding.ToString());
        Assert.Contains("Route orders received", Explanation(finding), StringComparison.Ordinal);
        Assert.Contains("sudden rise", Explanation(finding), StringComparison.Ordinal);
        Assert.Contains("rose to", finding.GetProperty("title").GetString(), StringComparison.Ordinal);
        Assert.Null(Patch(finding));
    }

    [Fact]
    public async Task A_route_whose_upstream_starts_answering_5xx_is_an_error_anomaly_and_a_route_at_its_usual_share_is_not()
    {
        // 20 requests a minute, one 500 every ten minutes (0.5 %).
        SeedHistory((history, minute, route) =>
        {
            var errors = minute.Minute % 10 == 0 ? 1 : 0;
            history.Rollup(minute, route, null, 200, null, Latencies(20 - errors, 20, 40), cluster: route);
            if (errors > 0) history.Rollup(minute, route, null, 500, null, Latencies(1, 20, 21), cluster: route);
        });
        _upstreams["orders"].Handler = context =>
        {
            context.Response.StatusCode = context.Request.Path.Value!.Contains("/boom-", StringComparison.Ordinal) ? 500 : 200;
            return context.Response.WriteAsync("{}");
        };
        await using var gateway = await StartAsync();
        var live = DateTime.UtcNow;
        foreach (var route in RouteNames) await SendOkAsync(gateway, route, 80);
        await FlushedAsync(gateway, live, 240);
        var quiet = await RunAsync(gateway, FindingKinds.RouteErrors);
        Assert.True(quiet.Count == 0, Describe(quiet));

        // Now 20 of orders' requests fail: 20 of its 100 (20 %, against 0.5 %).
        var failed = await SendManyAsync(gateway, 20, i => $"/orders/boom-{i}");
        Assert.All(failed, s => Assert.Equal(HttpStatusCode.InternalServerError, s));
        await FlushedAsync(gateway, live, 260);
        var findings = await RunAsync(gateway, FindingKinds.RouteErrors);
        var finding = Assert.Single(findings);
        Assert.Equal(("route", "orders"), (SubjectKind(finding), Subject(finding)));
        Assert.Equal("warning", Severity(finding)); // critical from a 50 % share
        Assert.Equal(20, Value(finding, "5xx answers"));
        Assert.Equal(100, Value(finding, "requests"));
        Assert.Equal(0.2, Value(finding, "5xx share"));
        Assert.InRange(Baseline(finding, "5xx share"), 0.003, 0.007);
        Assert.True(Value(finding, "z") >= 6, finding.ToString());
        Assert.Contains("20 of 100 requests to route orders ended in a 5xx status", Explanation(finding), StringComparison.Ordinal);
        Assert.Contains("route=orders", finding.GetProperty("evidence").GetProperty("dashboardLink").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task One_route_whose_upstream_slows_down_is_a_latency_anomaly_while_the_flat_routes_are_not()
    {
        // 20 requests a minute taking 400-700 ms (p99 of each hour ~690 ms) on every route: a flat route would need a p99
        // of ~1.4 s on loopback to be reported, which even a machine at load 30 does not give 40 requests.
        SeedHistory((history, minute, route) => history.Rollup(minute, route, null, 200, null, Latencies(20, 400, 700), cluster: route));
        await using var gateway = await StartAsync();
        var live = DateTime.UtcNow;

        // Live answers from the loopback upstreams are far faster than the history: a p99 that fell is no finding.
        foreach (var route in RouteNames) await SendOkAsync(gateway, route, 20);
        await FlushedAsync(gateway, live, 60);
        var quiet = await RunAsync(gateway, FindingKinds.RouteLatency);
        Assert.True(quiet.Count == 0, Describe(quiet));

        // Only orders' upstream slows to 3 s (4.3× the baseline p99); catalog and users keep answering at once.
        _upstreams["orders"].Delay = TimeSpan.FromSeconds(3);
        await Task.WhenAll(
            SendManyAsync(gateway, 25, i => $"/orders/slow-{i}", parallel: 25),
            SendOkAsync(gateway, "catalog", 20),
            SendOkAsync(gateway, "users", 20));
        await FlushedAsync(gateway, live, 125);
        var findings = await RunAsync(gateway, FindingKinds.RouteLatency);
        var finding = Assert.Single(findings);
        Assert.Equal(("route", "orders"), (SubjectKind(finding), Subject(finding)));
        var p99 = Value(finding, "p99 latency");
        var baseline = Baseline(finding, "p99 latency");
        Assert.InRange(baseline, 640, 730);
        Assert.True(p99 >= 2900, finding.ToString());
        Assert.Equal(p99 >= 5 * baseline ? "critical" : "warning", Severity(finding));
        Assert.Equal(45, Value(finding, "served requests"));
        Assert.Contains("of the 45 requests route orders served", Explanation(finding), StringComparison.Ordinal);
        Assert.Contains("slowing down", Explanation(finding), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Every_route_slowing_at_once_is_one_gateway_latency_finding_not_one_per_route()
    {
        // The same history as the one-route test: p99 ~690 ms on every route, each on a cluster of its own.
        SeedHistory((history, minute, route) => history.Rollup(minute, route, null, 200, null, Latencies(20, 400, 700), cluster: route));
        await using var gateway = await StartAsync();
        var live = DateTime.UtcNow;

        // All three upstreams (three clusters) slow to 3 s in the same minutes: what a starved host looks like.
        foreach (var upstream in _upstreams.Values) upstream.Delay = TimeSpan.FromSeconds(3);
        await Task.WhenAll(RouteNames.Select(route => SendManyAsync(gateway, 25, i => $"/{route}/slow-{i}", parallel: 25)));
        await FlushedAsync(gateway, live, 75);

        var routeFindings = await RunAsync(gateway, FindingKinds.RouteLatency);
        Assert.True(routeFindings.Count == 0, Describe(routeFindings));
        var finding = Assert.Single(await RunAsync(gateway, FindingKinds.GatewayLatency));
        Assert.Equal(("gateway", "gateway"), (SubjectKind(finding), Subject(finding)));
        Assert.Equal("warning", Severity(finding));
        Assert.Equal(3, Value(finding, "routes slower"));
        foreach (var route in RouteNames)
        {
            Assert.True(Value(finding, $"p99 latency {route}") >= 2900, finding.ToString());
            Assert.InRange(Baseline(finding, $"p99 latency {route}"), 640, 730);
        }

        Assert.Contains("rose together", Explanation(finding), StringComparison.Ordinal);
        Assert.Contains("host", Explanation(finding), StringComparison.Ordinal);
    }
}
