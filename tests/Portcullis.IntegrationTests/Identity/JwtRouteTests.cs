using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using Microsoft.IdentityModel.Tokens;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Identity;

/// <summary>JWT-protected routes with a local JWKS file: what passes, what the upstream sees, and the attack suite.</summary>
public sealed class JwtRouteTests : IAsyncLifetime
{
    private const string Issuer = "https://issuer.test/";
    private readonly TokenFactory _tokens = new(Issuer, "orders-api");
    private TestUpstream _upstream = null!;
    private TestGateway _gateway = null!;

    public async Task InitializeAsync()
    {
        _upstream = await TestUpstream.StartAsync("orders");
        _gateway = await TestGateway.StartAsync($$"""
            identity:
              issuers:
                - name: corp
                  jwksFile: jwks.json
                  issuer: {{Issuer}}
                  audiences: [orders-api]
                  claims: { consumerGroup: tier }
              assertion: { lifetime: 30s }
            routes:
              - name: public
                match: { pathPrefix: /public }
                cluster: orders
              - name: orders
                match: { pathPrefix: /orders }
                auth: { issuers: [corp], scopes: [orders.read] }
                cluster: orders
              - name: premium
                match: { pathPrefix: /premium }
                auth:
                  issuers: [corp]
                  claims:
                    - any:
                        - { claim: tier, is: premium }
                        - { claim: groups, is: admins }
                cluster: orders
            clusters:
              orders:
                destinations: [{{_upstream.Url}}]
            """, new Dictionary<string, string> { ["jwks.json"] = _tokens.JwksJson() });
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _upstream.DisposeAsync();
        _tokens.Dispose();
    }

    private async Task<HttpResponseMessage> SendAsync(string path, string? token, Action<HttpRequestMessage>? configure = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (token is not null) request.Headers.TryAddWithoutValidation("Authorization", "Bearer " + token);
        configure?.Invoke(request);
        return await _gateway.Client.SendAsync(request);
    }

