using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Traffic;

/// <summary>
/// Shared limits through real gateways and a real redis-server: several instances enforcing one global
/// limit, quotas across a gateway restart, and Redis dying and returning under fail-open and fail-closed
/// policies.
/// </summary>
public sealed class RedisGatewayTests : IAsyncLifetime
{
    private TestUpstream _upstream = null!;
    private readonly List<IAsyncDisposable> _disposables = [];

    public async Task InitializeAsync() => _upstream = await TestUpstream.StartAsync("api");

    public async Task DisposeAsync()
    {
        for (var i = _disposables.Count - 1; i >= 0; i--) await _disposables[i].DisposeAsync();
        await _upstream.DisposeAsync();
    }

    private async Task<TestGateway> StartGatewayAsync(string yaml, string redis)
    {
        var gateway = await TestGateway.StartAsync(yaml
            .Replace("{{UPSTREAM}}", _upstream.Url, StringComparison.Ordinal)
            .Replace("{{REDIS}}", redis, StringComparison.Ordinal));
        _disposables.Add(gateway);
        return gateway;
    }

    private async Task<RedisServer> StartRedisAsync()
    {
        var redis = await RedisServer.StartAsync();
        _disposables.Add(redis);
        return redis;
    }

    // A generous timeout and fail-closed: on a loaded CI machine a slow answer must not open the circuit
    // and let requests through uncounted (fail-open), which would look like the limit leaking.
    private const string SharedLimit = """
        stores:
          redis: { connection: "{{REDIS}}", timeout: 2s }
        rateLimits:
          global: { key: [route], algorithm: slidingWindow, limit: 300, per: 1h, store: redis, onStoreFailure: closed }
          global-bucket: { key: [route], limit: 1, per: 1h, burst: 150, store: redis, onStoreFailure: closed }
        routes:
          - { name: sliding, match: { pathPrefix: /sliding }, cluster: api, rateLimits: [global] }
          - { name: bucket, match: { pathPrefix: /bucket }, cluster: api, rateLimits: [global-bucket] }
        clusters: { api: { destinations: [{{UPSTREAM}}] } }
        """;

    // Every gateway gets `perGateway` requests, sent 8 at a time per gateway, all gateways at once.
    private static async Task<int> HammerAsync(IReadOnlyList<TestGateway> gateways, string path, int perGateway)
    {
        var admitted = 0;
        await Task.WhenAll(gateways.Select(async gateway =>
        {
            var remaining = perGateway;
            await Task.WhenAll(Enumerable.Range(0, 8).Select(async _ =>
            {
                while (Interlocked.Decrement(ref remaining) >= 0)
                {
                    using var response = await gateway.Client.GetAsync(path);
                    if (response.StatusCode == HttpStatusCode.OK) Interlocked.Increment(ref admitted);
                    else Assert.True(response.StatusCode is HttpStatusCode.TooManyRequests or HttpStatusCode.ServiceUnavailable, $"unexpected {(int)response.StatusCode}");
                }
            }));
        }));
        return admitted;
    }

    [Fact]
    public async Task Three_gateways_sharing_one_redis_admit_one_global_limit()
    {
        var redis = await StartRedisAsync();
        var gateways = new List<TestGateway>();
        for (var i = 0; i < 3; i++) gateways.Add(await StartGatewayAsync(SharedLimit, redis.ConnectionString));

        var sliding = await HammerAsync(gateways, "/sliding", 200);
        Assert.InRange(sliding, 285, 315); // 300 ± 5% (strict mode: one atomic decision per request)
        var bucket = await HammerAsync(gateways, "/bucket", 100);
        Assert.InRange(bucket, 142, 158); // burst 150 ± 5%, refill 1 per hour
    }

    [Fact]
    public async Task Three_gateways_in_approximate_mode_stay_within_the_documented_bound()
    {
        var redis = await StartRedisAsync();
        const string yaml = """
            stores:
              redis: { connection: "{{REDIS}}", timeout: 2s }
            rateLimits:
              global: { key: [route], algorithm: slidingWindow, limit: 300, per: 1h, store: redis, mode: approximate, syncEvery: 50ms, onStoreFailure: closed }
            routes: [{ name: approx, match: { pathPrefix: / }, cluster: api, rateLimits: [global] }]
            clusters: { api: { destinations: [{{UPSTREAM}}] } }
            """;
        var gateways = new List<TestGateway>();
        for (var i = 0; i < 3; i++) gateways.Add(await StartGatewayAsync(yaml, redis.ConnectionString));

        const int perGateway = 400;
        var clock = Stopwatch.StartNew();
        var admitted = await HammerAsync(gateways, "/a", perGateway);
        var elapsed = clock.Elapsed;

        // docs/traffic.md: over the limit by at most (N - 1) x what one gateway admits in 3 x syncEvery.
        var perGatewayPerSecond = perGateway / elapsed.TotalSeconds;
        var bound = (int)Math.Ceiling(2 * perGatewayPerSecond * 3 * 0.05);
        Assert.True(admitted >= 285 && admitted <= 300 + bound, $"admitted {admitted}, limit 300, documented bound +{bound} ({perGatewayPerSecond:F0} req/s per gateway)");
    }

