using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Portcullis.Configuration;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.IntegrationTests.Observability;
using Portcullis.State;
using Portcullis.Traffic;

namespace Portcullis.IntegrationTests.Traffic;

/// <summary>
/// Issue 14, item 1: a shared limit holds while Redis cannot answer. The breaker needs several failures
/// (one slow answer never opens it), and onStoreFailure: local makes each gateway enforce its share of
/// the limit (limit ÷ stores.redis.instances) instead of admitting everything; both are counted on
/// /metrics and in the access log.
/// </summary>
public sealed class RedisFallbackTests : IAsyncLifetime
{
    private TestUpstream _upstream = null!;
    private readonly List<IAsyncDisposable> _disposables = [];

    public async Task InitializeAsync() => _upstream = await TestUpstream.StartAsync("api");

    public async Task DisposeAsync()
    {
        for (var i = _disposables.Count - 1; i >= 0; i--) await _disposables[i].DisposeAsync();
        await _upstream.DisposeAsync();
    }

    [Fact]
    public async Task One_answer_slower_than_the_timeout_does_not_open_the_circuit()
    {
        var server = await RedisServer.StartAsync(extraArguments: ["--enable-debug-command", "yes"]);
        _disposables.Add(server);
        using var logs = new LogCollector();
        using var factory = LoggerFactory.Create(builder => builder.AddProvider(logs));
        var store = new RedisCounterStore(
            new RedisStoreOptions { Connection = server.ConnectionString, KeyPrefix = "fb:", Timeout = TimeSpan.FromMilliseconds(100), RetryAfter = TimeSpan.FromSeconds(5) },
            TimeProvider.System,
            factory.CreateLogger<RedisCounterStore>());
        _disposables.Add(store);
        var policy = new CompiledRateLimit
        {
            Name = "slow-once", Algorithm = RateLimitAlgorithm.TokenBucket, Limit = 1000, Per = TimeSpan.FromSeconds(1), Capacity = 1000,
            Store = TrafficStore.Redis, Key = new TrafficKey([]),
        };
        await WaitForAsync(async () => (await store.RateAsync(policy, "k", CancellationToken.None)).Outcome == RateOutcome.Allowed);

        // Redis blocks for 600 ms: the first call made during it times out; no other call is made meanwhile.
        var sleeping = server.CliAsync("DEBUG", "SLEEP", "0.6");
        var late = await WaitForAsync(async () => (await store.RateAsync(policy, "k", CancellationToken.None)).Outcome == RateOutcome.StoreUnavailable);
        await sleeping;

        // Before issue 14 this one timeout opened the circuit for retryAfter (5 s here): every call answered
        // StoreUnavailable without asking Redis.
        Assert.Equal(StoreState.Up, store.Health.State);
        Assert.Equal(RateOutcome.Allowed, (await store.RateAsync(policy, "k", CancellationToken.None)).Outcome);
        Assert.DoesNotContain(logs.Lines, l => l.Contains("Redis store unavailable", StringComparison.Ordinal));
        Assert.True(late < TimeSpan.FromSeconds(20));
    }

