using System.Security.Cryptography;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Identity;

/// <summary>
/// A fleet's shared assertion keys (issue 18, identity.assertion.keysFile): two instances publish one JWKS and
/// either's assertion verifies against the other's; a next key is published before it signs; a broken key file
/// is refused at its key while the old keys keep signing.
/// </summary>
public sealed class SharedAssertionKeyTests : IAsyncLifetime
{
    private const string Issuer = "https://issuer.test/";
    private readonly TokenFactory _tokens = new(Issuer, "orders-api");
    private readonly ECDsa _first = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly ECDsa _next = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private TestUpstream _upstream = null!;
    private TestGateway _a = null!;
    private TestGateway _b = null!;

    private string Config => $$"""
        identity:
          issuers:
            - { name: corp, jwksFile: jwks.json, issuer: "{{Issuer}}", audiences: [orders-api] }
          assertion: { lifetime: 30s, keysFile: secrets/assertion-keys.pem }
        routes:
          - { name: orders, match: { pathPrefix: /orders }, auth: { issuers: [corp] }, cluster: orders }
        clusters:
          orders: { destinations: ["{{_upstream.Url}}"] }
        """;

    public async Task InitializeAsync()
    {
        _upstream = await TestUpstream.StartAsync("orders");
        var files = new Dictionary<string, string> { ["jwks.json"] = _tokens.JwksJson(), ["secrets/assertion-keys.pem"] = _first.ExportPkcs8PrivateKeyPem() };
        _a = await TestGateway.StartAsync(Config, files);
        _b = await TestGateway.StartAsync(Config, files);
    }

    public async Task DisposeAsync()
    {
        await _a.DisposeAsync();
        await _b.DisposeAsync();
        await _upstream.DisposeAsync();
        _tokens.Dispose();
        _first.Dispose();
        _next.Dispose();
    }

    [Fact]
    public async Task Two_instances_publish_one_jwks_and_a_next_key_is_published_before_it_signs()
    {
        var jwksA = await JwksAsync(_a);
        var jwksB = await JwksAsync(_b);
        var firstKid = Assert.Single(jwksA.Keys).Kid;
        Assert.Equal(firstKid, Assert.Single(jwksB.Keys).Kid);

        // Signed by A, verified with B's JWKS (what an upstream behind the fleet does).
        var assertion = await AssertionAsync(_a, "alice");
        Assert.Equal(firstKid, (await VerifyAsync(assertion, jwksB)).Kid);

        // Rotation, step 1: the next key is added at the end — published, not yet signing.
        var generation = _a.Generation;
        await _a.WriteFileAsync("secrets/assertion-keys.pem", _first.ExportPkcs8PrivateKeyPem() + _next.ExportPkcs8PrivateKeyPem());
        await _a.WaitForGenerationAsync(generation, TimeSpan.FromSeconds(30));
        var both = await JwksAsync(_a);
        Assert.Equal(2, both.Keys.Count);
        Assert.Equal(firstKid, both.Keys[0].Kid);
        var nextKid = both.Keys[1].Kid;
        Assert.Equal(firstKid, (await VerifyAsync(await AssertionAsync(_a, "bob"), both)).Kid);

        // Step 2: the next key moves first — it signs; the old one stays published for assertions still alive.
        generation = _a.Generation;
        await _a.WriteFileAsync("secrets/assertion-keys.pem", _next.ExportPkcs8PrivateKeyPem() + _first.ExportPkcs8PrivateKeyPem());
        await _a.WaitForGenerationAsync(generation, TimeSpan.FromSeconds(30));
        var rotated = await JwksAsync(_a);
        Assert.Equal([nextKid, firstKid], rotated.Keys.Select(k => k.Kid));
        Assert.Equal(nextKid, (await VerifyAsync(await AssertionAsync(_a, "carol"), rotated)).Kid);
        Assert.Equal(firstKid, (await VerifyAsync(assertion, rotated)).Kid);
    }

    [Fact]
    public async Task A_broken_keys_file_is_refused_and_the_old_keys_keep_signing()
    {
        var kid = Assert.Single((await JwksAsync(_b)).Keys).Kid;
        await _b.WriteFileAsync("secrets/assertion-keys.pem", "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n");

        var (status, body) = await _b.ReloadAsync();

        Assert.Equal(422, status);
        Assert.Contains("secrets/assertion-keys.pem", body.ToString(), StringComparison.Ordinal);
        Assert.Contains("key 1 is not an EC private key", body.ToString(), StringComparison.Ordinal);
        Assert.DoesNotContain("bm90IGEga2V5", body.ToString(), StringComparison.Ordinal);
        Assert.Equal(kid, (await VerifyAsync(await AssertionAsync(_b, "dave"), await JwksAsync(_b))).Kid);
    }

    private static async Task<JsonWebKeySet> JwksAsync(TestGateway gateway) =>
        new(await gateway.Client.GetStringAsync("/.well-known/portcullis/jwks.json"));

    private async Task<string> AssertionAsync(TestGateway gateway, string subject)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/orders/1");
        request.Headers.TryAddWithoutValidation("Authorization", "Bearer " + _tokens.Create(new Dictionary<string, object> { ["sub"] = subject }));
        using var response = await gateway.Client.SendAsync(request);
        return (await UpstreamAnswer.ReadAsync(response)).Header("X-Portcullis-Assertion") ?? throw new InvalidOperationException("no assertion");
    }

    private static async Task<JsonWebToken> VerifyAsync(string assertion, JsonWebKeySet jwks)
    {
        var result = await new JsonWebTokenHandler().ValidateTokenAsync(assertion, new TokenValidationParameters
        {
            ValidIssuer = "portcullis",
            ValidAudience = "orders",
            IssuerSigningKeys = jwks.GetSigningKeys(),
            ValidAlgorithms = ["ES256"],
        });
        Assert.True(result.IsValid, result.Exception?.Message);
        return (JsonWebToken)result.SecurityToken;
    }
}
