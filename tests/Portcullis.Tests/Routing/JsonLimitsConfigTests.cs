namespace Portcullis.Tests.Routing;

/// <summary>routes[].jsonLimits validation: positions and hints.</summary>
public sealed class JsonLimitsConfigTests() : ConfigBuildTestBase("portcullis-jsonlimits-")
{
    [Fact]
    public void Bad_limits_are_reported_at_their_position()
    {
        var result = Build("""
            listeners: [{ name: public, address: 127.0.0.1:8080 }]
            routes:
              - name: a
                match: { pathPrefix: /a }
                jsonLimits: { maxDepth: 0, maxStringLength: -1 }
                cluster: c
              - name: b
                match: { pathPrefix: /b }
                jsonLimits:
                  maxSize: 0B
                  maxDepth: 5000
                  maxArrayItems: 0
                  maxObjectMembers: 0
                cluster: c
            clusters:
              c: { destinations: [http://127.0.0.1:1] }
            """);
        Assert.False(result.Succeeded);
        AssertAt(ErrorContaining(result, "must be at least 1, not -1"), 5, 49);
        AssertAt(ErrorContaining(result, "between 1 and 1000, not 0"), 5, 29);
        AssertAt(ErrorContaining(result, "maxSize must be above 0"), 10, 16);
        AssertAt(ErrorContaining(result, "between 1 and 1000, not 5000"), 11, 17);
        Assert.Equal(2, result.Errors.Count(e => e.Message.Contains("must be at least 1, not 0", StringComparison.Ordinal)));
    }

    [Fact]
    public void Defaults_apply_when_only_the_key_is_given()
    {
        var result = Build("""
            listeners: [{ name: public, address: 127.0.0.1:8080 }]
            routes:
              - { name: a, match: { pathPrefix: /a }, jsonLimits: {}, cluster: c }
            clusters:
              c: { destinations: [http://127.0.0.1:1] }
            """);
        Assert.True(result.Succeeded, string.Join('\n', result.Errors.Select(e => e.Message)));
        var limits = result.Snapshot!.Routes["a"].JsonLimits!;
        Assert.Equal(1 << 20, limits.MaxSize);
        Assert.Equal(32, limits.MaxDepth);
        Assert.Equal(8192, limits.MaxStringLength);
        Assert.Equal(10_000, limits.MaxArrayItems);
        Assert.Equal(1000, limits.MaxObjectMembers);
        Assert.False(limits.RequireJson);
    }
}