    [Fact]
    public async Task Three_gateways_with_a_frozen_redis_admit_their_local_shares_not_everything()
    {
        var redis = await RedisServer.StartAsync();
        _disposables.Add(redis);
        var yaml = """
            stores:
              redis: { connection: "{{REDIS}}", timeout: 100ms, retryAfter: 1s, instances: 3 }
            rateLimits:
              shared: { key: [route], algorithm: slidingWindow, limit: 300, per: 1h, store: redis }
              leaky: { key: [route], algorithm: slidingWindow, limit: 10, per: 1h, store: redis, onStoreFailure: open }
            routes:
              - { name: shared, match: { pathPrefix: /shared }, cluster: api, rateLimits: [shared] }
              - { name: leaky, match: { pathPrefix: /leaky }, cluster: api, rateLimits: [leaky] }
            clusters: { api: { destinations: [{{UPSTREAM}}] } }
            observability:
              accessLog: { enabled: true, target: file, path: access.log, flushInterval: 0ms }
            """.Replace("{{UPSTREAM}}", _upstream.Url, StringComparison.Ordinal).Replace("{{REDIS}}", redis.ConnectionString, StringComparison.Ordinal);
        var gateways = new List<TestGateway>();
        for (var i = 0; i < 3; i++)
        {
            var gateway = await TestGateway.StartAsync(yaml);
            _disposables.Add(gateway);
            gateways.Add(gateway);
            await WaitForAsync(async () => JsonDocument.Parse(await gateway.Admin.GetStringAsync("/readyz")).RootElement.GetProperty("redis").GetProperty("state").GetString() == "up");
        }

        redis.Freeze();
        int admitted;
        int leaked;
        var perGateway = new int[3];
        try
        {
            // 200 requests to each gateway (600 in all) against a shared limit of 300: each may admit 100.
            await Task.WhenAll(gateways.Select(async (gateway, index) =>
            {
                var remaining = 200;
                await Task.WhenAll(Enumerable.Range(0, 8).Select(async _ =>
                {
                    while (Interlocked.Decrement(ref remaining) >= 0)
                    {
                        using var response = await gateway.Client.GetAsync("/shared");
                        if (response.StatusCode == HttpStatusCode.OK) Interlocked.Increment(ref perGateway[index]);
                        else Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
                    }
                }));
            }));
            admitted = perGateway.Sum();

            // The explicit fail-open policy still admits everything (20 of a limit of 10).
            leaked = 0;
            for (var i = 0; i < 20; i++)
            {
                using var response = await gateways[0].Client.GetAsync("/leaky");
                if (response.StatusCode == HttpStatusCode.OK) leaked++;
            }

            // The access log says which requests the local share decided.
            using var one = await gateways[1].Client.GetAsync("/shared");
            Assert.Equal(HttpStatusCode.TooManyRequests, one.StatusCode);
            var line = await AccessLogFile.LineAsync(Path.Combine(gateways[1].Directory, "access.log"), one.Headers.GetValues("X-Request-Id").Single());
            Assert.Equal("ratelimit.store-unavailable.local-exceeded", line.GetProperty("stages").GetProperty("traffic").GetProperty("result").GetString());
            Assert.Equal("ratelimit.store-unavailable.local-exceeded", line.GetProperty("rateLimit").GetString());
        }
        finally
        {
            redis.Thaw();
        }

        // Before issue 14 (onStoreFailure: open by default) all 600 were admitted once the circuit opened.
        Assert.All(perGateway, n => Assert.InRange(n, 95, 102));
        Assert.InRange(admitted, 290, 303);
        Assert.Equal(20, leaked);

        // /metrics counts the fallback and fail-open decisions by outcome.
        var samples = await PrometheusText.ScrapeAsync(gateways[0].Admin);
        const string metric = "portcullis_traffic_store_unavailable_total";
        Assert.Equal(perGateway[0], samples.Sum(metric, ("route", "shared"), ("decision", "ratelimit.store-unavailable.local")));
        Assert.Equal(200 - perGateway[0], samples.Sum(metric, ("route", "shared"), ("decision", "ratelimit.store-unavailable.local-exceeded")));
        Assert.Equal(20, samples.Sum(metric, ("route", "leaky"), ("decision", "ratelimit.store-unavailable.open")));
        Assert.Equal(0, samples.Sum("portcullis_traffic_rejections_total", ("decision", "ratelimit.store-unavailable.local")));

        // Redis back: the shared count applies again (nothing was counted in Redis during the outage).
        await WaitForAsync(async () => JsonDocument.Parse(await gateways[0].Admin.GetStringAsync("/readyz")).RootElement.GetProperty("redis").GetProperty("state").GetString() == "up");
        using var after = await gateways[0].Client.GetAsync("/shared");
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
    }