    private async Task AssertRejectedAsync(string token, string? reason = null)
    {
        var before = _upstream.Requests;
        using var response = await SendAsync("/orders/1", token);
        var body = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Contains("error=\"invalid_token\"", response.Headers.WwwAuthenticate.ToString(), StringComparison.Ordinal);
        if (reason is not null) Assert.Contains($"\"reason\":\"{reason}\"", body, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", body, StringComparison.Ordinal);
        Assert.DoesNotContain("IDX", body, StringComparison.Ordinal);
        Assert.Equal(before, _upstream.Requests);
    }

    [Fact]
    public async Task ValidToken_ReachesUpstream_WithIdentityHeaders_AndWithoutTheToken()
    {
        var token = _tokens.Create(new Dictionary<string, object> { ["sub"] = "alice", ["client_id"] = "shop", ["scope"] = "orders.read orders.write", ["tier"] = "gold", ["groups"] = new[] { "staff", "ops" } });
        using var response = await SendAsync("/orders/1", token, r =>
        {
            r.Headers.TryAddWithoutValidation("X-Consumer-Id", "mallory");
            r.Headers.TryAddWithoutValidation("X-Subject", "root");
            r.Headers.TryAddWithoutValidation("X-Original-URL", "/admin");
        });

        var seen = await UpstreamAnswer.ReadAsync(response);
        Assert.Equal("shop", seen.Header("X-Consumer-Id"));
        Assert.Equal("alice", seen.Header("X-Subject"));
        Assert.Equal("gold", seen.Header("X-Consumer-Group"));
        Assert.Equal("staff,ops", seen.Header("X-Groups"));
        Assert.Equal("orders.read orders.write", seen.Header("X-Scopes"));
        Assert.Null(seen.Header("Authorization"));
        Assert.Null(seen.Header("X-Original-URL"));
    }

    [Fact]
    public async Task Assertion_VerifiesAgainstTheGatewaysJwks_AndCarriesTheCaller()
    {
        var token = _tokens.Create(new Dictionary<string, object> { ["sub"] = "alice", ["client_id"] = "shop", ["scope"] = "orders.read", ["tier"] = "gold" });
        using var response = await SendAsync("/orders/1", token, r => r.Headers.TryAddWithoutValidation("X-Portcullis-Assertion", "forged"));
        var seen = await UpstreamAnswer.ReadAsync(response);
        var assertion = seen.Header("X-Portcullis-Assertion");
        Assert.NotNull(assertion);
        Assert.NotEqual("forged", assertion);

        var jwks = new Microsoft.IdentityModel.Tokens.JsonWebKeySet(await _gateway.Client.GetStringAsync("/.well-known/portcullis/jwks.json"));
        var handler = new Microsoft.IdentityModel.JsonWebTokens.JsonWebTokenHandler();
        var result = await handler.ValidateTokenAsync(assertion, new Microsoft.IdentityModel.Tokens.TokenValidationParameters
        {
            ValidIssuer = "portcullis",
            ValidAudience = "orders",
            IssuerSigningKeys = jwks.GetSigningKeys(),
            ValidAlgorithms = ["ES256"],
        });
        Assert.True(result.IsValid, result.Exception?.Message);
        var jwt = (Microsoft.IdentityModel.JsonWebTokens.JsonWebToken)result.SecurityToken;
        Assert.False(string.IsNullOrEmpty(jwt.Kid));
        Assert.Contains(jwks.Keys, k => k.Kid == jwt.Kid);
        Assert.Equal("alice", jwt.Subject);
        Assert.Equal("shop", jwt.GetClaim("consumer").Value);
        Assert.Equal("gold", jwt.GetClaim("consumer_group").Value);
        Assert.True(jwt.ValidTo <= DateTime.UtcNow.AddSeconds(31));

        // Same caller, same audience: the assertion is reused rather than signed again.
        using var again = await SendAsync("/orders/2", token);
        Assert.Equal(assertion, (await UpstreamAnswer.ReadAsync(again)).Header("X-Portcullis-Assertion"));
    }

    [Fact]
    public async Task PublicRoute_StillScrubsSpoofedIdentityHeaders()
    {
        using var response = await SendAsync("/public/x", null, r => r.Headers.TryAddWithoutValidation("X-Consumer-Id", "mallory"));
        var seen = await UpstreamAnswer.ReadAsync(response);
        Assert.Null(seen.Header("X-Consumer-Id"));
    }

    [Fact]
    public async Task MissingToken_Is401WithBearerChallenge()
    {
        using var response = await SendAsync("/orders/1", null);
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("Bearer realm=\"portcullis\"", response.Headers.WwwAuthenticate.ToString());
        Assert.Contains("\"reason\":\"auth.missing\"", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task MissingScope_Is403InsufficientScope()
    {
        var token = _tokens.Create(new Dictionary<string, object> { ["sub"] = "alice", ["scope"] = "profile" });
        using var response = await SendAsync("/orders/1", token);
        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        Assert.Contains("error=\"insufficient_scope\"", response.Headers.WwwAuthenticate.ToString(), StringComparison.Ordinal);
        Assert.Contains("scope=\"orders.read\"", response.Headers.WwwAuthenticate.ToString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("premium", null, HttpStatusCode.OK)]
    [InlineData("gold", "admins", HttpStatusCode.OK)]
    [InlineData("gold", "staff", HttpStatusCode.Forbidden)]
    public async Task ClaimRules_AnyOf(string tier, string? group, HttpStatusCode expected)
    {
        var claims = new Dictionary<string, object> { ["sub"] = "bob", ["tier"] = tier };
        if (group is not null) claims["groups"] = new[] { group };
        using var response = await SendAsync("/premium/x", _tokens.Create(claims));
        Assert.Equal(expected, response.StatusCode);
    }

    [Fact]
    public async Task RepeatedToken_IsServedFromTheValidatedTokenCache()
    {
        var token = _tokens.Create();
        for (var i = 0; i < 5; i++)
        {
            using var response = await SendAsync("/orders/1", token);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
    }

    [Fact]
    public Task Expired_IsRejected() => AssertRejectedAsync(_tokens.Create(expires: DateTime.UtcNow.AddMinutes(-10), notBefore: DateTime.UtcNow.AddMinutes(-20)), "jwt.expired");

    [Fact]
    public Task NotYetValid_IsRejected() => AssertRejectedAsync(_tokens.Create(notBefore: DateTime.UtcNow.AddMinutes(10), expires: DateTime.UtcNow.AddMinutes(20)), "jwt.not-yet-valid");

    [Fact]
    public Task WrongAudience_IsRejected() => AssertRejectedAsync(_tokens.Create(audience: "billing-api"), "jwt.audience");

    [Fact]
    public Task WrongIssuer_IsRejected() => AssertRejectedAsync(_tokens.Create(issuer: "https://evil.test/"), "jwt.issuer");

    [Theory]
    [InlineData("none")]
    [InlineData("None")]
    [InlineData("NONE")]
    [InlineData("nOnE")]
    public Task AlgNone_AnyCase_IsRejected(string alg) =>
        AssertRejectedAsync(_tokens.Assemble($$"""{"alg":"{{alg}}","typ":"JWT","kid":"key-1"}""", _tokens.StandardPayload(), _ => ""));

    [Fact]
    public Task KeyConfusion_Hs256WithThePublicKey_IsRejected() =>
        AssertRejectedAsync(_tokens.Assemble("""{"alg":"HS256","typ":"JWT","kid":"key-1"}""", _tokens.StandardPayload(),
            input => Base64UrlEncoder.Encode(HMACSHA256.HashData(_tokens.PublicKeyBytes(), input))));

    [Fact]
    public Task SignatureStripped_IsRejected()
    {
        var token = _tokens.Create();
        return AssertRejectedAsync(token[..(token.LastIndexOf('.') + 1)]);
    }

    [Fact]
    public Task PayloadTampered_IsRejected()
    {
        var parts = _tokens.Create().Split('.');
        parts[1] = Base64UrlEncoder.Encode(_tokens.StandardPayload(extra: "\"tier\":\"premium\""));
        return AssertRejectedAsync(string.Join('.', parts), "jwt.signature");
    }

    [Fact]
    public Task MissingExp_IsRejected() =>
        AssertRejectedAsync(_tokens.Assemble("""{"alg":"RS256","typ":"JWT","kid":"key-1"}""", $$"""{"iss":"{{Issuer}}","aud":"orders-api","sub":"alice","scope":"orders.read"}"""));

    [Fact]
    public Task UnknownKid_IsRejected() =>
        AssertRejectedAsync(_tokens.Assemble("""{"alg":"RS256","typ":"JWT","kid":"other"}""", _tokens.StandardPayload()), "jwt.unknown-kid");

    [Theory]
    [InlineData("../../../../etc/passwd")]
    [InlineData("key-1' OR '1'='1")]
    [InlineData("key-1\u0000")]
    public Task MaliciousKid_IsRejected(string kid) =>
        AssertRejectedAsync(_tokens.Assemble($$"""{"alg":"RS256","typ":"JWT","kid":{{System.Text.Json.JsonSerializer.Serialize(kid)}}}""", _tokens.StandardPayload()));

    [Fact]
    public Task CritHeader_IsRejected() =>
        AssertRejectedAsync(_tokens.Assemble("""{"alg":"RS256","typ":"JWT","kid":"key-1","crit":["exp-ext"],"exp-ext":1}""", _tokens.StandardPayload()), "jwt.crit-unsupported");

    [Fact]
    public Task DuplicateMembers_AreRejected() =>
        AssertRejectedAsync(_tokens.Assemble("""{"alg":"RS256","typ":"JWT","kid":"key-1"}""", _tokens.StandardPayload(extra: "\"sub\":\"admin\"")), "jwt.malformed");

    [Fact]
    public Task OversizedToken_IsRejectedBeforeParsing() =>
        AssertRejectedAsync(new string('a', 17 * 1024), "jwt.too-large");

    [Theory]
    [InlineData("not-a-jwt")]
    [InlineData("a.b.c")]
    [InlineData("%%%.***.!!!")]
    public Task Garbage_IsRejected(string token) => AssertRejectedAsync(token);

    [Fact]
    public Task JweToken_IsRejected() => AssertRejectedAsync("eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d");

    [Fact]
    public async Task TwoAuthorizationHeaders_AreRejected()
    {
        var token = _tokens.Create();
        using var response = await SendAsync("/orders/1", token, r => r.Headers.TryAddWithoutValidation("Authorization", "Bearer " + token));
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
    }

    [Fact]
    public async Task TokenInQueryString_IsNotAccepted()
    {
        using var response = await SendAsync("/orders/1?access_token=" + _tokens.Create(), null);
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
    }

    [Fact]
    public async Task JkuHeaderPointingElsewhere_IsIgnoredAndNeverFetched()
    {
        await using var attacker = await TestUpstream.StartAsync("attacker");
        var token = _tokens.Assemble($$"""{"alg":"RS256","typ":"JWT","kid":"evil","jku":"{{attacker.Url}}/jwks","x5u":"{{attacker.Url}}/x5u"}""", _tokens.StandardPayload());
        await AssertRejectedAsync(token);
        Assert.Equal(0, attacker.Requests);
    }
}
