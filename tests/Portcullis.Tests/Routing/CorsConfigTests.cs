namespace Portcullis.Tests.Routing;

/// <summary>routes[].cors validation: positions and hints.</summary>
public sealed class CorsConfigTests() : ConfigBuildTestBase("portcullis-cors-")
{
    [Fact]
    public void Bad_cors_settings_are_reported_at_their_position()
    {
        var result = Build("""
            listeners: [{ name: public, address: 127.0.0.1:8080 }]
            routes:
              - name: a
                match: { pathPrefix: /a }
                cors: { allowOrigins: ["*"], allowCredentials: true }
                cluster: c
              - name: b
                match: { pathPrefix: /b }
                cors:
                  allowOrigins: [https://app.example.com/path, "https://*.example.com"]
                  allowMethods: ["GE T"]
                  maxAge: -1s
                cluster: c
              - name: d
                match: { pathPrefix: /d }
                cors: { allowOrigins: [] }
                cluster: c
            clusters:
              c: { destinations: [http://127.0.0.1:1] }
            """);
        Assert.False(result.Succeeded);
        AssertAt(ErrorContaining(result, "allowCredentials cannot be combined"), 5, 52);
        AssertAt(ErrorContaining(result, "is not an origin"), 10, 22);
        AssertAt(ErrorContaining(result, "is not an HTTP method"), 11, 22);
        AssertAt(ErrorContaining(result, "a duration cannot be negative"), 12, 15);
        AssertAt(ErrorContaining(result, "at least one allowed origin"), 16, 27);
        Assert.DoesNotContain(result.Errors, e => e.Message.Contains("*.example.com", StringComparison.Ordinal));
    }
}
