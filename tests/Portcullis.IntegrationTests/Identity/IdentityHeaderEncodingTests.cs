using System.Net;
using Microsoft.IdentityModel.JsonWebTokens;
using Portcullis.Cli;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Identity;

/// <summary>
/// Issue 13, point 4 (identity headers): identity values that are not plain ASCII (`zoë`, a group with a comma,
/// a subject with CR LF) reach the upstream percent-encoded (UTF-8) in the identity headers, and exactly in the
/// identity assertion. Before the fix the forwarder refused the non-ASCII header value and the client got 502.
/// JWTs and API keys are shown here; introspection and sessions build the same caller and go through the same
/// header code (IdentityMiddleware with CallerIdentity's encoded values).
/// </summary>
public sealed class IdentityHeaderEncodingTests : IAsyncLifetime
{
    private const string Issuer = "https://issuer.test/";
    private readonly TokenFactory _tokens = new(Issuer, "orders-api", "k1");
    private TestUpstream _upstream = null!;
    private TestGateway _gateway = null!;
    private string _apiKey = "";

    public async Task InitializeAsync()
    {
        // A key made by the real `portcullis keys` command, whose consumer and group are then renamed in the
        // file by hand to "zoë" and "café" (the command only takes ASCII names; the file is not so strict).
        var keyFile = Path.Combine(Path.GetTempPath(), "portcullis-keys-" + Guid.NewGuid().ToString("N") + ".yaml");
        await File.WriteAllTextAsync(keyFile, "consumers: {}\n");
        using (var output = new StringWriter())
        using (var errors = new StringWriter())
        {
            var code = await PortcullisCli.RunAsync(["keys", "create", "--file", keyFile, "--consumer", "zoe-renamed", "--group", "cafe-renamed", "--scopes", "orders.read"], output, errors);
            Assert.True(code == 0, errors.ToString());
            _apiKey = output.ToString().Split('\n').Select(l => l.TrimEnd('\r')).Single(l => l.StartsWith("key: ", StringComparison.Ordinal))[5..];
        }

        var keys = (await File.ReadAllTextAsync(keyFile)).Replace("zoe-renamed", "zoë", StringComparison.Ordinal).Replace("cafe-renamed", "café", StringComparison.Ordinal);
        File.Delete(keyFile);

        _upstream = await TestUpstream.StartAsync("orders");
        _gateway = await TestGateway.StartAsync($$"""
            identity:
              issuers:
                - { name: corp, jwksFile: jwks.json, issuer: "{{Issuer}}", audiences: [orders-api] }
              apiKeys: { file: keys.yaml }
              assertion: { lifetime: 30s }
            routes:
              - name: orders
                match: { pathPrefix: /orders }
                auth: { issuers: [corp], apiKey: true }
                cluster: orders
            clusters:
              orders:
                destinations: [{{_upstream.Url}}]
            """, new Dictionary<string, string> { ["jwks.json"] = _tokens.JwksJson(), ["keys.yaml"] = keys });
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _upstream.DisposeAsync();
        _tokens.Dispose();
    }

    private async Task<UpstreamAnswer> SendAsync(Action<HttpRequestMessage> credentials)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/orders/1");
        credentials(request);
        using var response = await _gateway.Client.SendAsync(request);
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}\n{_gateway.Logs}");
        return await UpstreamAnswer.ReadAsync(response);
    }

    private Task<UpstreamAnswer> SendTokenAsync(Dictionary<string, object> claims) =>
        SendAsync(r => r.Headers.TryAddWithoutValidation("Authorization", "Bearer " + _tokens.Create(claims)));

    private static JsonWebToken Assertion(UpstreamAnswer seen) => new(seen.Header("X-Portcullis-Assertion")!);

    [Fact]
    public async Task NonAsciiJwtClaims_ArePercentEncodedInHeaders_AndExactInTheAssertion()
    {
        var seen = await SendTokenAsync(new Dictionary<string, object>
        {
            ["sub"] = "zoë",
            ["groups"] = new[] { "café", "a,b", "plain" },
            ["scope"] = "orders.read rëad",
        });

        Assert.Equal("zo%C3%AB", seen.Header("X-Subject"));
        Assert.Equal("zo%C3%AB", seen.Header("X-Consumer-Id"));
        Assert.Equal("caf%C3%A9,a%2Cb,plain", seen.Header("X-Groups"));
        Assert.Equal("orders.read r%C3%ABad", seen.Header("X-Scopes"));
        Assert.Equal("zoë", Uri.UnescapeDataString(seen.Header("X-Subject")!));

        var assertion = Assertion(seen);
        Assert.Equal("zoë", assertion.Subject);
        Assert.Equal("zoë", assertion.GetClaim("consumer").Value);
        Assert.Equal(new[] { "café", "a,b", "plain" }, assertion.Claims.Where(c => c.Type == "groups").Select(c => c.Value));
        Assert.Equal("orders.read rëad", assertion.GetClaim("scope").Value);
    }

    /// <summary>Characters outside printable ASCII never reach the wire raw: no header injection through a
    /// claim, `%` is encoded so one decoding is exact, an emoji is one UTF-8 sequence.</summary>
    [Fact]
    public async Task ControlCharactersPercentAndSurrogatePairs_AreEncoded_PlainValuesUnchanged()
    {
        var seen = await SendTokenAsync(new Dictionary<string, object> { ["sub"] = "eve\r\nX-Injected: 1", ["client_id"] = "100% 😀" });
        Assert.Equal("eve%0D%0AX-Injected: 1", seen.Header("X-Subject"));
        Assert.Null(seen.Header("X-Injected"));
        Assert.Equal("100%25 %F0%9F%98%80", seen.Header("X-Consumer-Id"));
        Assert.Equal("100% 😀", Uri.UnescapeDataString(seen.Header("X-Consumer-Id")!));
        Assert.Equal("eve\r\nX-Injected: 1", Assertion(seen).Subject);

        var plain = await SendTokenAsync(new Dictionary<string, object> { ["sub"] = "alice@example.test", ["scope"] = "orders.read" });
        Assert.Equal("alice@example.test", plain.Header("X-Subject"));
        Assert.Equal("orders.read", plain.Header("X-Scopes"));
    }

    [Fact]
    public async Task NonAsciiApiKeyConsumer_IsPercentEncodedInHeaders_AndExactInTheAssertion()
    {
        var seen = await SendAsync(r => r.Headers.TryAddWithoutValidation("X-Api-Key", _apiKey));
        Assert.Equal("zo%C3%AB", seen.Header("X-Consumer-Id"));
        Assert.Equal("caf%C3%A9", seen.Header("X-Consumer-Group"));
        var assertion = Assertion(seen);
        Assert.Equal("zoë", assertion.GetClaim("consumer").Value);
        Assert.Equal("café", assertion.GetClaim("consumer_group").Value);
    }
}
