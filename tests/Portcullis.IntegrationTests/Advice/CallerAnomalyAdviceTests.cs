using System.Net;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Portcullis.Advice;
using Portcullis.Analytics;
using Portcullis.IntegrationTests.Infrastructure;
using static Portcullis.IntegrationTests.Advice.AdviceKindGateway;
using static Portcullis.IntegrationTests.Analytics.AnalyticsTestSupport;

namespace Portcullis.IntegrationTests.Advice;

/// <summary>
/// traffic.enumeration, consumer.rate-surge and route.new-path-shape end to end: a real gateway (API keys, a real
/// upstream, client addresses by X-Forwarded-For from the trusted loopback proxy) writing its analytics store,
/// history written into that store before the gateway opened it where the kind needs a baseline, and the gateway's
/// own engine run now; findings read from GET /admin/advice. Each test has a caller doing the ordinary thing
/// beside the one doing the unusual one, and only the latter is reported.
/// </summary>
public sealed class CallerAnomalyAdviceTests : IAsyncLifetime
{
    private readonly string _directory = Directory.CreateTempSubdirectory("portcullis-caller-anomaly-it-").FullName;
    private readonly DateTime _start = Minute(DateTime.UtcNow);
    private TestUpstream _upstream = null!;

    public async Task InitializeAsync()
    {
        _upstream = await TestUpstream.StartAsync("api");

        // Ids from 1000 on do not exist.
        _upstream.Handler = context =>
        {
            var last = context.Request.Path.Value!.Split('/')[^1];
            context.Response.StatusCode = int.TryParse(last, out var id) && id >= 1000 ? 404 : 200;
            return context.Response.WriteAsync("{}");
        };
    }

    public async Task DisposeAsync()
    {
        await _upstream.DisposeAsync();
        Directory.Delete(_directory, recursive: true);
    }

    private string Database => Path.Combine(_directory, "analytics.duckdb");

    [Fact]
    public async Task An_address_walking_through_ids_is_an_enumeration_unmatched_and_on_a_route_and_a_client_with_a_few_404s_is_not()
    {
        await using var gateway = await TestGateway.StartAsync($$"""
            trustedProxies: [127.0.0.1]
            analytics: { path: "{{Database}}", flushInterval: 200ms }
            advice: { interval: 1h }
            routes:
              - { name: users, match: { path: "/users/{id}" }, cluster: api }
            clusters:
              api: { destinations: [{{_upstream.Url}}] }
            """);
        var live = DateTime.UtcNow;

        // 192.0.2.77 walks /accounts/1001..1030, a path no route matches; 192.0.2.78 walks ids on route users that
        // the upstream does not have; 10.0.0.9 uses the API normally, with a few ids that are gone.
        Assert.All(await SendManyAsync(gateway, 30, i => $"/accounts/{1001 + i}", "192.0.2.77"), s => Assert.Equal(HttpStatusCode.NotFound, s));
        Assert.All(await SendManyAsync(gateway, 25, i => $"/users/{2000 + i}", "192.0.2.78"), s => Assert.Equal(HttpStatusCode.NotFound, s));
        Assert.All(await SendManyAsync(gateway, 30, i => $"/users/{1 + i}", "10.0.0.9"), s => Assert.Equal(HttpStatusCode.OK, s));
        Assert.All(await SendManyAsync(gateway, 5, i => $"/users/{1000 + i}", "10.0.0.9"), s => Assert.Equal(HttpStatusCode.NotFound, s));
        Assert.All(await SendManyAsync(gateway, 5, i => $"/accounts/{1 + i}", "10.0.0.9"), s => Assert.Equal(HttpStatusCode.NotFound, s));
        await ScalarAsync(gateway, "SELECT count(*)::BIGINT FROM samples WHERE status = 404 AND ts >= $p", 65, live.AddSeconds(-1));

        var findings = await RunAsync(gateway, FindingKinds.UnmatchedEnumeration);
        Assert.True(findings.Count == 2, Describe(findings));
        Assert.DoesNotContain(findings, f => Subject(f) == "10.0.0.9");

        var unmatched = Assert.Single(findings, f => Subject(f) == "192.0.2.77");
        Assert.Equal("client", SubjectKind(unmatched));
        Assert.Null(SubjectRoute(unmatched));
        Assert.Equal("warning", Severity(unmatched));
        Assert.Equal(30, Value(unmatched, "distinct ids tried"));
        Assert.Equal(30, Value(unmatched, "requests"));
        Assert.Contains("30 distinct paths of the shape /accounts/{id}", Explanation(unmatched), StringComparison.Ordinal);
        Assert.Contains("paths no route matches", Explanation(unmatched), StringComparison.Ordinal);

        var onRoute = Assert.Single(findings, f => Subject(f) == "192.0.2.78");
        Assert.Equal("users", SubjectRoute(onRoute));
        Assert.Equal(25, Value(onRoute, "requests"));
        Assert.Contains("25 requests to /users/{id} that the upstream answered 404", Explanation(onRoute), StringComparison.Ordinal);
        Assert.Contains("statuses 404: 25", Explanation(onRoute), StringComparison.Ordinal);

        // The ids walked are explained by the enumeration: no scanner finding for them.
        Assert.Empty(await RunAsync(gateway, FindingKinds.UnmatchedScanner));
    }