    [Fact]
    public async Task Three_gateways_on_a_redis_cluster_admit_one_global_limit()
    {
        var cluster = await RedisCluster.StartAsync();
        _disposables.Add(cluster);
        var gateways = new List<TestGateway>();
        for (var i = 0; i < 3; i++) gateways.Add(await StartGatewayAsync(SharedLimit, cluster.ConnectionString));

        var sliding = await HammerAsync(gateways, "/sliding", 200);
        Assert.InRange(sliding, 285, 315);
    }

    [Fact]
    public async Task A_quota_survives_a_gateway_restart()
    {
        var redis = await StartRedisAsync();
        const string yaml = """
            stores:
              redis: { connection: "{{REDIS}}" }
            quotas:
              monthly: { key: [header:X-Tenant], limit: 3, period: month }
            routes: [{ name: api, match: { pathPrefix: / }, cluster: api, quota: monthly }]
            clusters: { api: { destinations: [{{UPSTREAM}}] } }
            """;
        var first = await StartGatewayAsync(yaml, redis.ConnectionString);
        for (var i = 0; i < 2; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/x") { Headers = { { "X-Tenant", "acme" } } };
            using var response = await first.Client.SendAsync(request);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        await first.DisposeAsync();
        _disposables.Remove(first);

        var second = await StartGatewayAsync(yaml, redis.ConnectionString);
        using var usage = JsonDocument.Parse(await second.Admin.GetStringAsync("/admin/quotas/monthly?key=acme"));
        Assert.Equal(2, usage.RootElement.GetProperty("used").GetInt64());
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 2; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/x") { Headers = { { "X-Tenant", "acme" } } };
            using var response = await second.Client.SendAsync(request);
            statuses.Add(response.StatusCode);
        }

        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.TooManyRequests], statuses);
    }

    [Fact]
    public async Task Redis_dying_applies_fail_open_and_fail_closed_within_the_timeout_and_recovers()
    {
        var redis = await StartRedisAsync();
        var gateway = await StartGatewayAsync("""
            stores:
              redis: { connection: "{{REDIS}}", timeout: 150ms, retryAfter: 500ms }
            rateLimits:
              open: { key: [ip], limit: 1000, per: 1s, store: redis, onStoreFailure: open }
              closed: { key: [ip], limit: 1000, per: 1s, store: redis, onStoreFailure: closed }
            routes:
              - { name: open, match: { pathPrefix: /open }, cluster: api, rateLimits: [open] }
              - { name: closed, match: { pathPrefix: /closed }, cluster: api, rateLimits: [closed] }
            clusters: { api: { destinations: [{{UPSTREAM}}] } }
            """, redis.ConnectionString);

        await Eventually.TrueAsync(async () => (await gateway.Client.GetAsync("/closed")).StatusCode == HttpStatusCode.OK, "/closed to answer 200");
        using (var ready = JsonDocument.Parse(await gateway.Admin.GetStringAsync("/readyz")))
        {
            Assert.Equal("up", ready.RootElement.GetProperty("redis").GetProperty("state").GetString());
        }

        redis.Kill();
        var slowest = TimeSpan.Zero;
        for (var i = 0; i < 10; i++)
        {
            var clock = Stopwatch.StartNew();
            using var open = await gateway.Client.GetAsync("/open");
            Assert.Equal(HttpStatusCode.OK, open.StatusCode);
            using var closed = await gateway.Client.GetAsync("/closed");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, closed.StatusCode);
            Assert.NotNull(closed.Headers.RetryAfter);
            using var problem = JsonDocument.Parse(await closed.Content.ReadAsStringAsync());
            Assert.Equal("ratelimit.store-unavailable", problem.RootElement.GetProperty("reason").GetString());
            var elapsed = clock.Elapsed / 2;
            if (elapsed > slowest) slowest = elapsed;
        }

        // No request waits much longer than the store timeout (generous slack for a loaded CI machine).
        Assert.True(slowest < TimeSpan.FromMilliseconds(150 + 600), $"slowest request took {slowest.TotalMilliseconds:F0} ms");
        using (var ready = JsonDocument.Parse(await gateway.Admin.GetStringAsync("/readyz")))
        {
            Assert.Equal("degraded", ready.RootElement.GetProperty("status").GetString());
            Assert.Equal("down", ready.RootElement.GetProperty("redis").GetProperty("state").GetString());
        }

        Assert.Contains(gateway.Logs.Lines, line => line.Contains("Redis store unavailable", StringComparison.Ordinal));

        await redis.RestartAsync();
        await Eventually.TrueAsync(async () => (await gateway.Client.GetAsync("/closed")).StatusCode == HttpStatusCode.OK, "/closed to answer 200");
        using (var ready = JsonDocument.Parse(await gateway.Admin.GetStringAsync("/readyz")))
        {
            Assert.Equal("ready", ready.RootElement.GetProperty("status").GetString());
        }
    }
}
