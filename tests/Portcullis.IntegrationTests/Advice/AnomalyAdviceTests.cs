using System.Net;
using System.Text.Json;
using Portcullis.Advice;
using Portcullis.Analytics;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.Testing;
using static Portcullis.IntegrationTests.Analytics.AnalyticsTestSupport;

namespace Portcullis.IntegrationTests.Advice;

/// <summary>
/// The unusual-routes-and-callers findings end to end: a real gateway with analytics on, a real upstream, real
/// requests (client addresses given by X-Forwarded-For from the trusted loopback proxy), the store flushed by the
/// gateway and the advisor's engine running every 5 s; the findings are read from GET /admin/advice.
/// </summary>
public sealed class AnomalyAdviceTests : IAsyncLifetime
{
    private readonly string _directory = Directory.CreateTempSubdirectory("portcullis-anomaly-it-").FullName;
    private TestUpstream _upstream = null!;

    public async Task InitializeAsync() => _upstream = await TestUpstream.StartAsync("orders");

    public async Task DisposeAsync()
    {
        await _upstream.DisposeAsync();
        Directory.Delete(_directory, recursive: true);
    }

    private string Database => Path.Combine(_directory, "analytics.duckdb");

    private string Config => $$"""
        trustedProxies: [127.0.0.1]
        analytics:
          path: "{{Database}}"
          flushInterval: 200ms
        advice:
          interval: 5s
          statePath: "{{Path.Combine(_directory, "advice-state.json")}}"
        identity:
          apiKeys: { file: keys.yaml }
        routes:
          - name: orders
            match: { pathPrefix: /orders }
            auth: { apiKey: true }
            cluster: orders
          - name: admin
            match: { pathPrefix: /admin }
            auth: { apiKey: true }
            cluster: orders
        clusters:
          orders:
            destinations: [{{_upstream.Url}}]
        """;

    private async Task<TestGateway> StartAsync()
    {
        var (keys, alice, bob) = await KeysAsync(_directory);
        (_alice, _bob) = (alice, bob);
        return await TestGateway.StartAsync(Config, new Dictionary<string, string> { ["keys.yaml"] = keys });
    }

    private string _alice = "";
    private string _bob = "";

    private static async Task<HttpStatusCode> SendAsync(TestGateway gateway, string path, string client, string? key = null)
    {
        using var request = Request(path, key);
        request.Headers.TryAddWithoutValidation("X-Forwarded-For", client);
        using var response = await gateway.Client.SendAsync(request);
        return response.StatusCode;
    }

    // Polls /admin/advice until a finding of the kind matches; returns it and every finding of the kind.
    private static async Task<(JsonElement Finding, List<JsonElement> All)> WaitForAsync(TestGateway gateway, string kind, Func<JsonElement, bool> match)
    {
        List<JsonElement> all = [];
        JsonElement found = default;
        await Eventually.TrueAsync(async () =>
        {
            using var response = await gateway.Admin.GetAsync("/admin/advice?kind=" + kind);
            var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
            all = [.. body.GetProperty("findings").EnumerateArray()];
            var hit = all.Where(match).ToList();
            if (hit.Count == 0) return false;
            found = hit[0];
            return true;
        }, $"a {kind} finding at /admin/advice", TimeSpan.FromSeconds(60), () => Task.FromResult(string.Join("\n", all.Select(f => f.ToString())) + "\n" + gateway.Logs));
        return (found, all);
    }

    private static string Subject(JsonElement finding) => finding.GetProperty("subject").GetProperty("name").GetString()!;

    private static double Value(JsonElement finding, string name) =>
        finding.GetProperty("evidence").GetProperty("values").EnumerateArray().Single(v => v.GetProperty("name").GetString() == name).GetProperty("value").GetDouble();

