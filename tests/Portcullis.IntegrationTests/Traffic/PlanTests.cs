using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Portcullis.Identity;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.IntegrationTests.Observability;

namespace Portcullis.IntegrationTests.Traffic;

/// <summary>
/// Plans (API products) through the real gateway: consumers from a real key file in three groups get
/// three different limits on one route, a group change in the key file takes effect on the watched
/// reload, a plan without the route answers 403, and plan counters in a real redis-server are per plan.
/// </summary>
public sealed class PlanTests : IAsyncLifetime
{
    // Long periods, so no token comes back while a test runs however slow the machine is.
    private const string Config = """
        identity:
          apiKeys: { file: keys.yaml }
        rateLimits:
          per-consumer-small: { limit: 2, per: 1h }
          per-consumer-medium: { limit: 4, per: 1h }
          per-consumer-large: { limit: 7, per: 1h }
        plans:
          free: { rateLimits: [per-consumer-small], routes: [orders] }
          pro: { rateLimits: [per-consumer-medium], routes: [orders, "report*"] }
          enterprise: { rateLimits: [per-consumer-large] }
        plan: { from: consumerGroup, default: free }
        routes:
          - { name: orders, match: { pathPrefix: /orders }, auth: { apiKey: true }, cluster: api }
          - { name: reports, match: { pathPrefix: /reports }, auth: { apiKey: true }, cluster: api }
          - { name: health, match: { path: /health }, plans: false, respond: { status: 200, body: ok } }
        clusters: { api: { destinations: [{{UPSTREAM}}] } }
        observability: { accessLog: { enabled: true, target: file, path: access.log } }
        """;

    private readonly Dictionary<string, string> _keys = [];
    private readonly Dictionary<string, string> _records = [];
    private TestUpstream _upstream = null!;
    private TestGateway? _gateway;
    private RedisServer? _redis;

    public async Task InitializeAsync() => _upstream = await TestUpstream.StartAsync("api");

    public async Task DisposeAsync()
    {
        if (_gateway is not null) await _gateway.DisposeAsync();
        if (_redis is not null) await _redis.DisposeAsync();
        await _upstream.DisposeAsync();
    }

    private async Task<TestGateway> StartAsync(string yaml, params (string Consumer, string? Group)[] consumers)
    {
        foreach (var (consumer, _) in consumers)
        {
            var (key, record) = ApiKeyGenerator.Create(DateTimeOffset.UtcNow.AddDays(-1));
            _keys[consumer] = key;
            _records[consumer] = $"    keys:\n    - id: {record.Id}\n      sha256: {record.Sha256}\n      created: {record.Created:yyyy-MM-ddTHH:mm:ssZ}\n";
        }

        _gateway = await TestGateway.StartAsync(yaml.Replace("{{UPSTREAM}}", _upstream.Url, StringComparison.Ordinal),
            new Dictionary<string, string> { ["keys.yaml"] = KeyFile(consumers) });
        return _gateway;
    }

    private string KeyFile(params (string Consumer, string? Group)[] consumers)
    {
        var file = new StringBuilder("consumers:\n");
        foreach (var (consumer, group) in consumers)
        {
            file.Append(CultureInfo.InvariantCulture, $"  {consumer}:\n");
            if (group is not null) file.Append(CultureInfo.InvariantCulture, $"    group: {group}\n");
            file.Append(_records[consumer]);
        }

        return file.ToString();
    }

