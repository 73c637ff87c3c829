using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Admin;

/// <summary>
/// The admin listener and the route listeners as separate endpoint worlds: admin paths (health, readiness,
/// metrics, the admin API) never answer on a route listener and routes never answer on the admin listener;
/// admin paths answer only as spelled and only to their methods (404 otherwise, after authentication).
/// </summary>
public sealed class AdminEndpointsTests : IAsyncLifetime
{
    private const string OpsToken = "ops-token-5f1c0d9e8b7a6f5e4d3c";
    private const string GrafanaToken = "grafana-token-9a8b7c6d5e4f3a2b";

    private static readonly string[] AdminPaths = ["/healthz", "/readyz", "/metrics", "/admin/config", "/admin/clusters", "/admin/reload", "/admin/traffic", "/admin/certificates", "/admin/quotas/daily"];

    private TestUpstream _upstream = null!;

    public async Task InitializeAsync() => _upstream = await TestUpstream.StartAsync("api");

    public async Task DisposeAsync() => await _upstream.DisposeAsync();

    private string Config(string routeMatch, string admin = "") => $$"""
        quotas:
          daily: { limit: 10, period: day, key: [ip], store: local }
        routes:
          - { name: api, match: { {{routeMatch}} }, cluster: api }
        clusters:
          api: { destinations: [{{_upstream.Url}}] }
        {{admin}}
        """;

    private static async Task AssertProblemAsync(HttpResponseMessage response, HttpStatusCode status, string reason, string what)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(status == response.StatusCode, $"{what}: {(int)response.StatusCode} {body}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        using var problem = JsonDocument.Parse(body);
        Assert.Equal(reason, problem.RootElement.GetProperty("reason").GetString());
    }

    [Fact]
    public async Task Admin_paths_never_answer_on_the_route_listener()
    {
        await using var gateway = await TestGateway.StartAsync(Config("pathPrefix: /api"));

        // No route matches: the route listener's 404, never the admin answer.
        foreach (var path in AdminPaths)
        {
            using (var get = await gateway.Client.GetAsync(path)) await AssertProblemAsync(get, HttpStatusCode.NotFound, "route.unmatched", "GET " + path);
            using (var post = await gateway.Client.PostAsync(path, null)) await AssertProblemAsync(post, HttpStatusCode.NotFound, "route.unmatched", "POST " + path);
        }

        // The same paths on the admin listener answer (they exist).
        using (var ready = await gateway.Admin.GetAsync("/readyz")) Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        using (var config = await gateway.Admin.GetAsync("/admin/config")) Assert.Equal(HttpStatusCode.OK, config.StatusCode);

        // A route matching everything proxies them to the upstream like any path.
        await gateway.WriteConfigAsync(Config("pathPrefix: /"));
        var (status, _) = await gateway.ReloadAsync();
        Assert.Equal(200, status);
        foreach (var path in AdminPaths)
        {
            using var response = await gateway.Client.GetAsync(path);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            if (path == "/healthz")
            {
                // The test upstream answers its own /healthz with an empty 200 (the admin listener says "ok").
                Assert.Equal("", await response.Content.ReadAsStringAsync());
                Assert.Equal(1, _upstream.HealthProbes);
                continue;
            }

            var answer = await UpstreamAnswer.ReadAsync(response);
            Assert.Equal("api", answer.Server);
            Assert.Equal(path, answer.Path);
        }

        Assert.Equal(AdminPaths.Length - 1, _upstream.Requests);
    }

    [Fact]
    public async Task Routes_never_answer_on_the_admin_listener()
    {
        await using var gateway = await TestGateway.StartAsync(Config("pathPrefix: /"));
        foreach (var path in (string[])["/", "/api/orders", "/.well-known/portcullis/jwks.json", "/admin"])
        {
            using var response = await gateway.Admin.GetAsync(path);
            await AssertProblemAsync(response, HttpStatusCode.NotFound, "admin.not-found", "admin GET " + path);
        }

        Assert.Equal(0, _upstream.Requests);
        using var proxied = await gateway.Client.GetAsync("/api/orders");
        Assert.Equal(HttpStatusCode.OK, proxied.StatusCode);
    }

