using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.IntegrationTests.Observability;

namespace Portcullis.IntegrationTests.Identity;

/// <summary>
/// Issue 13, points 12-14, against the real test OpenID Provider: a key set without usable keys is a failed
/// refresh (the last good keys keep serving, /readyz and metrics say so, one log line); the first token signed
/// with a rotated key passes because the request waits (bounded) for a single-flight refresh; the expected
/// issuer is compared exactly, trailing slash included.
/// </summary>
public sealed class IssuerKeyHardeningTests
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(100);

    private static string Config(TestIdentityProvider idp, TestUpstream upstream, string keys) => IssuerRouteConfig.Orders(idp.Authority, upstream.Url, keys);

    public static TheoryData<string, string> UnusableKeySets()
    {
        using var weak = RSA.Create(1024);
        using var encryption = RSA.Create(2048);
        var w = weak.ExportParameters(false);
        var e = encryption.ExportParameters(false);
        return new TheoryData<string, string>
        {
            { """{"keys":[]}""", "the key set is empty" },
            {
                JsonSerializer.Serialize(new
                {
                    keys = new object[]
                    {
                        new { kty = "RSA", use = "sig", kid = "weak", n = Base64UrlEncoder.Encode(w.Modulus!), e = Base64UrlEncoder.Encode(w.Exponent!) },
                        new { kty = "RSA", use = "enc", kid = "enc", n = Base64UrlEncoder.Encode(e.Modulus!), e = Base64UrlEncoder.Encode(e.Exponent!) },
                    },
                }),
                "none of its 2 keys is a usable signing key"
            },
        };
    }

    /// <summary>Point 12: the provider starts serving a key set the gateway cannot use. Before the fix the
    /// refresh "succeeded" with zero keys and every token, remembered ones included, got 401 jwt.unknown-kid.</summary>
    [Theory]
    [MemberData(nameof(UnusableKeySets))]
    public async Task Key_set_without_usable_keys_is_a_failed_refresh_and_the_last_good_keys_keep_serving(string keySet, string why)
    {
        await using var idp = await TestIdentityProvider.StartAsync("idp-empty");
        await using var upstream = await TestUpstream.StartAsync("orders");
        await using var gateway = await TestGateway.StartAsync(Config(idp, upstream, "{ refreshInterval: 1s, staleFor: 1h }"));
        await WaitForKeysAsync(gateway);

        var remembered = await idp.GetAccessTokenAsync(TestIdentityProvider.Reader);
        var fresh = await idp.GetAccessTokenAsync(TestIdentityProvider.Admin);
        await AssertStatusAsync(gateway, remembered, HttpStatusCode.OK);
        var failuresBefore = await IssuerCounterAsync(gateway, "failures");

        idp.Intercept = async context =>
        {
            if (context.Request.Path != TestIdentityProvider.JwksPath) return false;
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync(keySet);
            return true;
        };

        // Several refreshes (regular ones every 1s, plus retries) meet the unusable set.
        var deadline = Stopwatch.StartNew();
        while (await IssuerCounterAsync(gateway, "failures") < failuresBefore + 3)
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(15), $"no three failed refreshes 15s after the key set changed\n{gateway.Logs}");
            await Task.Delay(PollInterval);
        }

        // The last good keys serve: the remembered token, a never-seen one, and one more signed by the old key.
        await AssertStatusAsync(gateway, remembered, HttpStatusCode.OK);
        await AssertStatusAsync(gateway, fresh, HttpStatusCode.OK);
        await AssertStatusAsync(gateway, idp.SignToken(idp.StandardClaims("orders-reader", "orders.read")), HttpStatusCode.OK);

        // /readyz: degraded, with the reason in the issuer's detail; keys still available.
        using (var ready = await ReadyAsync(gateway))
        {
            Assert.Equal("degraded", ready.RootElement.GetProperty("status").GetString());
            var entry = IssuerEntry(ready);
            Assert.Equal("available", entry.GetProperty("keys").GetString());
            Assert.Equal(1, entry.GetProperty("keyCount").GetInt32());
            Assert.Equal("key set rejected: " + why, entry.GetProperty("lastError").GetString());
        }

        // The failed refreshes are counted in the metrics.
        var samples = await PrometheusText.ScrapeAsync(gateway.Admin);
        Assert.True(samples.Sum("portcullis_jwks_fetch_failures_total", ("issuer", "corp")) >= failuresBefore + 3);
        Assert.Equal(1, samples.Sum("portcullis_jwks_available", ("issuer", "corp")));

        // Logged once for the whole failing streak, not once per refresh.
        Assert.Single(gateway.Logs.Lines, l => l.Contains("refused the key set", StringComparison.Ordinal));

        // The provider serves its keys again: the next refresh takes them, /readyz is ready again.
        idp.Intercept = null;
        deadline.Restart();
        while (true)
        {
            using var ready = await ReadyAsync(gateway);
            if (ready.RootElement.GetProperty("status").GetString() == "ready")
            {
                Assert.False(IssuerEntry(ready).TryGetProperty("lastError", out _));
                break;
            }

            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(15), $"not ready 15s after the provider served its keys again: {ready.RootElement}");
            await Task.Delay(PollInterval);
        }

        await AssertStatusAsync(gateway, fresh, HttpStatusCode.OK);
    }

    /// <summary>Point 13: the first token signed with a rotated key passes (before the fix: 401 jwt.unknown-kid
    /// while the refresh ran in the background), with exactly one JWKS fetch; the on-demand refresh stays
    /// rate-limited, so a second unknown kid right after costs no fetch.</summary>
    [Fact]
    public async Task First_token_after_a_key_rotation_passes_with_one_single_flight_refresh()
    {
        await using var idp = await TestIdentityProvider.StartAsync("idp-rotate-first");
        await using var upstream = await TestUpstream.StartAsync("orders");
        await using var gateway = await TestGateway.StartAsync(Config(idp, upstream, "{ unknownKidRefreshInterval: 30s }"));
        await WaitForKeysAsync(gateway);
        await AssertStatusAsync(gateway, await idp.GetAccessTokenAsync(TestIdentityProvider.Reader), HttpStatusCode.OK);

        var newKid = await idp.RotateSigningKeyAsync();
        var tokens = await Task.WhenAll(idp.GetAccessTokenAsync(TestIdentityProvider.Reader), idp.GetAccessTokenAsync(TestIdentityProvider.Admin));
        Assert.All(tokens, t => Assert.Equal(newKid, new JsonWebToken(t).Kid));
        var jwksBefore = idp.JwksRequests;
        var upstreamBefore = upstream.Requests;

        // Several requests with the new kid at once: all pass, on one fetch.
        var statuses = await Task.WhenAll(Enumerable.Range(0, 8).Select(async i =>
        {
            using var response = await SendAsync(gateway, tokens[i % 2]);
            return response.StatusCode;
        }));
        Assert.All(statuses, s => Assert.Equal(HttpStatusCode.OK, s));
        Assert.Equal(upstreamBefore + 8, upstream.Requests);
        Assert.Equal(1, idp.JwksRequests - jwksBefore);

        // Rate limit: another unknown kid inside unknownKidRefreshInterval is refused at once, without a fetch.
        var watch = Stopwatch.StartNew();
        await AssertProblemAsync(await SendAsync(gateway, AssembleWithKid(idp, "never-published")), HttpStatusCode.Unauthorized, "jwt.unknown-kid");
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(1.5), $"a rate-limited unknown kid waited {watch.Elapsed}");
        Assert.Equal(1, idp.JwksRequests - jwksBefore);
    }

    /// <summary>Point 13: the wait is bounded. A provider too slow to answer within 2s does not hold the
    /// request: it is refused with jwt.unknown-kid well before the provider's answer.</summary>
    [Fact]
    public async Task Request_waits_at_most_about_two_seconds_for_an_unknown_kid_refresh()
    {
        await using var idp = await TestIdentityProvider.StartAsync("idp-rotate-slow");
        await using var upstream = await TestUpstream.StartAsync("orders");
        await using var gateway = await TestGateway.StartAsync(Config(idp, upstream, "{ timeout: 10s }"));
        await WaitForKeysAsync(gateway);

        await idp.RotateSigningKeyAsync();
        var token = await idp.GetAccessTokenAsync(TestIdentityProvider.Reader);
        idp.ResponseDelay = TimeSpan.FromSeconds(8);

        var watch = Stopwatch.StartNew();
        await AssertProblemAsync(await SendAsync(gateway, token), HttpStatusCode.Unauthorized, "jwt.unknown-kid");
        Assert.True(watch.Elapsed >= TimeSpan.FromSeconds(1.5), $"answered after {watch.Elapsed}: it did not wait for the refresh");
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(6), $"answered after {watch.Elapsed}: the 2s bound was not applied");

        // The refresh went on in the background: once it lands, the token passes.
        idp.ResponseDelay = TimeSpan.Zero;
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            using var response = await SendAsync(gateway, token);
            if (response.StatusCode == HttpStatusCode.OK) break;
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(20), $"token with the rotated key still refused: {await response.Content.ReadAsStringAsync()}\n{gateway.Logs}");
            await Task.Delay(PollInterval);
        }
    }

    /// <summary>Point 14: with `authority` and no `issuer`, the expected issuer is the discovery document's,
    /// compared exactly (OIDC Discovery 1.0 §4.3). The provider's issuer ends in '/'; a token whose iss lacks it,
    /// correctly signed with the provider's key, was accepted before the fix.</summary>
    [Fact]
    public async Task Issuer_from_discovery_is_compared_exactly_including_the_trailing_slash()
    {
        await using var idp = await TestIdentityProvider.StartAsync("idp-exact");
        await using var upstream = await TestUpstream.StartAsync("orders");
        await using var gateway = await TestGateway.StartAsync(Config(idp, upstream, "{ }"));
        await WaitForKeysAsync(gateway);
        Assert.EndsWith("/", idp.Issuer, StringComparison.Ordinal);

        var exact = idp.SignToken(idp.StandardClaims("orders-reader", "orders.read"));
        await AssertStatusAsync(gateway, exact, HttpStatusCode.OK);

        var claims = idp.StandardClaims("orders-reader", "orders.read");
        claims[JwtRegisteredClaimNames.Iss] = idp.Issuer.TrimEnd('/');
        await AssertProblemAsync(await SendAsync(gateway, idp.SignToken(claims)), HttpStatusCode.Unauthorized, "jwt.issuer");

        claims[JwtRegisteredClaimNames.Iss] = idp.Issuer + "/";
        await AssertProblemAsync(await SendAsync(gateway, idp.SignToken(claims)), HttpStatusCode.Unauthorized, "jwt.issuer");
    }

    private static async Task<HttpResponseMessage> SendAsync(TestGateway gateway, string token)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/orders/1");
        request.Headers.TryAddWithoutValidation("Authorization", "Bearer " + token);
        return await gateway.Client.SendAsync(request);
    }

    private static async Task AssertStatusAsync(TestGateway gateway, string token, HttpStatusCode expected)
    {
        using var response = await SendAsync(gateway, token);
        if (response.StatusCode != expected)
        {
            Assert.Fail($"expected {(int)expected}, got {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}\n--- gateway log ---\n{gateway.Logs}");
        }
    }

    private static async Task AssertProblemAsync(HttpResponseMessage response, HttpStatusCode status, string reason)
    {
        using (response)
        {
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == status, $"expected {(int)status} {reason}, got {(int)response.StatusCode}: {body}");
            using var json = JsonDocument.Parse(body);
            Assert.Equal(reason, json.RootElement.GetProperty("reason").GetString());
        }
    }

    private static async Task<JsonDocument> ReadyAsync(TestGateway gateway)
    {
        using var response = await gateway.Admin.GetAsync("/readyz");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync());
    }

    private static JsonElement IssuerEntry(JsonDocument ready) =>
        ready.RootElement.GetProperty("issuers").EnumerateArray().Single(i => i.GetProperty("name").GetString() == "corp");

    private static async Task<long> IssuerCounterAsync(TestGateway gateway, string counter)
    {
        using var ready = await ReadyAsync(gateway);
        return IssuerEntry(ready).GetProperty(counter).GetInt64();
    }

    private static async Task WaitForKeysAsync(TestGateway gateway)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            using (var ready = await ReadyAsync(gateway))
            {
                if (IssuerEntry(ready).GetProperty("keys").GetString() == "available") return;
                Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(10), $"issuer keys not loaded after 10s: {ready.RootElement}\n{gateway.Logs}");
            }

            await Task.Delay(50);
        }
    }

    /// <summary>The provider's iss/aud/exp, a chosen kid and random signature bytes.</summary>
    private static string AssembleWithKid(TestIdentityProvider idp, string kid)
    {
        var header = JsonSerializer.Serialize(new Dictionary<string, object> { ["alg"] = "RS256", ["typ"] = "at+jwt", ["kid"] = kid });
        var payload = JsonSerializer.Serialize(idp.StandardClaims("orders-reader", "orders.read"));
        return Base64UrlEncoder.Encode(header) + "." + Base64UrlEncoder.Encode(payload) + "." + Base64UrlEncoder.Encode(RandomNumberGenerator.GetBytes(256));
    }
}