    private async Task<HttpResponseMessage> SendAsync(string consumer, string path = "/orders")
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        request.Headers.Add("X-Api-Key", _keys[consumer]);
        return await _gateway!.Client.SendAsync(request);
    }

    // 200s until the first 429 (bounded, so a limit that never bites fails instead of looping).
    private async Task<int> CountAdmittedAsync(string consumer)
    {
        for (var admitted = 0; admitted < 50; admitted++)
        {
            using var response = await SendAsync(consumer);
            if (response.StatusCode == HttpStatusCode.TooManyRequests)
            {
                using var problem = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
                Assert.Equal("ratelimit.exceeded", problem.RootElement.GetProperty("reason").GetString());
                Assert.True(problem.RootElement.TryGetProperty("plan", out _));
                return admitted;
            }

            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        return int.MaxValue;
    }

    [Fact]
    public async Task Three_consumers_in_three_groups_get_their_plans_limits_on_one_route()
    {
        await StartAsync(Config, ("ann", "free"), ("bob", "pro"), ("cat", "enterprise"), ("dan", null), ("eve", "unknown-tier"));

        Assert.Equal(2, await CountAdmittedAsync("ann"));
        Assert.Equal(4, await CountAdmittedAsync("bob"));
        Assert.Equal(7, await CountAdmittedAsync("cat"));
        // No group, or a group that names no plan: the default plan (free), with a counter of their own.
        Assert.Equal(2, await CountAdmittedAsync("dan"));
        Assert.Equal(2, await CountAdmittedAsync("eve"));

        using var refused = await SendAsync("bob");
        using var problem = JsonDocument.Parse(await refused.Content.ReadAsStringAsync());
        Assert.Equal("pro", problem.RootElement.GetProperty("plan").GetString());
        Assert.Contains("per-consumer-medium", problem.RootElement.GetProperty("detail").GetString(), StringComparison.Ordinal);

        // A route with plans: false is outside the plans.
        using var health = await _gateway!.Client.GetAsync("/health");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
    }

    [Fact]
    public async Task A_consumer_whose_group_changes_in_the_key_file_gets_the_new_limit_after_the_reload()
    {
        var gateway = await StartAsync(Config, ("ann", "free"));
        Assert.Equal(2, await CountAdmittedAsync("ann"));

        var generation = gateway.Generation;
        await gateway.WriteFileAsync("keys.yaml", KeyFile(("ann", "enterprise")));
        await gateway.WaitForGenerationAsync(generation, TimeSpan.FromSeconds(30));

        // The enterprise plan counts under its own name: ann starts afresh with its 7, not the 0 left of free.
        Assert.Equal(7, await CountAdmittedAsync("ann"));
    }

    [Fact]
    public async Task A_plan_without_the_route_answers_403_problem_json_and_counts_nothing()
    {
        var gateway = await StartAsync(Config, ("ann", "free"), ("bob", "pro"));
        var upstreamBefore = _upstream.Requests;

        using var refused = await SendAsync("ann", "/reports/daily");
        Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        Assert.Equal("application/problem+json", refused.Content.Headers.ContentType?.MediaType);
        using var problem = JsonDocument.Parse(await refused.Content.ReadAsStringAsync());
        Assert.Equal("plan.route-not-included", problem.RootElement.GetProperty("reason").GetString());
        Assert.Equal("free", problem.RootElement.GetProperty("plan").GetString());
        Assert.Equal(upstreamBefore, _upstream.Requests);
        var line = await AccessLogFile.LineAsync(Path.Combine(gateway.Directory, "access.log"), AccessLogFile.RequestId(refused), TimeSpan.FromSeconds(30));
        Assert.Equal(403, line.GetProperty("status").GetInt32());
        Assert.Equal("plan.route-not-included", line.GetProperty("reason").GetString());
        var traffic = line.GetProperty("stages").GetProperty("traffic");
        Assert.Equal("plan.route-not-included", traffic.GetProperty("result").GetString());
        Assert.Equal("free", traffic.GetProperty("plan").GetString());

        // The refusal spent none of ann's budget on the routes the plan includes; pro includes reports.
        Assert.Equal(2, await CountAdmittedAsync("ann"));
        using var pro = await SendAsync("bob", "/reports/daily");
        Assert.Equal(HttpStatusCode.OK, pro.StatusCode);
    }

    [Fact]
    public async Task Without_a_default_a_caller_with_no_plan_is_refused_with_plan_none()
    {
        await StartAsync(Config.Replace("plan: { from: consumerGroup, default: free }", "plan: { from: consumerGroup }", StringComparison.Ordinal), ("ann", "free"), ("dan", null));

        using var refused = await SendAsync("dan");
        Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        using var problem = JsonDocument.Parse(await refused.Content.ReadAsStringAsync());
        Assert.Equal("plan.none", problem.RootElement.GetProperty("reason").GetString());
        Assert.Equal(2, await CountAdmittedAsync("ann"));
    }

    [Fact]
    public async Task A_map_lookup_chooses_the_plan_and_redis_counts_each_plan_under_its_own_key()
    {
        _redis = await RedisServer.StartAsync();
        // Both tiers name the same policy: counted as per-consumer-small@free and @pro, never one bucket.
        var yaml = Config
            .Replace("plan: { from: consumerGroup, default: free }", "plan: { from: \"${map:tiers(consumerGroup)}\", default: free }", StringComparison.Ordinal)
            .Replace("per-consumer-small: { limit: 2, per: 1h }", "per-consumer-small: { key: [consumerGroup], limit: 3, per: 1h, store: redis }", StringComparison.Ordinal)
            .Replace("pro: { rateLimits: [per-consumer-medium]", "pro: { rateLimits: [per-consumer-small]", StringComparison.Ordinal)
            + $"\nstores: {{ redis: {{ connection: \"{_redis.ConnectionString}\" }} }}\nmaps: {{ tiers: {{ entries: {{ gold: pro, basic: free }} }} }}\n";
        await StartAsync(yaml, ("ann", "basic"), ("bob", "gold"));

        Assert.Equal(3, await CountAdmittedAsync("ann"));
        Assert.Equal(3, await CountAdmittedAsync("bob"));
        var keys = await _redis.CliAsync("--scan", "--pattern", "portcullis:rl:*");
        var lines = keys.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal(2, lines.Length);
        Assert.Single(lines, k => k.StartsWith("portcullis:rl:{per-consumer-small@free", StringComparison.Ordinal) && k.Contains("basic", StringComparison.Ordinal));
        Assert.Single(lines, k => k.StartsWith("portcullis:rl:{per-consumer-small@pro", StringComparison.Ordinal) && k.Contains("gold", StringComparison.Ordinal));
    }

    [Fact]
    public async Task The_admin_api_shows_each_plans_quota_and_rate_limits_and_one_keys_use_of_a_plan_quota()
    {
        // Each plan names its own quota (the pro one larger); the route has none, so every count below is the plan's.
        var yaml = Config
            .Replace("\nplans:\n", "\nquotas:\n  monthly-small: { limit: 3, period: month }\n  monthly-large: { limit: 10, period: month }\nplans:\n", StringComparison.Ordinal)
            .Replace("free: { rateLimits: [per-consumer-small]", "free: { quota: monthly-small, rateLimits: [per-consumer-large]", StringComparison.Ordinal)
            .Replace("pro: { rateLimits: [per-consumer-medium]", "pro: { quota: monthly-large, rateLimits: [per-consumer-large]", StringComparison.Ordinal);
        var gateway = await StartAsync(yaml, ("ann", "free"), ("bob", "pro"));

        const int BobUsed = 4, AnnUsed = 2;
        for (var i = 0; i < BobUsed; i++)
        {
            using var response = await SendAsync("bob");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        for (var i = 0; i < AnnUsed; i++)
        {
            using var response = await SendAsync("ann");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        // One key's use of a plan's quota, addressed by its counter name quota@plan.
        using (var pro = JsonDocument.Parse(await gateway.Admin.GetStringAsync("/admin/quotas/monthly-large@pro?key=bob")))
        {
            Assert.Equal("monthly-large", pro.RootElement.GetProperty("quota").GetString());
            Assert.Equal("pro", pro.RootElement.GetProperty("plan").GetString());
            Assert.Equal(BobUsed, pro.RootElement.GetProperty("used").GetInt64());
            Assert.Equal(10, pro.RootElement.GetProperty("limit").GetInt64());
            Assert.Equal(10 - BobUsed, pro.RootElement.GetProperty("remaining").GetInt64());
        }

        using (var free = JsonDocument.Parse(await gateway.Admin.GetStringAsync("/admin/quotas/monthly-small@free?key=ann")))
        {
            Assert.Equal("free", free.RootElement.GetProperty("plan").GetString());
            Assert.Equal(AnnUsed, free.RootElement.GetProperty("used").GetInt64());
            Assert.Equal(3, free.RootElement.GetProperty("limit").GetInt64());
        }

        // Each plan's counter is its own: neither consumer has spent anything under the other's plan.
        using (var bobOnFree = JsonDocument.Parse(await gateway.Admin.GetStringAsync("/admin/quotas/monthly-small@free?key=bob")))
        {
            Assert.Equal(0, bobOnFree.RootElement.GetProperty("used").GetInt64());
        }

        using (var annOnPro = JsonDocument.Parse(await gateway.Admin.GetStringAsync("/admin/quotas/monthly-large@pro?key=ann")))
        {
            Assert.Equal(0, annOnPro.RootElement.GetProperty("used").GetInt64());
        }

        // The named quota itself is not what plans count against.
        using (var named = JsonDocument.Parse(await gateway.Admin.GetStringAsync("/admin/quotas/monthly-large?key=bob")))
        {
            Assert.Equal(0, named.RootElement.GetProperty("used").GetInt64());
            Assert.False(named.RootElement.TryGetProperty("plan", out _));
        }

        await AssertProblemAsync(gateway, "/admin/quotas/monthly-large@gold?key=bob", "admin.plan-unknown");
        await AssertProblemAsync(gateway, "/admin/quotas/monthly-small@pro?key=bob", "admin.quota-unknown");
        await AssertProblemAsync(gateway, "/admin/quotas/monthly-large@enterprise?key=bob", "admin.quota-unknown");

        // /admin/traffic lists each plan's copies with the plan, the counter and the limit the plan gets.
        using var traffic = JsonDocument.Parse(await gateway.Admin.GetStringAsync("/admin/traffic"));
        var quotas = traffic.RootElement.GetProperty("quotas").EnumerateArray().ToList();
        var proQuota = Assert.Single(quotas, q => q.TryGetProperty("plan", out var plan) && plan.GetString() == "pro");
        Assert.Equal("monthly-large", proQuota.GetProperty("name").GetString());
        Assert.Equal("monthly-large@pro", proQuota.GetProperty("counter").GetString());
        Assert.Equal(10, proQuota.GetProperty("limit").GetInt64());
        var freeQuota = Assert.Single(quotas, q => q.TryGetProperty("plan", out var plan) && plan.GetString() == "free");
        Assert.Equal("monthly-small@free", freeQuota.GetProperty("counter").GetString());
        Assert.Equal(3, freeQuota.GetProperty("limit").GetInt64());
        Assert.Equal(2, quotas.Count(q => !q.TryGetProperty("plan", out _)));

        var rateLimits = traffic.RootElement.GetProperty("rateLimits").EnumerateArray().ToList();
        var planLimits = rateLimits.Where(r => r.TryGetProperty("plan", out _)).Select(r => r.GetProperty("counter").GetString()).Order(StringComparer.Ordinal);
        Assert.Equal(["per-consumer-large@enterprise", "per-consumer-large@free", "per-consumer-large@pro"], planLimits);
        Assert.All(rateLimits.Where(r => r.TryGetProperty("plan", out _)), r => Assert.Equal(7, r.GetProperty("limit").GetInt64()));
        Assert.Equal(3, rateLimits.Count(r => !r.TryGetProperty("plan", out _)));
    }

    private static async Task AssertProblemAsync(TestGateway gateway, string path, string reason)
    {
        using var response = await gateway.Admin.GetAsync(path);
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        using var problem = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal(reason, problem.RootElement.GetProperty("reason").GetString());
    }
}
