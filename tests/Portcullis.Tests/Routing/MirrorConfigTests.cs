namespace Portcullis.Tests.Routing;

/// <summary>routes[].mirror validation: positions and hints.</summary>
public sealed class MirrorConfigTests() : ConfigBuildTestBase("portcullis-mirror-")
{
    [Fact]
    public void Bad_settings_are_reported_at_their_position()
    {
        var result = Build("""
            listeners: [{ name: public, address: 127.0.0.1:8080 }]
            routes:
              - name: a
                match: { pathPrefix: /a }
                mirror: { cluster: nowhere, percent: 150, maxConcurrent: 0, timeout: 0s }
                cluster: c
            clusters:
              c: { destinations: [http://127.0.0.1:1] }
            """);
        Assert.False(result.Succeeded);
        AssertAt(ErrorContaining(result, "mirror cluster 'nowhere' is not defined"), 5, 24);
        AssertAt(ErrorContaining(result, "percent must be between 0 and 100"), 5, 42);
        AssertAt(ErrorContaining(result, "maxConcurrent must be at least 1"), 5, 62);
        AssertAt(ErrorContaining(result, "timeout must be above 0"), 5, 74);
    }

    [Fact]
    public void Defaults_copy_every_request_with_a_body_up_to_64_kib()
    {
        var result = Build("""
            listeners: [{ name: public, address: 127.0.0.1:8080 }]
            routes:
              - { name: a, match: { pathPrefix: /a }, mirror: { cluster: shadow }, cluster: c }
            clusters:
              c: { destinations: [http://127.0.0.1:1] }
              shadow: { destinations: [http://127.0.0.1:2] }
            """);
        Assert.True(result.Succeeded, Dump(result));
        var mirror = result.Snapshot!.Routes["a"].Mirror!;
        Assert.Equal(("shadow", 1.0, 64 * 1024L, 64, TimeSpan.FromSeconds(5)), (mirror.Cluster, mirror.Share, mirror.MaxBodySize, mirror.MaxConcurrent, mirror.Timeout));
    }
}
