using Microsoft.Extensions.DependencyInjection;
using Portcullis.Configuration;
using Yarp.ReverseProxy.Configuration;

namespace Portcullis.Tests.Configuration;

/// <summary>
/// A compile given the serving generation hands YARP the same route and cluster objects for what did not change,
/// and YARP's validator is asked only about the rest (issue 20: a one-route reload of 50,000 routes validated all of
/// them twice). Validated with YARP's own validator, as the gateway does.
/// </summary>
public sealed class ProxyConfigReuseTests() : ConfigBuildTestBase("portcullis-reuse-")
{
    private static string Yaml(string bPath = "/b", string cDestination = "http://127.0.0.1:9") => $$"""
        listeners: [{ name: public, address: 127.0.0.1:8080 }]
        routes:
          - { name: a, match: { pathPrefix: /a }, cluster: c }
          - { name: b, match: { path: "{{bPath}}" }, cluster: c }
          - { name: x, match: { pathPrefix: /x, methods: [GET] }, cluster: d }
        clusters:
          c: { destinations: [{{cDestination}}] }
          d: { destinations: [http://127.0.0.1:10] }
        """;

    // YARP's validator as the gateway registers it (policies, transforms), around which the tests put their own cache.
    private static ServiceProvider Yarp() => new ServiceCollection().AddLogging().AddPortcullisProxy().BuildServiceProvider();

    private BuildResult Compile(string yaml, IConfigValidator validator, GatewaySnapshot? previous)
    {
        WriteFile("portcullis.yaml", yaml);
        return new SnapshotBuilder(name => _environment.GetValueOrDefault(name), validator).Build([ConfigPath], previous is null ? 1 : previous.Generation + 1, previous);
    }

    [Fact]
    public async Task Unchanged_routes_and_clusters_keep_their_objects_and_only_the_change_is_validated()
    {
        using var services = Yarp();
        var yarp = new CountingValidator(services.GetRequiredService<IConfigValidator>());
        var validator = new CachedConfigValidator(yarp, new ValidatedProxyConfigs());
        var first = Compile(Yaml(), validator, previous: null);
        Assert.True(first.Succeeded, Dump(first));
        Assert.Equal((3, 2), (yarp.Routes, yarp.Clusters));

        var second = Compile(Yaml(bPath: "/b2", cDestination: "http://127.0.0.1:11"), validator, first.Snapshot);
        Assert.True(second.Succeeded, Dump(second));
        // Route b and cluster c changed: validated again; a, x and d are the previous objects, not validated again.
        Assert.Equal((4, 3), (yarp.Routes, yarp.Clusters));
        var before = first.Snapshot!.ProxyRoutes.ToDictionary(r => r.RouteId);
        var after = second.Snapshot!.ProxyRoutes.ToDictionary(r => r.RouteId);
        Assert.Same(before["a"], after["a"]);
        Assert.Same(before["x"], after["x"]);
        Assert.NotSame(before["b"], after["b"]);
        Assert.Equal("/b2", after["b"].Match.Path);
        Assert.Same(first.Snapshot.ProxyClusters.Single(c => c.ClusterId == "d"), second.Snapshot.ProxyClusters.Single(c => c.ClusterId == "d"));
        Assert.NotSame(first.Snapshot.ProxyClusters.Single(c => c.ClusterId == "c"), second.Snapshot.ProxyClusters.Single(c => c.ClusterId == "c"));

        // What YARP's own apply asks next (the same objects) is answered from the cache.
        foreach (var route in second.Snapshot.ProxyRoutes) Assert.Empty(await validator.ValidateRouteAsync(route));
        Assert.Equal(4, yarp.Routes);
    }

    [Fact]
    public void A_changed_route_YARP_rejects_is_still_rejected_at_its_line()
    {
        using var services = Yarp();
        var validator = new CachedConfigValidator(services.GetRequiredService<IConfigValidator>(), new ValidatedProxyConfigs());
        var first = Compile(Yaml(), validator, previous: null);
        Assert.True(first.Succeeded, Dump(first));

        // A catch-all that is not the last segment: only YARP's route template parser knows it is wrong.
        var second = Compile(Yaml(bPath: "/b/{**rest}/more"), validator, first.Snapshot);
        Assert.False(second.Succeeded);
        var error = Assert.Single(second.Errors);
        Assert.Contains("route 'b'", error.Message, StringComparison.Ordinal);
        Assert.Equal(4, error.Line);

        // Put back, the route is valid again (a rejected object is never remembered as valid).
        var third = Compile(Yaml(), validator, first.Snapshot);
        Assert.True(third.Succeeded, Dump(third));
    }

    [Fact]
    public void A_route_renamed_only_in_case_is_not_taken_for_the_old_one()
    {
        using var services = Yarp();
        var first = Compile(Yaml(), services.GetRequiredService<IConfigValidator>(), previous: null);
        Assert.True(first.Succeeded, Dump(first));
        // YARP's own equality ignores the case of route names; the gateway's names are exact.
        var second = Compile(Yaml().Replace("name: a,", "name: A,", StringComparison.Ordinal), services.GetRequiredService<IConfigValidator>(), first.Snapshot);
        Assert.True(second.Succeeded, Dump(second));
        Assert.Contains(second.Snapshot!.ProxyRoutes, r => r.RouteId == "A");
        Assert.DoesNotContain(second.Snapshot.ProxyRoutes, r => r.RouteId == "a");
    }

    private sealed class CountingValidator(IConfigValidator inner) : IConfigValidator
    {
        public int Routes;
        public int Clusters;

        public ValueTask<IList<Exception>> ValidateRouteAsync(RouteConfig route)
        {
            Routes++;
            return inner.ValidateRouteAsync(route);
        }

        public ValueTask<IList<Exception>> ValidateClusterAsync(ClusterConfig cluster)
        {
            Clusters++;
            return inner.ValidateClusterAsync(cluster);
        }
    }
}
