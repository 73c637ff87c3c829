using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.IntegrationTests.Infrastructure.Identity;

namespace Portcullis.IntegrationTests.Upstream;

/// <summary>
/// Short-lived upstream credentials against the real OpenIddict provider: one token request for many proxied
/// requests, renewal before expiry under load, the cached token while the provider is down and 503 after
/// it expires, and private_key_jwt client authentication.
/// </summary>
public sealed class UpstreamCredentialsTests
{
    private static string Config(TestUpstream upstream, TestIdentityProvider provider, string authentication, string extra = "") => $$"""
        routes:
          - { name: orders, match: { pathPrefix: / }, cluster: orders }
        clusters:
          orders:
            destinations: ["{{upstream.Url}}"]
            credentials:
              clientCredentials:
                tokenUrl: {{provider.TokenEndpoint}}
                clientId: {{TestIdentityProvider.Reader.ClientId}}
                {{authentication}}
                scope: orders.read
        {{extra}}
        """;

    private static async Task<JsonElement> CredentialsAsync(TestGateway gateway)
    {
        var body = await gateway.Admin.GetFromJsonAsync<JsonElement>("/admin/upstream-credentials");
        return body.GetProperty("clusters")[0];
    }

    private static string? Bearer(UpstreamAnswer answer) => answer.Header("Authorization") is { } value && value.StartsWith("Bearer ", StringComparison.Ordinal) ? value[7..] : null;

    [Fact]
    public async Task Many_proxied_requests_share_one_token_and_the_clients_own_authorization_never_reaches_the_upstream()
    {
        await using var provider = await TestIdentityProvider.StartAsync();
        await using var upstream = await TestUpstream.StartAsync("orders");
        provider.ResetCounters();
        await using var gateway = await TestGateway.StartAsync(Config(upstream, provider, "clientSecretFile: client-secret"),
            new Dictionary<string, string> { ["client-secret"] = TestIdentityProvider.Reader.Secret + "\n" });

        var tokens = new ConcurrentBag<string>();
        await Parallel.ForEachAsync(Enumerable.Range(0, 40), new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (i, cancellationToken) =>
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/orders/" + i);
            request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", "the-clients-own-token");
            using var response = await gateway.Client.SendAsync(request, cancellationToken);
            var answer = await UpstreamAnswer.ReadAsync(response);
            tokens.Add(Bearer(answer) ?? "none");
        });

        Assert.Equal(1, provider.TokenRequests);
        var token = Assert.Single(tokens.Distinct());
        Assert.NotEqual("the-clients-own-token", token);
        var jwt = new JsonWebToken(token);
        Assert.Equal(TestIdentityProvider.Reader.ClientId, jwt.Subject);
        Assert.Contains("orders.read", jwt.GetClaim("scope").Value, StringComparison.Ordinal);

