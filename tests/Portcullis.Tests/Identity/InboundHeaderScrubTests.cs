using System.Net;
using Microsoft.AspNetCore.Http;
using Portcullis.Configuration;
using Portcullis.Identity;
using Portcullis.Pipeline;

namespace Portcullis.Tests.Identity;

/// <summary>The inbound header scrub compiled from a config (issue 13, point 11): which names go, per listener.</summary>
public sealed class InboundHeaderScrubTests() : ConfigBuildTestBase("portcullis-scrub-")
{
    private GatewaySnapshot Snapshot(string listeners, string extra = "")
    {
        var result = Build($$"""
            listeners:
            {{listeners}}
              - { name: admin, address: "127.0.0.1:9901", admin: true }
            identity:
              headers: { consumer: X-Caller }
              {{extra}}
            routes:
              - name: r
                match: { pathPrefix: / }
                requestHeaders: { set: { X-Tenant: fixed } }
                cluster: c
            clusters:
              c: { destinations: ["http://127.0.0.1:1"] }
            """);
        Assert.True(result.Succeeded, Dump(result));
        return result.Snapshot!;
    }

    private static DefaultHttpContext Request(int port, params string[] names)
    {
        var context = new DefaultHttpContext();
        context.Connection.LocalPort = port;
        context.Connection.LocalIpAddress = IPAddress.Loopback;
        foreach (var name in names) context.Request.Headers[name] = "v";
        return context;
    }

    private static IEnumerable<string> Kept(GatewaySnapshot snapshot, int port, params string[] names)
    {
        var context = Request(port, names);
        snapshot.HeaderScrub.Apply(context);
        return context.Request.Headers.Keys.Order(StringComparer.Ordinal);
    }

    [Theory]
    [InlineData("X-Caller")]           // the configured consumer header, exact
    [InlineData("x_caller")]           // ... any case, '_' for '-'
    [InlineData("X-Consumer_Group")]
    [InlineData("X_SUBJECT")]
    [InlineData("X_Portcullis_Assertion")] // the default assertion header, even without identity.assertion
    [InlineData("X-Original-URL")]
    [InlineData("x_rewrite_url")]
    [InlineData("X_Forwarded_For")]
    [InlineData("X_Real_IP")]
    [InlineData("X_Request_Id")]
    [InlineData("X_Tenant")]           // set by a route's requestHeaders.set
    public void GatewayHeaders_InAnySpelling_AreRemoved_EvenWhereUnderscoresAreAllowed(string name)
    {
        var snapshot = Snapshot("  - { name: public, address: \"127.0.0.1:8080\", dropUnderscoreHeaders: false }");
        Assert.Equal(["X-Other"], Kept(snapshot, 8080, name, "X-Other"));
    }

    [Theory]
    [InlineData("X-Forwarded-For")] // extended from trusted proxies by the forwarder, later
    [InlineData("X-Request-Id")]    // accepted from trusted clients by the request-id stage
    [InlineData("X-Tenant")]        // replaced by requestHeaders.set, later
    [InlineData("X-Consumer-Id")]   // not an identity header here: the consumer header is X-Caller
    [InlineData("X-Caller-Id")]
    public void OwnSpellingOfHeadersSetLater_AndOtherHeaders_AreKept(string name)
    {
        var snapshot = Snapshot("  - { name: public, address: \"127.0.0.1:8080\", dropUnderscoreHeaders: false }");
        Assert.Equal([name], Kept(snapshot, 8080, name));
    }

    [Fact]
    public void UnderscoreHeaders_AreDroppedByDefault_AndKeptWhereTheListenerAllowsThem()
    {
        var snapshot = Snapshot("""
              - { name: strict, address: "127.0.0.1:8080" }
              - { name: lax, address: "127.0.0.1:8081", dropUnderscoreHeaders: false }
            """);
        Assert.Equal(["X-Dash"], Kept(snapshot, 8080, "X_Custom", "X-Dash"));
        Assert.Equal(["X-Dash", "X_Custom"], Kept(snapshot, 8081, "X_Custom", "X-Dash"));
        Assert.Equal(["X-Dash"], Kept(snapshot, 8081, "X_Caller", "X-Dash"));
    }

    [Fact]
    public void ConfiguredAssertionHeader_IsRemovedInAnySpelling()
    {
        var snapshot = Snapshot("  - { name: public, address: \"127.0.0.1:8080\", dropUnderscoreHeaders: false }", "assertion: { header: X-Gw-Identity }");
        Assert.Equal(["X-Gw"], Kept(snapshot, 8080, "X-Gw", "X-Gw-Identity", "x_gw_identity", "X_Portcullis_Assertion"));
    }

    [Theory]
    [InlineData("X-Consumer-Id", "x_consumer_id", true)]
    [InlineData("X-Consumer-Id", "X-CONSUMER-ID", true)]
    [InlineData("X-Consumer-Id", "X-Consumer-Id-", false)]
    [InlineData("X-Consumer-Id", "X.Consumer.Id", false)]
    [InlineData("a-b", "A_B", true)]
    public void HeaderNameComparer_FoldsCaseAndUnderscore(string a, string b, bool equal)
    {
        var comparer = InboundHeaderScrub.HeaderNameComparer.Instance;
        Assert.Equal(equal, comparer.Equals(a, b));
        if (equal) Assert.Equal(comparer.GetHashCode(a), comparer.GetHashCode(b));
    }
}