    [Fact]
    public async Task Quotas_with_a_frozen_redis_count_their_fallback_on_metrics_access_log_and_admin_traffic()
    {
        var redis = await RedisServer.StartAsync();
        _disposables.Add(redis);
        var yaml = """
            stores:
              redis: { connection: "{{REDIS}}", timeout: 100ms, retryAfter: 1s, instances: 2 }
            quotas:
              shared: { key: [route], limit: 10, period: month, store: redis }
              leaky: { key: [route], limit: 2, period: month, store: redis, onStoreFailure: open }
              strict: { key: [route], limit: 2, period: month, store: redis, onStoreFailure: closed }
            routes:
              - { name: shared, match: { pathPrefix: /shared }, cluster: api, quota: shared }
              - { name: leaky, match: { pathPrefix: /leaky }, cluster: api, quota: leaky }
              - { name: strict, match: { pathPrefix: /strict }, cluster: api, quota: strict }
            clusters: { api: { destinations: [{{UPSTREAM}}] } }
            observability:
              accessLog: { enabled: true, target: file, path: access.log, flushInterval: 0ms }
            """.Replace("{{UPSTREAM}}", _upstream.Url, StringComparison.Ordinal).Replace("{{REDIS}}", redis.ConnectionString, StringComparison.Ordinal);
        var gateway = await TestGateway.StartAsync(yaml);
        _disposables.Add(gateway);
        await WaitForAsync(async () => JsonDocument.Parse(await gateway.Admin.GetStringAsync("/readyz")).RootElement.GetProperty("redis").GetProperty("state").GetString() == "up");

        // Redis answering: each quota shows its failure mode, a closed breaker and (local) its share.
        var quotas = await QuotasAsync(gateway);
        Assert.Equal("local", quotas["shared"].GetProperty("onStoreFailure").GetString());
        Assert.Equal("closed", quotas["shared"].GetProperty("breaker").GetString());
        Assert.Equal(5, quotas["shared"].GetProperty("localShare").GetInt64());
        Assert.Equal("open", quotas["leaky"].GetProperty("onStoreFailure").GetString());
        Assert.False(quotas["leaky"].TryGetProperty("localShare", out _));
        Assert.Equal("closed", quotas["strict"].GetProperty("onStoreFailure").GetString());

        redis.Freeze();
        var statuses = new List<HttpStatusCode>();
        HttpResponseMessage? refused = null;
        HttpResponseMessage? closed = null;
        try
        {
            for (var i = 0; i < 8; i++)
            {
                var response = await gateway.Client.GetAsync("/shared");
                statuses.Add(response.StatusCode);
                if (response.StatusCode == HttpStatusCode.TooManyRequests) refused = response;
                else response.Dispose();
            }

            for (var i = 0; i < 4; i++)
            {
                using var response = await gateway.Client.GetAsync("/leaky");
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            }

            closed = await gateway.Client.GetAsync("/strict");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, closed.StatusCode);
            // The failed calls (each waited for the 100 ms timeout) open the breaker; /admin/traffic shows it.
            await WaitForAsync(async () => (await QuotasAsync(gateway))["shared"].GetProperty("breaker").GetString() == "open");
        }
        finally
        {
            redis.Thaw();
        }

        // Before issue 14 the default (open) admitted all 8.
        Assert.Equal(5, statuses.Count(s => s == HttpStatusCode.OK));
        Assert.Equal(3, statuses.Count(s => s == HttpStatusCode.TooManyRequests));

        var log = Path.Combine(gateway.Directory, "access.log");
        var line = await AccessLogFile.LineAsync(log, refused!.Headers.GetValues("X-Request-Id").Single());
        Assert.Equal("quota.store-unavailable.local-exceeded", line.GetProperty("rateLimit").GetString());
        Assert.Equal("quota.exceeded", line.GetProperty("reason").GetString());
        line = await AccessLogFile.LineAsync(log, closed!.Headers.GetValues("X-Request-Id").Single());
        Assert.Equal("quota.store-unavailable", line.GetProperty("reason").GetString());
        refused.Dispose();
        closed.Dispose();

        var samples = await PrometheusText.ScrapeAsync(gateway.Admin);
        const string metric = "portcullis_traffic_store_unavailable_total";
        Assert.Equal(5, samples.Sum(metric, ("route", "shared"), ("decision", "quota.store-unavailable.local")));
        Assert.Equal(3, samples.Sum(metric, ("route", "shared"), ("decision", "quota.store-unavailable.local-exceeded")));
        Assert.Equal(4, samples.Sum(metric, ("route", "leaky"), ("decision", "quota.store-unavailable.open")));
        Assert.Equal(1, samples.Sum(metric, ("route", "strict"), ("decision", "quota.store-unavailable")));

        // Redis back: the breaker closes again.
        await WaitForAsync(async () => (await QuotasAsync(gateway))["shared"].GetProperty("breaker").GetString() == "closed");
    }

    private static async Task<Dictionary<string, JsonElement>> QuotasAsync(TestGateway gateway)
    {
        using var traffic = JsonDocument.Parse(await gateway.Admin.GetStringAsync("/admin/traffic"));
        return traffic.RootElement.GetProperty("quotas").EnumerateArray().ToDictionary(q => q.GetProperty("name").GetString()!, q => q.Clone());
    }

    private static async Task<TimeSpan> WaitForAsync(Func<Task<bool>> condition)
    {
        var clock = Stopwatch.StartNew();
        while (!await condition())
        {
            if (clock.Elapsed > TimeSpan.FromSeconds(20)) throw new TimeoutException("condition not met in 20 s");
            await Task.Delay(50);
        }

        return clock.Elapsed;
    }
}