        var status = await CredentialsAsync(gateway);
        Assert.Equal("ok", status.GetProperty("state").GetString());
        Assert.Equal("client_secret_basic", status.GetProperty("authentication").GetString());
        Assert.Equal(1, status.GetProperty("tokenRequests").GetInt64());
        Assert.True(status.GetProperty("expiresAt").GetDateTimeOffset() > DateTimeOffset.UtcNow.AddMinutes(50));
        var admin = await gateway.Admin.GetStringAsync("/admin/upstream-credentials");
        Assert.DoesNotContain(token, admin, StringComparison.Ordinal);
        Assert.DoesNotContain(token, gateway.Logs.ToString(), StringComparison.Ordinal);
        Assert.DoesNotContain(TestIdentityProvider.Reader.Secret, gateway.Logs.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_short_lived_token_is_renewed_before_it_expires_and_no_request_fails()
    {
        await using var provider = await TestIdentityProvider.StartAsync();
        provider.AccessTokenLifetime = TimeSpan.FromSeconds(4);
        await using var upstream = await TestUpstream.StartAsync("orders");
        var expiredAtUpstream = 0;
        var seen = new ConcurrentDictionary<string, byte>();
        upstream.Handler = async context =>
        {
            var token = context.Request.Headers.Authorization.ToString()["Bearer ".Length..];
            seen.TryAdd(token, 0);
            if (new JsonWebToken(token).ValidTo < DateTime.UtcNow.AddMilliseconds(-250)) Interlocked.Increment(ref expiredAtUpstream);
            await context.Response.WriteAsync("ok");
        };
        await using var gateway = await TestGateway.StartAsync(Config(upstream, provider, "clientSecretEnv: READER_SECRET"),
            environment: name => name == "READER_SECRET" ? TestIdentityProvider.Reader.Secret : null);

        var failures = new ConcurrentQueue<string>();
        var successes = 0;
        var until = DateTime.UtcNow.AddSeconds(11);
        await Task.WhenAll(Enumerable.Range(0, 4).Select(async _ =>
        {
            while (DateTime.UtcNow < until)
            {
                using var response = await gateway.Client.GetAsync("/loop");
                if (response.StatusCode == HttpStatusCode.OK) Interlocked.Increment(ref successes);
                else failures.Enqueue($"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
                await Task.Delay(20);
            }
        }));

        Assert.True(failures.IsEmpty, $"{failures.Count} failed requests, e.g. {failures.FirstOrDefault()}\n{gateway.Logs}");
        Assert.True(successes > 100, $"only {successes} requests");
        Assert.Equal(0, expiredAtUpstream);
        // 11 s of 4 s tokens refreshed at 80 %: three or four renewals, never one per request.
        Assert.InRange(seen.Count, 3, 6);
        Assert.InRange(provider.TokenRequests, 3, 6);
    }

    [Fact]
    public async Task While_the_provider_is_down_the_cached_token_serves_until_it_expires_then_503_until_the_provider_is_back()
    {
        await using var provider = await TestIdentityProvider.StartAsync();
        provider.AccessTokenLifetime = TimeSpan.FromSeconds(4);
        await using var upstream = await TestUpstream.StartAsync("orders");
        await using var gateway = await TestGateway.StartAsync(Config(upstream, provider, "clientSecretFile: client-secret"),
            new Dictionary<string, string> { ["client-secret"] = TestIdentityProvider.Reader.Secret });

        var token = Bearer(await UpstreamAnswer.ReadAsync(await gateway.Client.GetAsync("/first")));
        Assert.NotNull(token);
        var expiresAt = (await CredentialsAsync(gateway)).GetProperty("expiresAt").GetDateTimeOffset();
        await provider.StopAsync();

        // Until the cached token expires, requests carry it; from then on they get 503 problem+json.
        DateTimeOffset? firstRefusal = null;
        while (firstRefusal is null)
        {
            using var response = await gateway.Client.GetAsync("/during");
            if (response.StatusCode == HttpStatusCode.OK)
            {
                Assert.Equal(token, Bearer(await UpstreamAnswer.ReadAsync(response)));
                Assert.True(DateTimeOffset.UtcNow < expiresAt.AddSeconds(1), "a request passed long after the token expired");
                continue;
            }

            firstRefusal = DateTimeOffset.UtcNow;
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
            var problem = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
            Assert.Equal("upstream.credentials-unavailable", problem.GetProperty("reason").GetString());
        }

        Assert.True(firstRefusal >= expiresAt.AddMilliseconds(-100), $"refused at {firstRefusal:O}, the token was valid until {expiresAt:O}");
        var status = await CredentialsAsync(gateway);
        Assert.Equal("expired", status.GetProperty("state").GetString());
        Assert.False(string.IsNullOrEmpty(status.GetProperty("lastError").GetString()));
        Assert.True(status.GetProperty("failures").GetInt64() >= 1);
        Assert.Contains(gateway.Logs.Lines, l => l.Contains("could not be fetched", StringComparison.Ordinal));

        // The provider returns: a background retry (backoff at most 30 s, here a few seconds) restores service.
        await provider.StartAgainAsync();
        var deadline = DateTime.UtcNow.AddSeconds(40);
        while (true)
        {
            using var response = await gateway.Client.GetAsync("/after");
            if (response.StatusCode == HttpStatusCode.OK) break;
            Assert.True(DateTime.UtcNow < deadline, "service never came back after the provider did:\n" + gateway.Logs);
            await Task.Delay(200);
        }

        Assert.Equal("ok", (await CredentialsAsync(gateway)).GetProperty("state").GetString());
    }

    [Fact]
    public async Task Private_key_jwt_client_authentication_gets_a_token_from_openiddict()
    {
        using var rsa = RSA.Create(2048);
        var publicKey = new RsaSecurityKey(rsa.ExportParameters(false)) { KeyId = "gateway-assertion-1" };
        var jwk = JsonWebKeyConverter.ConvertFromRSASecurityKey(publicKey);
        jwk.Use = "sig";
        jwk.Alg = SecurityAlgorithms.RsaSha256;
        var keys = new JsonWebKeySet();
        keys.Keys.Add(jwk);

        await using var provider = await TestIdentityProvider.StartAsync();
        var client = await provider.RegisterClientAsync(new TestIdentityClient("gateway-jwt", "", ["orders.read"], AssertionKeys: keys));
        await using var upstream = await TestUpstream.StartAsync("orders");
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: orders, match: { pathPrefix: / }, cluster: orders }
            clusters:
              orders:
                destinations: ["{{upstream.Url}}"]
                credentials:
                  clientCredentials:
                    tokenUrl: {{provider.TokenEndpoint}}
                    clientId: {{client.ClientId}}
                    privateKeyJwt: { keyFile: assertion.key, kid: gateway-assertion-1, algorithm: RS256, audience: "{{provider.Issuer}}" }
            """, new Dictionary<string, string> { ["assertion.key"] = rsa.ExportPkcs8PrivateKeyPem() });

        using var response = await gateway.Client.GetAsync("/orders");
        if (response.StatusCode != HttpStatusCode.OK)
        {
            Assert.Fail($"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}\ngateway:\n{gateway.Logs}\nprovider:\n{string.Join("\n", provider.Logs)}");
        }

        var token = new JsonWebToken(Bearer(await UpstreamAnswer.ReadAsync(response))!);
        Assert.Equal("gateway-jwt", token.Subject);
        Assert.Equal("private_key_jwt", (await CredentialsAsync(gateway)).GetProperty("authentication").GetString());
    }
}