    [Fact]
    public async Task A_scanner_probing_well_known_paths_is_found_with_its_address_and_paths_and_ordinary_clients_are_not()
    {
        await using var gateway = await StartAsync();
        for (var i = 0; i < 10; i++) Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway, $"/orders/{i}", "10.0.0.1", _alice));
        Assert.Equal(HttpStatusCode.NotFound, await SendAsync(gateway, "/favicon.ico", "10.0.0.1"));
        string[] probes = ["/.env", "/.git/config", "/wp-admin/install.php", "/phpmyadmin/", "/wp-login.php", "/.aws/credentials", "/server-status", "/actuator/env"];
        foreach (var probe in probes) Assert.Equal(HttpStatusCode.NotFound, await SendAsync(gateway, probe, "192.0.2.66"));

        var (finding, all) = await WaitForAsync(gateway, FindingKinds.UnmatchedScanner, f => Subject(f) == "192.0.2.66");
        Assert.Single(all);
        Assert.Equal("client", finding.GetProperty("subject").GetProperty("kind").GetString());
        Assert.Equal("warning", finding.GetProperty("severity").GetString());
        Assert.Equal(8, Value(finding, "distinct probe paths"));
        Assert.Equal(1, Value(finding, "path /.env"));
        Assert.Contains("/.git", finding.GetProperty("explanation").GetString(), StringComparison.Ordinal);
        Assert.StartsWith("/ui/samples?", finding.GetProperty("evidence").GetProperty("dashboardLink").GetString(), StringComparison.Ordinal);
        Assert.Equal(JsonValueKind.Null, finding.GetProperty("patch").ValueKind);
    }

    [Fact]
    public async Task A_burst_of_unknown_api_keys_from_one_address_is_an_auth_failure_burst_and_a_client_without_a_key_now_and_then_is_not()
    {
        await using var gateway = await StartAsync();
        for (var i = 0; i < 3; i++) Assert.Equal(HttpStatusCode.Unauthorized, await SendAsync(gateway, "/orders/1", "10.0.0.5"));
        for (var i = 0; i < 40; i++) Assert.Equal(HttpStatusCode.Unauthorized, await SendAsync(gateway, "/orders/1", "192.0.2.88", $"guess-{i:0000}-aaaaaaaaaaaaaaaaaaaaaaaaaa"));
        for (var i = 0; i < 5; i++) Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway, "/orders/2", "10.0.0.1", _alice));

        var (finding, all) = await WaitForAsync(gateway, FindingKinds.AuthFailureBurst, f => Subject(f) == "192.0.2.88");
        Assert.Single(all);
        Assert.Equal(40, Value(finding, "auth failures"));
        Assert.Equal(40, Value(finding, "reason " + Pipeline.ReasonCodes.ApiKeyUnknown.Code));
        Assert.Contains("guessing", finding.GetProperty("explanation").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_consumer_calling_the_admin_route_for_the_first_time_is_a_new_route_finding_against_the_stored_history()
    {
        // Two hours of history written into the store before the gateway opens it: alice calls orders, nobody calls admin.
        var now = DateTime.UtcNow;
        var minute = new DateTime(now.Ticks - (now.Ticks % TimeSpan.TicksPerMinute), DateTimeKind.Utc);
        var history = new AnalyticsDataGenerator();
        for (var t = minute.AddHours(-2); t < minute.AddMinutes(-20); t = t.AddMinutes(1))
        {
            history.Rollup(t, "orders", "alice", 200, null, [15_000, 16_000, 14_000], cluster: "orders", consumerGroup: "gold");
        }

        history.WriteTo(new AnalyticsDatabase(Database));

        await using var gateway = await StartAsync();
        for (var i = 0; i < 5; i++) Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway, $"/orders/{i}", "10.0.0.1", _alice));
        Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway, "/admin/users", "10.0.0.2", _bob));

        var (finding, all) = await WaitForAsync(gateway, FindingKinds.ConsumerNewRoute, f => Subject(f) == "bob");
        Assert.Single(all);
        Assert.Equal("admin", finding.GetProperty("subject").GetProperty("route").GetString());
        Assert.Equal("critical", finding.GetProperty("severity").GetString()); // a consumer never seen before, let through, on an administrative route
        Assert.Contains("looks administrative", finding.GetProperty("explanation").GetString(), StringComparison.Ordinal);
        Assert.Equal(1, Value(finding, "requests to the route"));
    }
}
