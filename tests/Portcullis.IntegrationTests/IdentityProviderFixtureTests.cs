using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Protocols;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;
using Microsoft.IdentityModel.Tokens;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.IntegrationTests.Infrastructure.Identity;

namespace Portcullis.IntegrationTests;

/// <summary>
/// Proves the test OpenID Provider is a real one: what a gateway will do against it (discovery, JWKS,
/// JsonWebTokenHandler validation, introspection, revocation) works with Microsoft.IdentityModel.
/// </summary>
public sealed class IdentityProviderFixtureTests
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    [Fact]
    public async Task Discovery_document_lists_the_endpoints_and_is_counted()
    {
        await using var idp = await TestIdentityProvider.StartAsync();

        var discovery = await Http.GetFromJsonAsync<JsonElement>(idp.DiscoveryEndpoint);

        Assert.Equal(idp.Issuer, discovery.GetProperty("issuer").GetString());
        Assert.Equal(idp.JwksUri, discovery.GetProperty("jwks_uri").GetString());
        Assert.Equal(idp.TokenEndpoint, discovery.GetProperty("token_endpoint").GetString());
        Assert.Equal(idp.IntrospectionEndpoint, discovery.GetProperty("introspection_endpoint").GetString());
        Assert.Equal(idp.RevocationEndpoint, discovery.GetProperty("revocation_endpoint").GetString());
        Assert.Contains("client_credentials", discovery.GetProperty("grant_types_supported").EnumerateArray().Select(e => e.GetString()));
        Assert.Contains("RS256", discovery.GetProperty("id_token_signing_alg_values_supported").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(1, idp.DiscoveryRequests);

        var jwks = await FetchJwksAsync(idp);
        var key = Assert.Single(jwks.Keys);
        Assert.Equal("RSA", key.Kty);
        Assert.Equal(idp.ActiveKeyId, key.Kid);
        Assert.Equal(2048, key.KeySize);
        Assert.Equal(1, idp.JwksRequests);

        idp.ResetCounters();
        Assert.Equal(0, idp.DiscoveryRequests);
        Assert.Equal(0, idp.JwksRequests);
    }

    [Fact]
    public async Task Client_credentials_token_validates_against_the_published_keys()
    {
        await using var idp = await TestIdentityProvider.StartAsync("orders-idp");

        var token = await idp.GetAccessTokenAsync(TestIdentityProvider.Admin.ClientId, TestIdentityProvider.Admin.Secret, "orders.read", "orders.write");

        var configuration = await NewConfigurationManager(idp).GetConfigurationAsync(CancellationToken.None);
        Assert.Equal(idp.JwksUri, configuration.JwksUri);
        var result = await ValidateAsync(token, idp, configuration.SigningKeys);
        Assert.True(result.IsValid, result.Exception?.ToString());

        var jwt = (JsonWebToken)result.SecurityToken;
        Assert.Equal("RS256", jwt.Alg);
        Assert.Equal("at+jwt", jwt.Typ);
        Assert.Equal(idp.ActiveKeyId, jwt.Kid);
        Assert.Equal(idp.Issuer, jwt.Issuer);
        Assert.Equal(["orders-api"], jwt.Audiences);
        Assert.Equal("orders-admin", jwt.Subject);
        Assert.Equal("orders.read orders.write", jwt.GetClaim("scope").Value);
        Assert.Equal("premium", jwt.GetClaim("tier").Value);
        Assert.Equal("admin@example.test", jwt.GetClaim("email").Value);
        Assert.Equal(TimeSpan.FromHours(1), jwt.ValidTo - jwt.IssuedAt);

        var payload = DecodePayload(token);
        Assert.Equal(JsonValueKind.Array, payload.GetProperty("groups").ValueKind);
        Assert.Equal(["admins", "users"], payload.GetProperty("groups").EnumerateArray().Select(e => e.GetString()));

        Assert.Equal(1, idp.TokenRequests);
        Assert.Equal(1, idp.DiscoveryRequests);
        Assert.Equal(1, idp.JwksRequests);
        Assert.Equal(0, idp.IntrospectionRequests);
    }

    [Fact]
    public async Task Single_group_is_still_an_array_and_unrequested_scopes_default_to_the_clients()
    {
        await using var idp = await TestIdentityProvider.StartAsync();

        var payload = DecodePayload(await idp.GetAccessTokenAsync(TestIdentityProvider.Reader));

        Assert.Equal(JsonValueKind.Array, payload.GetProperty("groups").ValueKind);
        Assert.Equal("users", Assert.Single(payload.GetProperty("groups").EnumerateArray()).GetString());
        Assert.Equal("orders.read", payload.GetProperty("scope").GetString());
        Assert.Equal("basic", payload.GetProperty("tier").GetString());
        Assert.Equal("orders-api", payload.GetProperty("aud").GetString());
    }

    [Fact]
    public async Task Registered_clients_get_their_claims_audience_and_lifetime_and_nothing_beyond_their_scopes()
    {
        await using var idp = await TestIdentityProvider.StartAsync("billing", audience: "billing-api");
        idp.AccessTokenLifetime = TimeSpan.FromMinutes(5);
        var client = await idp.RegisterClientAsync(
            "partner",
            "partner-secret",
            ["billing.read"],
            new Dictionary<string, object> { ["tier"] = "gold", ["consumer"] = "partner-co", ["level"] = 3, ["beta"] = true });

        var token = await idp.GetAccessTokenAsync(client.ClientId, client.Secret, "billing.read");
        var payload = DecodePayload(token);
        Assert.Equal("billing-api", payload.GetProperty("aud").GetString());
        Assert.Equal("partner", payload.GetProperty("sub").GetString());
        Assert.Equal("gold", payload.GetProperty("tier").GetString());
        Assert.Equal("partner-co", payload.GetProperty("consumer").GetString());
        Assert.Equal(3, payload.GetProperty("level").GetInt32());
        Assert.True(payload.GetProperty("beta").GetBoolean());
        Assert.Equal(300, payload.GetProperty("exp").GetInt64() - payload.GetProperty("iat").GetInt64());

        var refused = await Assert.ThrowsAsync<InvalidOperationException>(() => idp.GetAccessTokenAsync(client.ClientId, client.Secret, "billing.admin"));
        Assert.Contains("400", refused.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<InvalidOperationException>(() => idp.GetAccessTokenAsync(client.ClientId, "wrong-secret"));
    }

    [Fact]
    public async Task Rotation_signs_with_a_new_kid_while_publishing_both_keys_then_old_keys_can_be_removed()
    {
        await using var idp = await TestIdentityProvider.StartAsync();
        var port = idp.Port;
        var oldKid = idp.ActiveKeyId;
        var oldToken = await idp.GetAccessTokenAsync(TestIdentityProvider.Reader);

        var stopwatch = Stopwatch.StartNew();
        var newKid = await idp.RotateSigningKeyAsync();
        var rotation = stopwatch.Elapsed;

        Assert.NotEqual(oldKid, newKid);
        Assert.Equal(newKid, idp.ActiveKeyId);
        Assert.Equal(port, idp.Port);
        // Loose bound: a restart is ~0.1 s warm, but key generation and a loaded 2-core CI box can stretch it.
        Assert.True(rotation < TimeSpan.FromSeconds(5), $"rotation took {rotation}");

        var newToken = await idp.GetAccessTokenAsync(TestIdentityProvider.Reader);
        Assert.Equal(newKid, new JsonWebToken(newToken).Kid);
        Assert.Equal(oldKid, new JsonWebToken(oldToken).Kid);

        var jwks = await FetchJwksAsync(idp);
        Assert.Equal([newKid, oldKid], jwks.Keys.Select(k => k.Kid).ToArray());
        Assert.True((await ValidateAsync(oldToken, idp, jwks.GetSigningKeys())).IsValid);
        Assert.True((await ValidateAsync(newToken, idp, jwks.GetSigningKeys())).IsValid);

        await idp.RemoveOldKeysAsync();
        jwks = await FetchJwksAsync(idp);
        Assert.Equal([newKid], jwks.Keys.Select(k => k.Kid).ToArray());
        var oldResult = await ValidateAsync(oldToken, idp, jwks.GetSigningKeys());
        Assert.False(oldResult.IsValid);
        Assert.IsType<SecurityTokenSignatureKeyNotFoundException>(oldResult.Exception);
        Assert.True((await ValidateAsync(newToken, idp, jwks.GetSigningKeys())).IsValid);
    }

    [Fact]
    public async Task Stopped_provider_refuses_connections_and_comes_back_on_the_same_port_with_the_same_keys()
    {
        await using var idp = await TestIdentityProvider.StartAsync();
        var token = await idp.GetAccessTokenAsync(TestIdentityProvider.Admin);

        await idp.StopAsync();
        Assert.False(idp.IsRunning);
        await Assert.ThrowsAsync<HttpRequestException>(() => Http.GetAsync(idp.JwksUri));

        var stopwatch = Stopwatch.StartNew();
        await idp.StartAgainAsync();
        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(5), $"restart took {stopwatch.Elapsed}");

        var jwks = await FetchJwksAsync(idp);
        Assert.True((await ValidateAsync(token, idp, jwks.GetSigningKeys())).IsValid);
        Assert.Equal(2, idp.TokenRequests + idp.JwksRequests);
        Assert.NotNull(await idp.GetAccessTokenAsync(TestIdentityProvider.Admin));
    }

    [Fact]
    public async Task Opaque_token_introspects_active_with_its_claims_then_inactive_after_revocation()
    {
        await using var idp = await TestIdentityProvider.StartAsync();

        var token = await idp.GetAccessTokenAsync(TestIdentityProvider.Opaque);
        Assert.DoesNotContain('.', token);

        var answer = await idp.IntrospectAsync(token);
        Assert.True(answer.GetProperty("active").GetBoolean(), answer.ToString());
        Assert.Equal(idp.Issuer, answer.GetProperty("iss").GetString());
        Assert.Equal("orders-opaque", answer.GetProperty("sub").GetString());
        Assert.Equal("orders-opaque", answer.GetProperty("client_id").GetString());
        Assert.Equal("orders.read", answer.GetProperty("scope").GetString());
        Assert.Equal("premium", answer.GetProperty("tier").GetString());
        Assert.Contains("orders-api", AsStrings(answer.GetProperty("aud")));
        Assert.Contains("users", AsStrings(answer.GetProperty("groups")));
        Assert.True(answer.GetProperty("exp").GetInt64() > DateTimeOffset.UtcNow.ToUnixTimeSeconds());
        Assert.Equal(1, idp.IntrospectionRequests);

        // The gateway's own call: client_secret_post this time, as a real introspecting resource server.
        using (var response = await Http.PostAsync(idp.IntrospectionEndpoint, new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["token"] = token,
            ["client_id"] = idp.IntrospectionClientId,
            ["client_secret"] = idp.IntrospectionClientSecret,
        })))
        {
            Assert.True((await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("active").GetBoolean());
        }

        await idp.RevokeAsync(token);
        Assert.False((await idp.IntrospectAsync(token)).GetProperty("active").GetBoolean());
        Assert.Equal(3, idp.IntrospectionRequests);
        Assert.Equal(1, idp.RevocationRequests);

        // Wrong introspection credentials are refused outright.
        using var refused = await Http.PostAsync(idp.IntrospectionEndpoint, new FormUrlEncodedContent(new Dictionary<string, string>
        {
            ["token"] = token,
            ["client_id"] = idp.IntrospectionClientId,
            ["client_secret"] = "wrong",
        }));
        Assert.False(refused.IsSuccessStatusCode);
    }

    [Fact]
    public async Task Jwt_access_tokens_can_be_introspected_and_revoked_too()
    {
        await using var idp = await TestIdentityProvider.StartAsync();
        var token = await idp.GetAccessTokenAsync(TestIdentityProvider.Reader);

        var answer = await idp.IntrospectAsync(token);
        Assert.True(answer.GetProperty("active").GetBoolean(), answer.ToString());
        Assert.Equal("orders-reader", answer.GetProperty("sub").GetString());

        await idp.RevokeAsync(token);
        Assert.False((await idp.IntrospectAsync(token)).GetProperty("active").GetBoolean());
    }

    [Fact]
    public async Task Password_grant_yields_an_id_token_that_is_not_an_access_token()
    {
        await using var idp = await TestIdentityProvider.StartAsync();

        var idToken = await idp.GetIdTokenAsync();

        var jwks = await FetchJwksAsync(idp);
        var result = await new JsonWebTokenHandler().ValidateTokenAsync(idToken, new TokenValidationParameters
        {
            ValidIssuer = idp.Issuer,
            ValidAudience = TestIdentityProvider.Reader.ClientId,
            IssuerSigningKeys = jwks.GetSigningKeys(),
        });
        Assert.True(result.IsValid, result.Exception?.ToString());
        var jwt = (JsonWebToken)result.SecurityToken;
        Assert.Equal("alice", jwt.Subject);
        Assert.Equal("alice@example.test", jwt.GetClaim("email").Value);
        Assert.NotEqual("at+jwt", jwt.Typ);
        Assert.Equal(idp.ActiveKeyId, jwt.Kid);

        // What an API gateway must refuse: the ID token fails access-token validation (typ, aud).
        Assert.False((await ValidateAsync(idToken, idp, jwks.GetSigningKeys())).IsValid);
        await Assert.ThrowsAsync<InvalidOperationException>(() => idp.GetIdTokenAsync("orders-reader", "reader-secret", "alice", "wrong"));
    }

    [Fact]
    public async Task Forged_tokens_are_signed_by_the_real_key_for_attack_tests()
    {
        await using var idp = await TestIdentityProvider.StartAsync();
        var jwks = await FetchJwksAsync(idp);

        var good = idp.SignToken(idp.StandardClaims("forged", "orders.read"));
        Assert.True((await ValidateAsync(good, idp, jwks.GetSigningKeys())).IsValid);
        Assert.Equal(idp.ActiveKeyId, new JsonWebToken(good).Kid);

        var claims = idp.StandardClaims("forged");
        claims["exp"] = DateTimeOffset.UtcNow.AddMinutes(-10).ToUnixTimeSeconds();
        claims["iat"] = claims["nbf"] = DateTimeOffset.UtcNow.AddMinutes(-70).ToUnixTimeSeconds();
        var expired = await ValidateAsync(idp.SignToken(claims), idp, jwks.GetSigningKeys());
        Assert.IsType<SecurityTokenExpiredException>(expired.Exception);

        var withHeader = new JsonWebToken(idp.SignToken(idp.StandardClaims(), extraHeaders: new Dictionary<string, object> { ["jku"] = "http://127.0.0.1:1/keys" }));
        Assert.Equal("http://127.0.0.1:1/keys", withHeader.GetHeaderValue<string>("jku"));
    }

    [Fact]
    public async Task Two_providers_are_independent_issuers_and_start_fast()
    {
        await using var warm = await TestIdentityProvider.StartAsync("warm-up");
        var stopwatch = Stopwatch.StartNew();
        await using var a = await TestIdentityProvider.StartAsync("a");
        await using var b = await TestIdentityProvider.StartAsync("b", audience: "payments-api");
        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(8), $"two providers took {stopwatch.Elapsed}");

        Assert.NotEqual(a.Issuer, b.Issuer);
        var tokenA = await a.GetAccessTokenAsync(TestIdentityProvider.Reader);
        var tokenB = await b.GetAccessTokenAsync(TestIdentityProvider.Reader);
        var jwksA = await FetchJwksAsync(a);
        var jwksB = await FetchJwksAsync(b);
        Assert.True((await ValidateAsync(tokenA, a, jwksA.GetSigningKeys())).IsValid);
        Assert.True((await ValidateAsync(tokenB, b, jwksB.GetSigningKeys(), "payments-api")).IsValid);
        Assert.False((await ValidateAsync(tokenA, b, jwksB.GetSigningKeys(), "payments-api")).IsValid);
    }

    private static ConfigurationManager<OpenIdConnectConfiguration> NewConfigurationManager(TestIdentityProvider idp) =>
        new(idp.DiscoveryEndpoint, new OpenIdConnectConfigurationRetriever(), new HttpDocumentRetriever(Http) { RequireHttps = false });

    private static async Task<JsonWebKeySet> FetchJwksAsync(TestIdentityProvider idp) =>
        new(await Http.GetStringAsync(idp.JwksUri));

    private static Task<TokenValidationResult> ValidateAsync(string token, TestIdentityProvider idp, IEnumerable<SecurityKey> keys, string audience = "orders-api") =>
        new JsonWebTokenHandler().ValidateTokenAsync(token, new TokenValidationParameters
        {
            ValidIssuer = idp.Issuer,
            ValidAudience = audience,
            IssuerSigningKeys = keys,
            ValidAlgorithms = [SecurityAlgorithms.RsaSha256],
            ValidTypes = ["at+jwt"],
            RequireExpirationTime = true,
            ClockSkew = TimeSpan.Zero,
        });

    private static JsonElement DecodePayload(string jwt)
    {
        var part = jwt.Split('.')[1];
        using var document = JsonDocument.Parse(Base64UrlEncoder.DecodeBytes(part));
        return document.RootElement.Clone();
    }

    private static string?[] AsStrings(JsonElement element) =>
        element.ValueKind == JsonValueKind.Array ? element.EnumerateArray().Select(e => e.GetString()).ToArray() : [element.GetString()];
}
