namespace Portcullis.Tests.Routing;

/// <summary>routes[].cache validation: positions, hints and the warnings about auth.</summary>
public sealed class ResponseCacheConfigTests() : ConfigBuildTestBase("portcullis-cache-")
{
    [Fact]
    public void Bad_settings_are_reported_at_their_position()
    {
        var result = Build("""
            listeners: [{ name: public, address: 127.0.0.1:8080 }]
            routes:
              - name: a
                match: { pathPrefix: /a }
                cache: { defaultTtl: 0s, varyByHeaders: [Authorization, "bad header"] }
                cluster: c
            clusters:
              c: { destinations: [http://127.0.0.1:1] }
            """);
        Assert.False(result.Succeeded);
        AssertAt(ErrorContaining(result, "defaultTtl must be above 0"), 5, 26);
        AssertAt(ErrorContaining(result, "varying by Authorization"), 5, 46);
        AssertAt(ErrorContaining(result, "'bad header' is not a header name"), 5, 61);
    }

    [Fact]
    public void A_route_with_auth_is_cached_only_per_consumer_and_says_so()
    {
        WriteFile("keys.yaml", "# no keys yet\n");
        var result = Build("""
            listeners: [{ name: public, address: 127.0.0.1:8080 }]
            identity:
              apiKeys: { file: keys.yaml }
            routes:
              - { name: shared, match: { pathPrefix: /s }, auth: { apiKey: true }, cache: {}, cluster: c }
              - { name: mine, match: { pathPrefix: /m }, auth: { apiKey: true }, cache: { perConsumer: true }, cluster: c }
              - { name: public, match: { pathPrefix: /p }, cache: { perConsumer: true }, cluster: c }
            clusters:
              c: { destinations: [http://127.0.0.1:1] }
            """);
        Assert.True(result.Succeeded, Dump(result));
        Assert.Contains(result.Diagnostics, d => d.Message.Contains("not cached unless perConsumer: true", StringComparison.Ordinal) && d.Line == 5);
        Assert.Contains(result.Diagnostics, d => d.Message.Contains("perConsumer has no effect", StringComparison.Ordinal) && d.Line == 7);
        Assert.True(result.Snapshot!.Routes["mine"].Cache!.PerConsumer);
        Assert.Equal("Portcullis.Route", result.Snapshot.ProxyRoutes.Single(r => r.RouteId == "mine").OutputCachePolicy);
        Assert.Null(result.Snapshot.ProxyRoutes.Single(r => r.RouteId == "public").CorsPolicy);
    }
}