    [Fact]
    public async Task Admin_paths_answer_only_as_spelled_and_to_their_methods_after_authentication()
    {
        await using var gateway = await TestGateway.StartAsync(Config("pathPrefix: /api", """
            admin:
              auth:
                tokens:
                  - { name: ops, scope: admin, env: OPS_TOKEN }
                  - { name: grafana, scope: read, env: GRAFANA_TOKEN }
            """), environment: name => name switch { "OPS_TOKEN" => OpsToken, "GRAFANA_TOKEN" => GrafanaToken, _ => null });

        async Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, string? token)
        {
            using var request = new HttpRequestMessage(method, path);
            if (token is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            return await gateway.Admin.SendAsync(request);
        }

        // Known paths, their methods: answered (HEAD like GET).
        using (var config = await SendAsync(HttpMethod.Get, "/admin/config", GrafanaToken)) Assert.Equal(HttpStatusCode.OK, config.StatusCode);
        using (var head = await SendAsync(HttpMethod.Head, "/admin/clusters", GrafanaToken)) Assert.Equal(HttpStatusCode.OK, head.StatusCode);
        using (var quota = await SendAsync(HttpMethod.Get, "/admin/quotas/daily?key=1.2.3.4", GrafanaToken)) Assert.Equal(HttpStatusCode.OK, quota.StatusCode);
        using (var unknownQuota = await SendAsync(HttpMethod.Get, "/admin/quotas/monthly?key=x", GrafanaToken))
        {
            await AssertProblemAsync(unknownQuota, HttpStatusCode.NotFound, "admin.quota-unknown", "unknown quota");
        }

        // Other methods and other spellings: 404 (never 405), for a caller allowed everything.
        (HttpMethod Method, string Path)[] unknown =
        [
            (HttpMethod.Put, "/admin/config"), (HttpMethod.Delete, "/admin/reload"), (HttpMethod.Post, "/readyz"), (HttpMethod.Post, "/healthz"),
            (HttpMethod.Post, "/admin/clusters"), (HttpMethod.Get, "/admin/clusters/api/destinations/d0/drain"),
            (HttpMethod.Get, "/ADMIN/CONFIG"), (HttpMethod.Get, "/admin/config/"), (HttpMethod.Get, "/Admin/Quotas/daily?key=x"),
            (HttpMethod.Post, "/admin/issuers/none/REFRESH"), (HttpMethod.Get, "/admin/nothing"),
        ];
        foreach (var (method, path) in unknown)
        {
            using var response = await SendAsync(method, path, OpsToken);
            await AssertProblemAsync(response, HttpStatusCode.NotFound, "admin.not-found", $"{method} {path}");
        }

        // Without a credential, the same requests are refused before anything tells whether they exist.
        foreach (var (method, path) in unknown.Where(u => u.Path != "/readyz" && u.Path != "/healthz"))
        {
            using var response = await SendAsync(method, path, null);
            await AssertProblemAsync(response, HttpStatusCode.Unauthorized, "admin.unauthenticated", $"anonymous {method} {path}");
        }
    }

