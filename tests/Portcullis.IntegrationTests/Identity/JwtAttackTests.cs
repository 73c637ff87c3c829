using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Identity;

/// <summary>
/// One gateway for <see cref="JwtAttackTests"/>: issuer <c>corp</c> whose JWKS file holds a proper 2048-bit
/// RSA signing key next to keys that must never verify anything (RSA 1024, the same 1024-bit modulus padded
/// with leading zero bytes to look like 2048 bits, <c>use: enc</c>, and a symmetric <c>oct</c> key), and
/// issuer <c>ec</c> with an EC P-256 key. <c>/orders</c> accepts both; <c>/partner</c> accepts only the HS256
/// issuer <c>partner</c> (sharedSecretEnv); <c>/public</c> has no auth.
/// </summary>
public sealed class JwtAttackGateway : IAsyncLifetime
{
    internal const string CorpIssuer = "https://issuer.test/";
    internal const string EcIssuer = "https://ec.test/";
    internal const string PartnerIssuer = "https://partner.test/";
    internal const string PartnerSecret = "partner-shared-secret-0123456789abcdef";
    internal const string Audience = "orders-api";

    /// <summary>The proper RS256 key, kid "good".</summary>
    internal TokenFactory Tokens { get; } = new(CorpIssuer, Audience, "good");

    internal RSA Weak { get; } = RSA.Create(1024);

    internal RSA Encryption { get; } = RSA.Create(2048);

    internal byte[] OctSecret { get; } = RandomNumberGenerator.GetBytes(32);

    internal ECDsa Ec { get; } = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    internal TestUpstream Upstream { get; private set; } = null!;

    internal TestGateway Gateway { get; private set; } = null!;

    /// <summary>A client that sends the Cookie header as written (no cookie container).</summary>
    internal HttpClient Client { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        var good = Tokens.Key.Rsa.ExportParameters(false);
        var weak = Weak.ExportParameters(false);
        var encryption = Encryption.ExportParameters(false);
        var ec = Ec.ExportParameters(false);
        var corpJwks = JsonSerializer.Serialize(new
        {
            keys = new object[]
            {
                new { kty = "RSA", use = "sig", alg = "RS256", kid = "good", n = B64(good.Modulus!), e = B64(good.Exponent!) },
                new { kty = "RSA", use = "sig", kid = "weak", n = B64(weak.Modulus!), e = B64(weak.Exponent!) },
                new { kty = "RSA", use = "sig", kid = "weak-padded", n = B64([.. new byte[128], .. weak.Modulus!]), e = B64(weak.Exponent!) },
                new { kty = "RSA", use = "enc", kid = "enc", n = B64(encryption.Modulus!), e = B64(encryption.Exponent!) },
                new { kty = "oct", kid = "oct", k = B64(OctSecret) },
            },
        });
        var ecJwks = JsonSerializer.Serialize(new
        {
            keys = new[] { new { kty = "EC", use = "sig", crv = "P-256", kid = "ec-1", x = B64(ec.Q.X!), y = B64(ec.Q.Y!) } },
        });

        Upstream = await TestUpstream.StartAsync("orders");
        Gateway = await TestGateway.StartAsync($$"""
            identity:
              issuers:
                - name: corp
                  jwksFile: corp-jwks.json
                  issuer: {{CorpIssuer}}
                  audiences: [{{Audience}}]
                - name: ec
                  jwksFile: ec-jwks.json
                  issuer: {{EcIssuer}}
                  audiences: [{{Audience}}]
                  algorithms: [ES256]
                - name: partner
                  sharedSecretEnv: PARTNER_SECRET
                  issuer: {{PartnerIssuer}}
                  audiences: [{{Audience}}]
                  algorithms: [HS256]
            routes:
              - name: public
                match: { pathPrefix: /public }
                cluster: orders
              - name: orders
                match: { pathPrefix: /orders }
                auth: { issuers: [corp, ec] }
                cluster: orders
              - name: partner
                match: { pathPrefix: /partner }
                auth: { issuers: [partner] }
                cluster: orders
            clusters:
              orders:
                destinations: [{{Upstream.Url}}]
            """, new Dictionary<string, string> { ["corp-jwks.json"] = corpJwks, ["ec-jwks.json"] = ecJwks },
            name => name == "PARTNER_SECRET" ? PartnerSecret : null);
        Client = new HttpClient(new SocketsHttpHandler { UseCookies = false }) { BaseAddress = new Uri(Gateway.Url), Timeout = TimeSpan.FromSeconds(30) };
    }

    private static string B64(byte[] bytes) => Base64UrlEncoder.Encode(bytes);

    public async Task DisposeAsync()
    {
        Client.Dispose();
        await Gateway.DisposeAsync();
        await Upstream.DisposeAsync();
        Tokens.Dispose();
        Weak.Dispose();
        Encryption.Dispose();
        Ec.Dispose();
    }
}

