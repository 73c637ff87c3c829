using Portcullis.Configuration;

namespace Portcullis.Tests.Traffic;

/// <summary>Absurd traffic settings are refused with the position of the offending key and a hint.</summary>
public sealed class TrafficConfigTests() : ConfigBuildTestBase("portcullis-traffic-")
{
    private const string Head = """
        listeners: [{ name: public, address: 127.0.0.1:8080 }]
        clusters:
          api: { destinations: [http://127.0.0.1:5001] }

        """;

    [Fact]
    public void A_complete_traffic_config_compiles()
    {
        var result = Build(Head + """
            stores:
              redis: { connection: "127.0.0.1:6379", timeout: 50ms }
            rateLimits:
              per-consumer: { key: [consumer], limit: 100, per: 1s, burst: 20 }
              per-ip-spike: { key: [ip], algorithm: spikeArrest, limit: 10, per: 1s }
              global: { key: [route], algorithm: slidingWindow, limit: 1000, per: 1m, store: redis, mode: approximate, syncEvery: 50ms, onStoreFailure: closed }
            quotas:
              daily: { key: [consumer, header:X-Tenant], limit: 10000, period: day, timeZone: Europe/Berlin }
            routes:
              - name: orders
                match: { pathPrefix: /orders }
                cluster: api
                rateLimits: [per-ip-spike, per-consumer, global]
                quota: daily
                concurrency: { max: 50, queue: 10, queueTimeout: 500ms }
            """);
        Assert.True(result.Succeeded, Dump(result));
        var route = result.Snapshot!.Routes["orders"];
        Assert.Equal(["per-ip-spike", "per-consumer", "global"], route.RateLimits.Select(p => p.Name));
        Assert.Equal(20, route.RateLimits[1].Capacity);
        Assert.Equal(1, route.RateLimits[0].Capacity);
        Assert.Equal(TrafficStore.Redis, route.Quota!.Store); // redis is configured, so quotas persist there by default
        Assert.Equal(50, route.Concurrency!.Options.Max);
    }

    [Fact]
    public void Refusal_texts_are_compiled_with_the_policies_and_read_as_before()
    {
        // The texts clients see in problem details; compiled once per policy instead of per request.
        var result = Build("""
            listeners: [{ name: public, address: 127.0.0.1:8080 }]
            clusters:
              api: { destinations: [http://127.0.0.1:5001], concurrency: { max: 7, retryAfter: 3s } }
            rateLimits:
              per-consumer: { key: [consumer], limit: 100, per: 1m30s }
            quotas:
              daily: { key: [consumer], limit: 10000, period: day, store: local }
            routes:
              - name: orders
                match: { pathPrefix: /orders }
                cluster: api
                rateLimits: [per-consumer]
                quota: daily
                concurrency: { max: 50 }
            """);
        Assert.True(result.Succeeded, Dump(result));
        var route = result.Snapshot!.Routes["orders"];
        var limit = route.RateLimits[0];
        Assert.Equal("Rate limit 'per-consumer' cannot be checked right now.", limit.UnavailableDetail);
        Assert.Equal("Rate limit 'per-consumer' allows 100 requests per 90s; ", limit.LimitedDetailPrefix);
        Assert.Equal("Quota 'daily' cannot be checked right now.", route.Quota!.UnavailableDetail);
        Assert.Equal("Quota 'daily' allows 10000 requests per day; ", route.Quota.LimitedDetailPrefix);
        Assert.Equal("This route serves at most 50 requests at once; retry after 1 s.", route.Concurrency!.RefusalDetail);
        Assert.Equal("1", route.Concurrency.RetryAfterSeconds);
        var cluster = result.Snapshot.Clusters["api"].Concurrency!;
        Assert.Equal("This cluster serves at most 7 requests at once; retry after 3 s.", cluster.RefusalDetail);
        Assert.Equal("3", cluster.RetryAfterSeconds);
    }

    [Theory]
    [InlineData("limit: 0", "limit must be at least 1", 5, 15)]
    [InlineData("limit: -5", "limit must be at least 1", 5, 15)]
    [InlineData("limit: 10, per: 0s", "per must be greater than zero", 5, 24)]
    [InlineData("limit: 10, burst: 0", "burst must be at least 1", 5, 26)]
    [InlineData("limit: 10, algorithm: spikeArrest, burst: 5", "burst applies to the tokenBucket algorithm only", 5, 50)]
    [InlineData("limit: 10, key: [consumre]", "unknown key part 'consumre'", 5, 25)]
    [InlineData("limit: 10, key: []", "key needs at least one part", 5, 24)]
    [InlineData("limit: 10, store: redis", "store: redis needs a Redis connection", 5, 26)]
    [InlineData("limit: 10, mode: approximate", "mode: approximate applies to store: redis only", 5, 25)]
    [InlineData("limit: 100000000000, per: 1s", "finer than a microsecond", 5, 15)]
    public void Bad_rate_limits_are_refused_at_their_position(string settings, string message, int line, int column)
    {
        var result = Build(Head + $$"""
            rateLimits:
              p: { {{settings}} }
            routes: [{ name: r, match: { pathPrefix: / }, cluster: api, rateLimits: [p] }]
            """);
        var error = ErrorContaining(result, message);
        AssertAt(error, line, column);
        Assert.NotNull(error.Hint);
    }