    [Fact]
    public async Task Readyz_reports_each_capability_and_names_a_cluster_without_destinations()
    {
        await using var gateway = await TestGateway.StartAsync(Config("pathPrefix: /api"));
        using (var ready = await gateway.Admin.GetAsync("/readyz"))
        {
            Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
            Assert.Equal("no-store", ready.Headers.CacheControl?.ToString());
            var json = await ready.Content.ReadFromJsonAsync<JsonElement>();
            Assert.Equal("ready", json.GetProperty("status").GetString());
            Assert.True(json.GetProperty("generation").GetInt64() >= 1);
            var checks = json.GetProperty("checks");
            foreach (var name in (string[])["lifetime", "clusters", "issuers", "redis", "sessionStore", "sessionProviders", "certificates"])
            {
                Assert.True(checks.TryGetProperty(name, out var check), $"check {name} in {json}");
                Assert.Equal("healthy", check.GetProperty("status").GetString());
            }
        }

        // Its only destination drained: the cluster check says so, still 200 (other routes serve).
        var destination = (await gateway.Admin.GetFromJsonAsync<JsonElement>("/admin/clusters")).GetProperty("clusters")[0].GetProperty("destinations")[0].GetProperty("name").GetString();
        using (var drain = await gateway.Admin.PostAsync($"/admin/clusters/api/destinations/{destination}/drain", null)) Assert.Equal(HttpStatusCode.OK, drain.StatusCode);
        using (var ready = await gateway.Admin.GetAsync("/readyz"))
        {
            Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
            var json = await ready.Content.ReadFromJsonAsync<JsonElement>();
            Assert.Equal("degraded", json.GetProperty("status").GetString());
            var clusters = json.GetProperty("checks").GetProperty("clusters");
            Assert.Equal("degraded", clusters.GetProperty("status").GetString());
            Assert.Contains("cluster api", clusters.GetProperty("description").GetString(), StringComparison.Ordinal);
            Assert.Equal("healthy", json.GetProperty("checks").GetProperty("issuers").GetProperty("status").GetString());
        }

        using (var undrain = await gateway.Admin.PostAsync($"/admin/clusters/api/destinations/{destination}/undrain", null)) Assert.Equal(HttpStatusCode.OK, undrain.StatusCode);
        var after = await gateway.Admin.GetFromJsonAsync<JsonElement>("/readyz");
        Assert.Equal("ready", after.GetProperty("status").GetString());
    }

    [Fact]
    public async Task Readyz_names_the_redis_checks_while_redis_is_down()
    {
        await using var redis = await RedisServer.StartAsync();
        // The counters' store and the session store (a connection of its own) on the same Redis; the
        // provider is never asked (no sign-in happens here).
        await using var gateway = await TestGateway.StartAsync($$"""
            stores:
              redis: { connection: "{{redis.ConnectionString}}", timeout: 500ms, retryAfter: 200ms }
            identity:
              sessions:
                store: redis
                keyRing: { unprotected: true }
                cookie: { name: sid }
                providers:
                  - { name: corp, authority: "http://127.0.0.1:9/", clientId: gateway, clientSecretEnv: SESSION_SECRET }
            routes:
              - { name: api, match: { pathPrefix: /api }, cluster: api }
            clusters:
              api: { destinations: [{{_upstream.Url}}] }
            """, environment: name => name == "SESSION_SECRET" ? "s3cret-s3cret-s3cret" : null);

        async Task<JsonElement> ReadyAsync()
        {
            using var response = await gateway.Admin.GetAsync("/readyz");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode); // degraded is still ready
            return await response.Content.ReadFromJsonAsync<JsonElement>();
        }

        static string Check(JsonElement ready, string name) => ready.GetProperty("checks").GetProperty(name).GetProperty("status").GetString()!;

        // The provider is unreachable (port 9): sessionProviders stays degraded throughout; the Redis checks move.
        await Eventually.TrueAsync(async () => await ReadyAsync() is var r && Check(r, "redis") == "healthy" && Check(r, "sessionStore") == "healthy", "the Redis checks healthy with Redis up");
        Assert.Equal("degraded", Check(await ReadyAsync(), "sessionProviders"));
        redis.Kill();
        await Eventually.TrueAsync(async () =>
        {
            var ready = await ReadyAsync();
            return Check(ready, "redis") == "degraded" && Check(ready, "sessionStore") == "degraded";
        }, "both Redis checks degraded", context: async () => (await ReadyAsync()).ToString());

        var down = await ReadyAsync();
        Assert.Equal("degraded", down.GetProperty("status").GetString());
        Assert.Equal("down", down.GetProperty("redis").GetProperty("state").GetString());
        Assert.Contains("stores.redis is down", down.GetProperty("checks").GetProperty("redis").GetProperty("description").GetString(), StringComparison.Ordinal);
        Assert.Contains("session store", down.GetProperty("checks").GetProperty("sessionStore").GetProperty("description").GetString(), StringComparison.Ordinal);
        Assert.Equal("healthy", Check(down, "clusters"));

        await redis.StartAsync();
        await Eventually.TrueAsync(async () => await ReadyAsync() is var r && Check(r, "redis") == "healthy" && Check(r, "sessionStore") == "healthy", "the Redis checks healthy again once Redis is back");
    }
}
