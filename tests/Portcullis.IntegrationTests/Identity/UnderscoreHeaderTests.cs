using System.Net;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Identity;

/// <summary>
/// Issue 13, point 11: underscore (and mixed) spellings of the headers the gateway sets never reach an upstream,
/// whose CGI-style header variables would read `X_Consumer_Id` as `X-Consumer-Id`; on public and protected routes,
/// over HTTP/1.1 and HTTP/2, whatever the listener's `dropUnderscoreHeaders`. The listener option (default on)
/// drops every other underscore header too, and the scrub runs before routing, so a spoofed identity header
/// cannot steer route matching either. Every spoofed value contains "spoof"; the upstream must see none.
/// </summary>
public sealed class UnderscoreHeaderTests : IAsyncLifetime
{
    private const string Issuer = "https://issuer.test/";
    private readonly TokenFactory _tokens = new(Issuer, "orders-api", "k1");
    private TestUpstream _upstream = null!;
    private TestGateway _gateway = null!;
    private int _h2Port;
    private int _laxPort;

    private static readonly string[] Spoofed =
    [
        "X_Consumer_Id", "X_Consumer_Group", "X_Subject", "X_Groups", "X_Scopes", "X_Portcullis_Assertion",
        "X_CONSUMER-id", "X-Consumer_Id", "x_SUBJECT", "X_Original_URL", "X_Rewrite_URL",
        "X_Forwarded_For", "X_Forwarded_Host", "X_Real_IP", "X_Request_Id", "X_Tenant",
        "X-Consumer-Id", "X-Subject", "X-Portcullis-Assertion",
    ];

    public async Task InitializeAsync()
    {
        _upstream = await TestUpstream.StartAsync("orders");
        _h2Port = Ports.GetFree();
        _laxPort = Ports.GetFree();
        _gateway = await TestGateway.StartAsync($$$"""
            listeners:
              - { name: public, address: "127.0.0.1:{{PORT}}" }
              - { name: h2, address: "127.0.0.1:{{{_h2Port}}}", protocols: http2, dropUnderscoreHeaders: false }
              - { name: lax, address: "127.0.0.1:{{{_laxPort}}}", dropUnderscoreHeaders: false }
              - { name: admin, address: "127.0.0.1:{{ADMIN_PORT}}", admin: true }
            identity:
              issuers:
                - { name: corp, jwksFile: jwks.json, issuer: "{{{Issuer}}}", audiences: [orders-api] }
              assertion: { lifetime: 30s }
            maps:
              tenants: { entries: { alice: t-1 } }
            routes:
              - name: steer
                match: { pathPrefix: /steer, headers: [ { name: X-Consumer-Id, values: [admin] } ] }
                cluster: orders
              - name: public
                match: { pathPrefix: /public }
                cluster: orders
              - name: orders
                match: { pathPrefix: /orders }
                auth: { issuers: [corp] }
                requestHeaders: { set: { X-Tenant: "${map:tenants(claim:sub)}" } }
                cluster: orders
            clusters:
              orders:
                destinations: [{{{_upstream.Url}}}]
            """, new Dictionary<string, string> { ["jwks.json"] = _tokens.JwksJson() });
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _upstream.DisposeAsync();
        _tokens.Dispose();
    }

    public static TheoryData<string, string> ListenersAndPaths() => new()
    {
        { "public", "/public/1" }, { "public", "/orders/1" },
        { "h2", "/public/1" }, { "h2", "/orders/1" },
        { "lax", "/public/1" }, { "lax", "/orders/1" },
    };

    private async Task<(HttpResponseMessage Response, Version Version)> SendAsync(string listener, string path, Action<HttpRequestMessage> configure)
    {
        var port = listener switch { "h2" => _h2Port, "lax" => _laxPort, _ => _gateway.Port };
        var http2 = listener == "h2";
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        using var request = new HttpRequestMessage(HttpMethod.Get, $"http://127.0.0.1:{port}{path}")
        {
            Version = http2 ? HttpVersion.Version20 : HttpVersion.Version11,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        configure(request);
        var response = await client.SendAsync(request);
        return (response, response.Version);
    }

    [Theory]
    [MemberData(nameof(ListenersAndPaths))]
    public async Task SpoofedIdentityHeaders_InAnySpelling_NeverReachTheUpstream(string listener, string path)
    {
        var (response, version) = await SendAsync(listener, path, request =>
        {
            foreach (var name in Spoofed) request.Headers.TryAddWithoutValidation(name, "spoof-" + name);
            request.Headers.TryAddWithoutValidation("X_Custom", "benign-underscore");
            request.Headers.TryAddWithoutValidation("X-Custom", "benign-dash");
            if (path.StartsWith("/orders", StringComparison.Ordinal)) request.Headers.TryAddWithoutValidation("Authorization", "Bearer " + _tokens.Create());
        });
        using (response)
        {
            Assert.Equal(listener == "h2" ? HttpVersion.Version20 : HttpVersion.Version11, version);
            var seen = await UpstreamAnswer.ReadAsync(response);
            Assert.DoesNotContain(seen.Headers, h => h.Value.Contains("spoof", StringComparison.Ordinal));
            Assert.DoesNotContain(seen.Headers.Keys, k => k.Contains("Consumer", StringComparison.OrdinalIgnoreCase) && k.Contains('_'));

            // The gateway's own values are there, in the real spelling.
            if (path.StartsWith("/orders", StringComparison.Ordinal))
            {
                Assert.Equal("alice", seen.Header("X-Subject"));
                Assert.Equal("t-1", seen.Header("X-Tenant"));
                Assert.NotNull(seen.Header("X-Portcullis-Assertion"));
            }

            Assert.Equal("127.0.0.1", seen.Header("X-Forwarded-For"));

            // Other underscore headers: dropped by default (listener public), kept where the listener allows them.
            Assert.Equal(listener == "public" ? null : "benign-underscore", seen.Header("X_Custom"));
            Assert.Equal("benign-dash", seen.Header("X-Custom"));
        }
    }

    /// <summary>The scrub runs before routing: a client cannot pick a route that matches on an identity header.</summary>
    [Theory]
    [InlineData("X-Consumer-Id")]
    [InlineData("X_Consumer_Id")]
    public async Task SpoofedIdentityHeader_DoesNotSteerRouting(string name)
    {
        var before = _upstream.Requests;
        var (response, _) = await SendAsync("lax", "/steer/1", request => request.Headers.TryAddWithoutValidation(name, "admin"));
        using (response)
        {
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
            Assert.Equal(before, _upstream.Requests);
        }
    }
}