    [Fact]
    public void Unknown_policy_names_on_a_route_get_a_suggestion()
    {
        var result = Build(Head + """
            rateLimits:
              per-consumer: { limit: 10 }
            quotas:
              daily: { limit: 10 }
            routes:
              - name: r
                match: { pathPrefix: / }
                cluster: api
                rateLimits: [per-consumr]
                quota: dayly
            """);
        var limit = ErrorContaining(result, "unknown rate limit 'per-consumr'");
        AssertAt(limit, 12, 18);
        Assert.Contains("per-consumer", limit.Hint);
        var quota = ErrorContaining(result, "unknown quota 'dayly'");
        AssertAt(quota, 13, 12);
        Assert.Contains("daily", quota.Hint);
    }

    [Fact]
    public void A_redis_store_named_with_an_empty_connection_is_refused()
    {
        _environment["REDIS"] = "";
        var result = Build(Head + """
            stores:
              redis: { connection: "${REDIS:-}" }
            quotas:
              monthly: { limit: 10, period: month, store: redis }
            routes: [{ name: r, match: { pathPrefix: / }, cluster: api, quota: monthly }]
            """);
        AssertAt(ErrorContaining(result, "store: redis needs a Redis connection"), 7, 47);
    }

    [Fact]
    public void Bad_quotas_concurrency_and_store_settings_are_each_reported()
    {
        var result = Build(Head + """
            stores:
              redis: { connection: "127.0.0.1:6379", timeout: 0s, keyPrefix: "a{b}" }
            quotas:
              q: { limit: 0, timeZone: Mars/Olympus }
            routes:
              - name: r
                match: { pathPrefix: / }
                cluster: api
                concurrency: { max: 0, queue: -1 }
            """);
        AssertAt(ErrorContaining(result, "timeout must be greater than zero"), 5, 51);
        AssertAt(ErrorContaining(result, "keyPrefix cannot contain"), 5, 66);
        AssertAt(ErrorContaining(result, "limit must be at least 1 (it is 0)"), 7, 15);
        AssertAt(ErrorContaining(result, "unknown time zone 'Mars/Olympus'"), 7, 28);
        AssertAt(ErrorContaining(result, "max must be at least 1"), 12, 25);
        AssertAt(ErrorContaining(result, "queue cannot be negative"), 12, 35);
    }

    [Fact]
    public void A_shared_concurrency_limit_needs_redis_no_queue_and_a_lease_ttl_of_at_least_a_second()
    {
        var result = Build(Head + """
            routes:
              - name: r
                match: { pathPrefix: / }
                cluster: api
                concurrency: { max: 2, store: redis }
            """);
        AssertAt(ErrorContaining(result, "store: redis needs a Redis connection"), 8, 35);

        result = Build(Head + """
            stores: { redis: { connection: "127.0.0.1:6379" } }
            routes:
              - name: r
                match: { pathPrefix: / }
                cluster: api
                concurrency: { max: 2, store: redis, queue: 5, leaseTtl: 500ms }
            """);
        AssertAt(ErrorContaining(result, "queue is not supported with store: redis"), 9, 49);
        AssertAt(ErrorContaining(result, "leaseTtl must be at least 1s"), 9, 62);
    }

    [Fact]
    public void Approximate_mode_needs_a_sliding_window()
    {
        var result = Build(Head + """
            stores: { redis: { connection: "127.0.0.1:6379" } }
            rateLimits:
              p: { limit: 10, store: redis, mode: approximate }
            routes: [{ name: r, match: { pathPrefix: / }, cluster: api, rateLimits: [p] }]
            """);
        AssertAt(ErrorContaining(result, "works with algorithm: slidingWindow only"), 6, 39);
    }

    [Fact]
    public void A_local_quota_warns_that_it_is_not_shared_or_persisted()
    {
        var result = Build(Head + """
            quotas:
              daily: { limit: 10 }
            routes: [{ name: r, match: { pathPrefix: / }, cluster: api, quota: daily }]
            """);
        Assert.True(result.Succeeded, Dump(result));
        Assert.Contains(result.Diagnostics, d => d.Severity == DiagnosticSeverity.Warning && d.Message.Contains("counted in-process", StringComparison.Ordinal));
    }
}
