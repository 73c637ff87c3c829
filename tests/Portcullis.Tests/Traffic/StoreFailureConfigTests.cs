using Portcullis.Configuration;

namespace Portcullis.Tests.Traffic;

/// <summary>Issue 14: onStoreFailure: local (the new default) and stores.redis.instances.</summary>
public sealed class StoreFailureConfigTests() : ConfigBuildTestBase("portcullis-storefailure-")
{
    private const string Head = """
        listeners: [{ name: public, address: 127.0.0.1:8080 }]
        clusters:
          api: { destinations: [http://127.0.0.1:5001] }

        """;

    [Fact]
    public void Local_is_the_default_and_the_share_divides_limit_and_burst_by_instances()
    {
        var result = Build(Head + """
            stores:
              redis: { connection: "127.0.0.1:6379", instances: 3 }
            rateLimits:
              shared: { key: [route], limit: 300, per: 10s, burst: 31, store: redis }
              leaky: { key: [route], limit: 300, per: 10s, store: redis, onStoreFailure: open }
            quotas:
              daily: { limit: 1000 }
            routes:
              - { name: r, match: { pathPrefix: / }, cluster: api, rateLimits: [shared, leaky], quota: daily }
            """);
        Assert.True(result.Succeeded, Dump(result));
        var route = result.Snapshot!.Routes["r"];
        var shared = route.RateLimits[0];
        Assert.Equal(StoreFailureMode.Local, shared.OnStoreFailure);
        Assert.Equal(100, shared.Share.Limit);
        Assert.Equal(11, shared.Share.Capacity);
        Assert.Equal(TrafficStore.Local, shared.Share.Store);
        Assert.Equal(StoreFailureMode.Open, route.RateLimits[1].OnStoreFailure);
        Assert.Equal(StoreFailureMode.Local, route.Quota!.OnStoreFailure);
        Assert.Equal(334, route.Quota.Share.Limit);
    }

    [Fact]
    public void Without_instances_each_instance_falls_back_to_the_whole_limit()
    {
        var result = Build(Head + """
            stores:
              redis: { connection: "127.0.0.1:6379" }
            rateLimits:
              shared: { key: [route], limit: 300, per: 10s, store: redis }
            routes:
              - { name: r, match: { pathPrefix: / }, cluster: api, rateLimits: [shared] }
            """);
        Assert.True(result.Succeeded, Dump(result));
        Assert.Equal(300, result.Snapshot!.Routes["r"].RateLimits[0].Share.Limit);
    }

    [Theory]
    [InlineData("instances: 0")]
    [InlineData("instances: -2")]
    public void Instances_below_one_are_refused_at_their_position(string setting)
    {
        var result = Build(Head + $$"""
            stores:
              redis: { connection: "127.0.0.1:6379", {{setting}} }
            """);
        var error = ErrorContaining(result, "instances must be at least 1");
        AssertAt(error, 5, 53);
        Assert.NotNull(error.Hint);
    }
}