    [Fact]
    public async Task A_consumer_calling_a_route_at_many_times_its_usual_peak_is_a_rate_surge_and_a_consumer_at_its_pace_is_not()
    {
        // Three hours in which alice and bob each call orders three times a minute.
        var minutes = Seed(Database, _start.AddHours(-3), _start.AddMinutes(-6), (history, minute) =>
        {
            history.Rollup(minute, "orders", "alice", 200, null, Latencies(3, 20, 40), cluster: "api", consumerGroup: "gold");
            history.Rollup(minute, "orders", "bob", 200, null, Latencies(3, 20, 40), cluster: "api", consumerGroup: "free");
        });
        var (keys, alice, bob) = await KeysAsync(_directory);
        await using var gateway = await TestGateway.StartAsync($$"""
            analytics: { path: "{{Database}}", flushInterval: 200ms }
            advice:
              interval: 1h
              anomalies: { detectionWindow: 5m, minSurgeRate: 20 }
            identity:
              apiKeys: { file: keys.yaml }
            routes:
              - { name: orders, match: { pathPrefix: /orders }, auth: { apiKey: true }, cluster: api }
            clusters:
              api: { destinations: [{{_upstream.Url}}] }
            """, new Dictionary<string, string> { ["keys.yaml"] = keys });
        var live = DateTime.UtcNow;

        // Both at about their pace: nothing.
        Assert.All(await SendManyAsync(gateway, 10, i => $"/orders/{i}", key: alice), s => Assert.Equal(HttpStatusCode.OK, s));
        Assert.All(await SendManyAsync(gateway, 10, i => $"/orders/{i}", key: bob), s => Assert.Equal(HttpStatusCode.OK, s));
        await FlushedAsync(gateway, live, 20);
        var quiet = await RunAsync(gateway, FindingKinds.ConsumerSurge);
        Assert.True(quiet.Count == 0, Describe(quiet));

        // alice sends 200 more within the window: over 40 a minute against a usual peak of 3.
        Assert.All(await SendManyAsync(gateway, 200, i => $"/orders/{i}", key: alice), s => Assert.Equal(HttpStatusCode.OK, s));
        await FlushedAsync(gateway, live, 220);
        var findings = await RunAsync(gateway, FindingKinds.ConsumerSurge);
        var finding = Assert.Single(findings);
        Assert.Equal(("consumer", "alice", "orders"), (SubjectKind(finding), Subject(finding), SubjectRoute(finding)));
        Assert.Equal("warning", Severity(finding)); // critical from 4 × 5 × the peak: 60 a minute
        Assert.InRange(Value(finding, "requests per minute"), 210 / 5.0, 210 / 3.9);
        Assert.Equal(3, Baseline(finding, "requests per minute"));
        Assert.Equal(3, Value(finding, "median active minute"));
        Assert.Equal((double)minutes, Value(finding, "active minutes in the baseline"));
        Assert.True(Value(finding, "robust z") >= 6, finding.ToString());
        Assert.Equal("medium", finding.GetProperty("confidence").GetString());
        Assert.Contains("Consumer alice sent 210 requests to route orders", Explanation(finding), StringComparison.Ordinal);
        Assert.Contains("at most 3 (p99)", Explanation(finding), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Paths_of_a_shape_never_seen_under_a_route_prefix_are_a_new_path_shape_and_a_known_shape_is_not()
    {
        // Three hours of history: route orders (/orders/{id}) in use, and a few calls of /orders/{id}/cancel, which no route matches.
        Seed(Database, _start.AddHours(-3), _start.AddMinutes(-20), (history, minute) =>
        {
            history.Rollup(minute, "orders", null, 200, null, Latencies(5, 20, 40), cluster: "api");
            if (minute.Minute % 5 == 0) history.Sample(minute.AddSeconds(7), Guid.NewGuid().ToString("N")[..16], "orders", null, 200, path: "/orders/{id}", cluster: "api");
            if (minute.Minute % 50 == 0) history.Sample(minute.AddSeconds(9), Guid.NewGuid().ToString("N")[..16], null, null, 404, "route.unmatched", $"/orders/{minute.Hour}/cancel");
        });
        await using var gateway = await TestGateway.StartAsync($$"""
            trustedProxies: [127.0.0.1]
            analytics: { path: "{{Database}}", flushInterval: 200ms }
            advice: { interval: 1h }
            routes:
              - { name: orders, match: { path: "/orders/{id}" }, cluster: api }
            clusters:
              api: { destinations: [{{_upstream.Url}}] }
            """);
        var baselineSamples = Count(gateway, "SELECT count(*)::BIGINT FROM samples");
        var live = DateTime.UtcNow;

        // A client calls /orders/{id}/refund, which nothing served before, and /orders/{id}/cancel, a shape seen before.
        Assert.All(await SendManyAsync(gateway, 6, i => $"/orders/{7 + i}/refund", "10.0.0.30"), s => Assert.Equal(HttpStatusCode.NotFound, s));
        Assert.All(await SendManyAsync(gateway, 6, i => $"/orders/{20 + i}/cancel", "10.0.0.30"), s => Assert.Equal(HttpStatusCode.NotFound, s));
        Assert.All(await SendManyAsync(gateway, 3, i => $"/orders/{i}", "10.0.0.30"), s => Assert.Equal(HttpStatusCode.OK, s));
        await ScalarAsync(gateway, "SELECT count(*)::BIGINT FROM samples WHERE status = 404 AND ts >= $p", 12, live.AddSeconds(-1));

        var findings = await RunAsync(gateway, FindingKinds.NewPathShape);
        var finding = Assert.Single(findings);
        Assert.Equal(("route", "orders"), (SubjectKind(finding), Subject(finding)));
        Assert.Equal("New path shape /orders/{id}/refund under route orders", finding.GetProperty("title").GetString());
        Assert.Equal("info", Severity(finding)); // nothing served them: no route matches
        Assert.Equal(6, Value(finding, "requests of the shape"));
        Assert.Equal(1, Value(finding, "clients"));
        Assert.Equal(baselineSamples, Value(finding, "baseline samples under the prefix"));
        Assert.Contains("6 request(s) from 1 client(s) used paths of the shape /orders/{id}/refund", Explanation(finding), StringComparison.Ordinal);
        Assert.Contains("No route matches them (404)", Explanation(finding), StringComparison.Ordinal);
    }

    private static long Count(TestGateway gateway, string sql)
    {
        using var connection = gateway.Services.GetRequiredService<AnalyticsDatabase>().OpenConnection();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return Convert.ToInt64(command.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
    }
}
