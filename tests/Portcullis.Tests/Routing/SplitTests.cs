using Microsoft.AspNetCore.Http;
using Portcullis.Configuration;
using Portcullis.Routing;
using Portcullis.Pipeline;

namespace Portcullis.Tests.Routing;

/// <summary>routes[].split: placement on the range, stickiness, and validation with positions.</summary>
public sealed class SplitTests() : ConfigBuildTestBase("portcullis-split-")
{
    private static CompiledSplit Split(string? sticky, params (string Cluster, int Weight)[] targets)
    {
        RequestSource? source = null;
        if (sticky is not null)
        {
            Assert.True(RequestSource.TryParse(sticky, out var parsed, out _));
            source = parsed;
        }

        return new CompiledSplit(targets, source);
    }

    private static HttpRequest Request(string? user = null, string? cookie = null)
    {
        var context = new DefaultHttpContext();
        if (user is not null) context.Request.Headers["X-User"] = user;
        if (cookie is not null) context.Request.Headers.Cookie = $"canary={cookie}";
        return context.Request;
    }

    [Fact]
    public void Every_point_of_the_range_belongs_to_a_cluster_in_proportion_to_its_weight()
    {
        var split = Split(null, ("v1", 95), ("v2", 5), ("v3", 0));
        var counts = Enumerable.Range(0, 1 << 16).GroupBy(p => split.ClusterAt(p)).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(2, counts.Count); // a zero weight owns nothing
        Assert.InRange(counts["v2"] / 65536.0, 0.0499, 0.0501);
        Assert.Equal(65536, counts.Values.Sum());
    }

    [Fact]
    public void The_same_shares_at_another_scale_place_every_point_the_same()
    {
        var small = Split(null, ("v1", 95), ("v2", 5));
        var large = Split(null, ("v1", 950), ("v2", 50));
        for (var p = 0; p < 1 << 16; p++) Assert.Equal(small.ClusterAt(p), large.ClusterAt(p));
    }

    [Fact]
    public void Raising_the_last_clusters_weight_only_moves_callers_toward_it()
    {
        var before = Split("header:X-User", ("v1", 95), ("v2", 5));
        var after = Split("header:X-User", ("v1", 80), ("v2", 20));
        var moved = 0;
        for (var i = 0; i < 5000; i++)
        {
            var request = Request(user: $"user-{i}");
            var (was, now) = (before.Choose(request), after.Choose(request));
            Assert.False(was == "v2" && now == "v1", $"user-{i} moved back from v2 to v1");
            if (was != now) moved++;
        }

        Assert.InRange(moved / 5000.0, 0.12, 0.18); // about the 15 % that changed hands
    }

    [Fact]
    public void A_sticky_value_always_gets_the_same_cluster_and_values_spread_by_weight()
    {
        var split = Split("cookie:canary", ("v1", 70), ("v2", 30));
        var v2 = 0;
        for (var i = 0; i < 4000; i++)
        {
            var first = split.Choose(Request(cookie: $"c{i}"));
            for (var j = 0; j < 3; j++) Assert.Equal(first, split.Choose(Request(cookie: $"c{i}")));
            if (first == "v2") v2++;
        }

        Assert.InRange(v2 / 4000.0, 0.27, 0.33);
    }

    [Fact]
    public void Without_the_sticky_value_requests_are_drawn_at_random()
    {
        var split = Split("header:X-User", ("v1", 50), ("v2", 50));
        var seen = Enumerable.Range(0, 200).Select(_ => split.Choose(Request())).ToHashSet();
        Assert.Equal(["v1", "v2"], seen.Order());
    }

    [Fact]
    public void A_route_with_a_split_proxies_to_its_first_cluster_in_yarp_and_compiles_the_split()
    {
        var result = Build("""
            listeners: [{ name: public, address: 127.0.0.1:8080 }]
            routes:
              - name: orders
                match: { pathPrefix: /orders }
                split:
                  clusters:
                    - { cluster: v1, weight: 90 }
                    - { cluster: v2, weight: 10 }
                  sticky: consumer
            clusters:
              v1: { destinations: [http://127.0.0.1:1] }
              v2: { destinations: [http://127.0.0.1:2] }
            """);
        Assert.True(result.Succeeded, Dump(result));
        var route = result.Snapshot!.Routes["orders"];
        Assert.Equal(["v1", "v2"], route.Split!.Clusters);
        Assert.Equal(RequestSourceKind.Consumer, route.Split.Sticky!.Value.Kind);
        Assert.Equal("v1", result.Snapshot.ProxyRoutes.Single(r => r.RouteId == "orders").ClusterId);
    }

    [Fact]
    public void Bad_splits_are_reported_at_their_position_with_a_hint()
    {
        var result = Build("""
            listeners: [{ name: public, address: 127.0.0.1:8080 }]
            routes:
              - name: orders
                match: { pathPrefix: /orders }
                split:
                  clusters:
                    - { cluster: v1, weight: 90 }
                    - { cluster: v3, weight: 10 }
                    - { cluster: v1, weight: 5 }
                    - { cluster: v2, weight: -1 }
                  sticky: "cookie:"
              - name: both
                match: { pathPrefix: /both }
                cluster: v1
                split: { clusters: [{ cluster: v2, weight: 1 }] }
              - name: zero
                match: { pathPrefix: /zero }
                split: { clusters: [{ cluster: v1, weight: 0 }, { cluster: v2 }] }
            clusters:
              v1: { destinations: [http://127.0.0.1:1] }
              v2: { destinations: [http://127.0.0.1:2] }
            """);
        Assert.False(result.Succeeded);
        AssertAt(ErrorContaining(result, "unknown cluster 'v3'"), 8, 22);
        Assert.Contains("did you mean", ErrorContaining(result, "unknown cluster 'v3'").Hint);
        AssertAt(ErrorContaining(result, "listed twice"), 9, 22);
        AssertAt(ErrorContaining(result, "weight must be 0 or more"), 10, 34);
        AssertAt(ErrorContaining(result, "unknown request source"), 11, 15);
        ErrorContaining(result, "must have exactly one of cluster, split, redirect or respond (it has 2)");
        ErrorContaining(result, "every weight is 0");
    }
}