/// <summary>
/// The parts of the attack suite (issue 3) that <see cref="JwtRouteTests"/> does not cover: an embedded
/// <c>jwk</c> header, the ES256 "psychic signature" (r = s = 0), JWKS keys that must never verify, duplicate
/// header members, tokens carried where the route did not enable them, and a shared-secret issuer that accepts
/// only its own secret. Every rejection is a 401 that never reaches the upstream.
/// </summary>
public sealed class JwtAttackTests(JwtAttackGateway fixture) : IClassFixture<JwtAttackGateway>
{
    private TokenFactory Tokens => fixture.Tokens;

    private TestUpstream Upstream => fixture.Upstream;

    private static string EcPayload() =>
        $$"""{"iss":"{{JwtAttackGateway.EcIssuer}}","aud":"{{JwtAttackGateway.Audience}}","sub":"alice","exp":{{DateTimeOffset.UtcNow.AddMinutes(10).ToUnixTimeSeconds()}}}""";

    private static Func<byte[], string> SignRsa(RSA rsa) =>
        input => Base64UrlEncoder.Encode(rsa.SignData(input, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1));

    private async Task<HttpResponseMessage> SendAsync(string? token, string path = "/orders/1")
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (token is not null) request.Headers.TryAddWithoutValidation("Authorization", "Bearer " + token);
        return await fixture.Client.SendAsync(request);
    }

    private async Task AssertAcceptedAsync(string token)
    {
        using var response = await SendAsync(token);
        var seen = await UpstreamAnswer.ReadAsync(response);
        Assert.Equal("alice", seen.Header("X-Subject"));
    }

    private async Task AssertRejectedAsync(Func<Task<HttpResponseMessage>> send, string reason, bool tokenPresented = true)
    {
        var before = Upstream.Requests;
        using var response = await send();
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Unauthorized, $"expected 401, got {(int)response.StatusCode}: {body}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.True(body.Contains($"\"reason\":\"{reason}\"", StringComparison.Ordinal), body);
        var challenge = response.Headers.WwwAuthenticate.ToString();
        Assert.StartsWith("Bearer realm=\"portcullis\"", challenge, StringComparison.Ordinal);
        Assert.Equal(tokenPresented, challenge.Contains("error=\"invalid_token\"", StringComparison.Ordinal));
        Assert.DoesNotContain("IDX", body, StringComparison.Ordinal);
        Assert.Equal(before, Upstream.Requests);
    }

    private Task AssertRejectedAsync(string token, string reason, string path = "/orders/1") => AssertRejectedAsync(() => SendAsync(token, path), reason);

    private static string PartnerPayload() =>
        $$"""{"iss":"{{JwtAttackGateway.PartnerIssuer}}","aud":"{{JwtAttackGateway.Audience}}","sub":"alice","exp":{{DateTimeOffset.UtcNow.AddMinutes(10).ToUnixTimeSeconds()}}}""";

    private static Func<byte[], string> SignHmac(byte[] secret) => input => Base64UrlEncoder.Encode(HMACSHA256.HashData(secret, input));

    // ---------------------------------------------------------------- the issuers work

    [Fact]
    public Task ValidRs256Token_FromTheSigningKey_IsAccepted() => AssertAcceptedAsync(Tokens.Create());

    [Fact]
    public Task ValidEs256Token_IsAccepted()
    {
        var key = new ECDsaSecurityKey(fixture.Ec) { KeyId = "ec-1" };
        var token = new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = JwtAttackGateway.EcIssuer,
            Audience = JwtAttackGateway.Audience,
            Expires = DateTime.UtcNow.AddMinutes(10),
            Claims = new Dictionary<string, object> { ["sub"] = "alice" },
            SigningCredentials = new SigningCredentials(key, SecurityAlgorithms.EcdsaSha256),
        });
        return AssertAcceptedAsync(token);
    }

    // ---------------------------------------------------------------- embedded jwk

    /// <summary>The attacker signs with their own key and ships its public half in the header (CVE-2018-0114
    /// style). Without a kid, with our kid, or with a kid of its own: the embedded key is never used, so the
    /// signature fails against our keys (or the kid is unknown).</summary>
    [Theory]
    [InlineData(null, "jwt.signature")]
    [InlineData("good", "jwt.signature")]
    [InlineData("attacker", "jwt.unknown-kid")]
    public Task EmbeddedJwkHeader_IsNeverUsed(string? kid, string reason)
    {
        using var attacker = RSA.Create(2048);
        var p = attacker.ExportParameters(false);
        var jwk = JsonSerializer.Serialize(new { kty = "RSA", use = "sig", kid = kid ?? "attacker", n = Base64UrlEncoder.Encode(p.Modulus!), e = Base64UrlEncoder.Encode(p.Exponent!) });
        var kidMember = kid is null ? "" : $",\"kid\":\"{kid}\"";
        var token = Tokens.Assemble($$"""{"alg":"RS256","typ":"JWT"{{kidMember}},"jwk":{{jwk}}}""", Tokens.StandardPayload(), SignRsa(attacker));
        return AssertRejectedAsync(token, reason);
    }

    [Fact]
    public Task EmbeddedJwkHeader_SignedWithTheRealKey_DoesNotChangeWhichKeyVerifies()
    {
        // Control for the test above: the same header shape with a signature by the issuer's real key is
        // accepted, so the rejections there are the signature failing, not the header being refused outright.
        using var attacker = RSA.Create(2048);
        var p = attacker.ExportParameters(false);
        var jwk = JsonSerializer.Serialize(new { kty = "RSA", n = Base64UrlEncoder.Encode(p.Modulus!), e = Base64UrlEncoder.Encode(p.Exponent!) });
        return AssertAcceptedAsync(Tokens.Assemble($$"""{"alg":"RS256","typ":"JWT","kid":"good","jwk":{{jwk}}}""", Tokens.StandardPayload()));
    }

    // ---------------------------------------------------------------- ES256 r = s = 0

    /// <summary>CVE-2022-21449 ("psychic signatures"): an ECDSA signature with r = s = 0 verifies against any
    /// key on a broken verifier. In JWS form (64 zero bytes) and as a DER sequence of two zero integers.</summary>
    [Theory]
    [InlineData("ec-1", 64)]
    [InlineData(null, 64)]
    [InlineData("ec-1", 0)]
    public Task Es256_ZeroSignature_IsRejected(string? kid, int zeroBytes)
    {
        var signature = zeroBytes == 0 ? [0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00] : new byte[zeroBytes];
        var kidMember = kid is null ? "" : $",\"kid\":\"{kid}\"";
        var token = Tokens.Assemble($$"""{"alg":"ES256","typ":"JWT"{{kidMember}}}""", EcPayload(), _ => Base64UrlEncoder.Encode(signature));
        return AssertRejectedAsync(token, "jwt.signature");
    }

    // ---------------------------------------------------------------- JWKS keys that must never verify

    /// <summary>Each token is correctly signed with the named key from the issuer's own JWKS; the key is
    /// never loaded for verification, so the kid is unknown.</summary>
    [Fact]
    public Task Rsa1024Key_IsNeverUsed() =>
        AssertRejectedAsync(Tokens.Assemble("""{"alg":"RS256","typ":"JWT","kid":"weak"}""", Tokens.StandardPayload(), SignRsa(fixture.Weak)), "jwt.unknown-kid");

    [Fact]
    public Task Rsa1024Key_PaddedToLookLike2048Bits_IsNeverUsed() =>
        AssertRejectedAsync(Tokens.Assemble("""{"alg":"RS256","typ":"JWT","kid":"weak-padded"}""", Tokens.StandardPayload(), SignRsa(fixture.Weak)), "jwt.unknown-kid");

    [Fact]
    public Task EncryptionKey_IsNeverUsedToVerify() =>
        AssertRejectedAsync(Tokens.Assemble("""{"alg":"RS256","typ":"JWT","kid":"enc"}""", Tokens.StandardPayload(), SignRsa(fixture.Encryption)), "jwt.unknown-kid");

    [Fact]
    public Task SymmetricOctKey_IsNeverUsedToVerify() =>
        AssertRejectedAsync(Tokens.Assemble("""{"alg":"HS256","typ":"JWT","kid":"oct"}""", Tokens.StandardPayload(),
            input => Base64UrlEncoder.Encode(HMACSHA256.HashData(fixture.OctSecret, input))), "jwt.unknown-kid");

    /// <summary>Without a kid every usable key is tried: the unusable ones must not be among them.</summary>
    [Fact]
    public async Task UnusableKeys_AreNotTriedForTokensWithoutKid()
    {
        await AssertRejectedAsync(Tokens.Assemble("""{"alg":"RS256","typ":"JWT"}""", Tokens.StandardPayload(), SignRsa(fixture.Weak)), "jwt.signature");
        await AssertRejectedAsync(Tokens.Assemble("""{"alg":"RS256","typ":"JWT"}""", Tokens.StandardPayload(), SignRsa(fixture.Encryption)), "jwt.signature");
        await AssertRejectedAsync(Tokens.Assemble("""{"alg":"HS256","typ":"JWT"}""", Tokens.StandardPayload(),
            input => Base64UrlEncoder.Encode(HMACSHA256.HashData(fixture.OctSecret, input))), "jwt.signature");
        await AssertAcceptedAsync(Tokens.Assemble("""{"alg":"RS256","typ":"JWT"}""", Tokens.StandardPayload()));
    }

    // ---------------------------------------------------------------- shared-secret issuer

    /// <summary>An HS256 issuer (sharedSecretEnv) accepts tokens signed with its secret and nothing else: not
    /// another secret, not the JWKS oct key of another issuer, not an RS256 token, not a token of another issuer.</summary>
    [Fact]
    public async Task SharedSecretIssuer_AcceptsOnlyItsOwnSecret()
    {
        using (var ok = await SendAsync(Tokens.Assemble("""{"alg":"HS256","typ":"JWT"}""", PartnerPayload(), SignHmac(Encoding.UTF8.GetBytes(JwtAttackGateway.PartnerSecret))), "/partner/1"))
        {
            Assert.Equal("alice", (await UpstreamAnswer.ReadAsync(ok)).Header("X-Subject"));
        }

        await AssertRejectedAsync(Tokens.Assemble("""{"alg":"HS256","typ":"JWT"}""", PartnerPayload(), SignHmac(Encoding.UTF8.GetBytes(JwtAttackGateway.PartnerSecret + "x"))), "jwt.signature", "/partner/1");
        await AssertRejectedAsync(Tokens.Assemble("""{"alg":"HS256","typ":"JWT","kid":"oct"}""", PartnerPayload(), SignHmac(fixture.OctSecret)), "jwt.signature", "/partner/1");
        await AssertRejectedAsync(Tokens.Assemble("""{"alg":"RS256","typ":"JWT","kid":"good"}""", PartnerPayload()), "jwt.signature", "/partner/1");
        await AssertRejectedAsync(Tokens.Create(), "jwt.issuer", "/partner/1");
    }

    /// <summary>An issuer with only a shared secret has no keys to fetch: it never fails a fetch, and /readyz
    /// is not degraded because of it (every issuer it lists has its keys).</summary>
    [Fact]
    public async Task SharedSecretIssuer_HasNothingToFetch_AndReadyzIsNotDegraded()
    {
        using var response = await fixture.Gateway.Admin.GetAsync("/readyz");
        var body = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var json = JsonDocument.Parse(body);
        Assert.True(json.RootElement.GetProperty("status").GetString() == "ready", body);
        foreach (var issuer in json.RootElement.GetProperty("issuers").EnumerateArray())
        {
            Assert.True(issuer.GetProperty("keys").GetString() == "available", body);
            Assert.True(issuer.GetProperty("failures").GetInt64() == 0, body);
        }

        Assert.DoesNotContain(fixture.Gateway.Logs.Lines, l => l.Contains("fetching keys failed", StringComparison.Ordinal));
    }

    // ---------------------------------------------------------------- duplicate header members

    /// <summary>Parsers disagree on which duplicate wins; the token is refused whatever the order. Each is
    /// signed with the issuer's real key, so only the duplicate can be why.</summary>
    [Theory]
    [InlineData("""{"alg":"RS256","alg":"none","typ":"JWT","kid":"good"}""")]
    [InlineData("""{"alg":"none","alg":"RS256","typ":"JWT","kid":"good"}""")]
    [InlineData("""{"alg":"RS256","alg":"RS256","typ":"JWT","kid":"good"}""")]
    [InlineData("""{"alg":"RS256","typ":"JWT","kid":"good","kid":"other"}""")]
    [InlineData("""{"alg":"RS256","typ":"JWT","typ":"at+jwt","kid":"good"}""")]
    public Task DuplicateHeaderMembers_AreRejected(string header) =>
        AssertRejectedAsync(Tokens.Assemble(header, Tokens.StandardPayload()), "jwt.malformed");

    // ---------------------------------------------------------------- token carriers the route did not enable

    [Fact]
    public Task TokenInFormBody_IsNotAccepted() =>
        AssertRejectedAsync(async () =>
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/orders/1")
            {
                Content = new FormUrlEncodedContent(new Dictionary<string, string> { ["access_token"] = Tokens.Create() }),
            };
            return await fixture.Client.SendAsync(request);
        }, "auth.missing", tokenPresented: false);

    [Fact]
    public Task TokenInCookie_IsNotAccepted() =>
        AssertRejectedAsync(async () =>
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/orders/1");
            request.Headers.TryAddWithoutValidation("Cookie", "access_token=" + Tokens.Create());
            return await fixture.Client.SendAsync(request);
        }, "auth.missing", tokenPresented: false);

    [Fact]
    public async Task CookieHeader_DoesReachThePublicRoute()
    {
        // Control for the cookie test: the client really sends the Cookie header as written.
        using var request = new HttpRequestMessage(HttpMethod.Get, "/public/x");
        request.Headers.TryAddWithoutValidation("Cookie", "access_token=abc");
        using var response = await fixture.Client.SendAsync(request);
        Assert.Equal("access_token=abc", (await UpstreamAnswer.ReadAsync(response)).Header("Cookie"));
    }
}
