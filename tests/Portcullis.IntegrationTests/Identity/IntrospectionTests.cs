using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Http;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Identity;

/// <summary>
/// Opaque tokens checked by RFC 7662 introspection against the real OpenID Provider (OpenIddict reference
/// tokens): one call per token however many requests carry it, cached answers, revocation honoured within
/// the cache bound, negative caching, 503 when the provider cannot answer, and the usual authorization.
/// </summary>
public sealed class IntrospectionTests : IAsyncLifetime
{
    private const string SecretVariable = "IDP_INTROSPECTION_SECRET";
    private static readonly TimeSpan ShortCacheTtl = TimeSpan.FromSeconds(2);

    private TestIdentityProvider _idp = null!;
    private TestUpstream _upstream = null!;
    private TestGateway _gateway = null!;

    public async Task InitializeAsync()
    {
        _idp = await TestIdentityProvider.StartAsync("introspection-idp");
        _upstream = await TestUpstream.StartAsync("orders");
        var environment = new Dictionary<string, string> { [SecretVariable] = _idp.IntrospectionClientSecret };
        _gateway = await TestGateway.StartAsync($$"""
            identity:
              issuers:
                - name: idp-jwt
                  authority: {{_idp.Authority}}
                  audiences: [orders-api]
              introspection:
                - name: idp
                  endpoint: {{_idp.IntrospectionEndpoint}}
                  clientId: {{_idp.IntrospectionClientId}}
                  clientSecretEnv: {{SecretVariable}}
                  cacheTtl: 60s
                  negativeTtl: 10s
                  timeout: 5s
                  claims: { consumerGroup: tier }
                - name: idp-fast-timeout
                  endpoint: {{_idp.IntrospectionEndpoint}}
                  clientId: {{_idp.IntrospectionClientId}}
                  clientSecretEnv: {{SecretVariable}}
                  timeout: 1s
                - name: idp-short
                  endpoint: {{_idp.IntrospectionEndpoint}}
                  clientId: {{_idp.IntrospectionClientId}}
                  clientSecretFile: introspection-secret.txt
                  cacheTtl: {{(int)ShortCacheTtl.TotalSeconds}}s
                  negativeTtl: 10s
                - name: idp-wrong-secret
                  endpoint: {{_idp.IntrospectionEndpoint}}
                  clientId: {{_idp.IntrospectionClientId}}
                  clientSecretEnv: WRONG_SECRET
            routes:
              - name: orders
                match: { pathPrefix: /orders }
                auth: { introspection: [idp], scopes: [orders.read] }
                cluster: orders
              - name: fast-timeout
                match: { pathPrefix: /fast }
                auth: { introspection: [idp-fast-timeout] }
                cluster: orders
              - name: write
                match: { pathPrefix: /write }
                auth: { introspection: [idp], scopes: [orders.write] }
                cluster: orders
              - name: short
                match: { pathPrefix: /short }
                auth: { introspection: [idp-short] }
                cluster: orders
              - name: mixed
                match: { pathPrefix: /mixed }
                auth: { issuers: [idp-jwt], introspection: [idp] }
                cluster: orders
              - name: wrong
                match: { pathPrefix: /wrong }
                auth: { introspection: [idp-wrong-secret] }
                cluster: orders
            clusters:
              orders:
                destinations: [{{_upstream.Url}}]
            """,
            new Dictionary<string, string> { ["introspection-secret.txt"] = _idp.IntrospectionClientSecret + "\n" },
            name => environment.GetValueOrDefault(name) ?? (name == "WRONG_SECRET" ? "not-the-secret" : null));
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _upstream.DisposeAsync();
        await _idp.DisposeAsync();
    }

    private Task<string> OpaqueTokenAsync() => _idp.GetAccessTokenAsync(TestIdentityProvider.Opaque);

    private async Task<HttpResponseMessage> SendAsync(string path, string? token)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (token is not null) request.Headers.TryAddWithoutValidation("Authorization", "Bearer " + token);
        return await _gateway.Client.SendAsync(request);
    }

    private static async Task<string> AssertProblemAsync(HttpResponseMessage response, HttpStatusCode status, string reason)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(status == response.StatusCode, $"expected {(int)status}, got {(int)response.StatusCode}: {body}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Contains($"\"reason\":\"{reason}\"", body, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", body, StringComparison.Ordinal);
        return body;
    }

    [Fact]
    public async Task ConcurrentRequests_WithOneOpaqueToken_ShareOneIntrospectionCall_ThenHitTheCache()
    {
        var token = await OpaqueTokenAsync();
        Assert.Equal(0, token.Count(c => c == '.'));
        _idp.ResetCounters();

        // A slow provider, so the 50 requests really overlap while the one call is in flight.
        _idp.ResponseDelay = TimeSpan.FromMilliseconds(300);
        using var start = new ManualResetEventSlim();
        var requests = Enumerable.Range(0, 50).Select(_ => Task.Run(async () =>
        {
            start.Wait();
            return await SendAsync("/orders/1", token);
        })).ToArray();
        start.Set();
        var responses = await Task.WhenAll(requests);
        _idp.ResponseDelay = TimeSpan.Zero;

        try
        {
            foreach (var response in responses)
            {
                var seen = await UpstreamAnswer.ReadAsync(response);
                Assert.Equal("orders-opaque", seen.Header("X-Consumer-Id"));
                Assert.Equal("orders-opaque", seen.Header("X-Subject"));
                Assert.Equal("premium", seen.Header("X-Consumer-Group"));
                Assert.Equal("users", seen.Header("X-Groups"));
                Assert.Equal("orders.read", seen.Header("X-Scopes"));
                Assert.Null(seen.Header("Authorization"));
            }
        }
        finally
        {
            foreach (var response in responses) response.Dispose();
        }

        Assert.Equal(1, _idp.IntrospectionRequests);

        for (var i = 0; i < 20; i++)
        {
            using var response = await SendAsync("/orders/" + i, token);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(1, _idp.IntrospectionRequests);
        Assert.Equal(70, _upstream.Requests);
    }

    [Fact]
    public async Task RevokedToken_IsAcceptedUntilTheCacheTtlBound_ThenRejected()
    {
        var token = await OpaqueTokenAsync();
        _idp.ResetCounters();

        var clock = Stopwatch.StartNew();
        using (var first = await SendAsync("/short/1", token))
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        }

        Assert.Equal(1, _idp.IntrospectionRequests);
        await _idp.RevokeAsync(token);
        Assert.False((await _idp.IntrospectAsync(token)).GetProperty("active").GetBoolean());
        _idp.ResetCounters();

        // The cached active answer keeps serving (no call to the provider)…
        using (var cached = await SendAsync("/short/2", token))
        {
            Assert.Equal(HttpStatusCode.OK, cached.StatusCode);
        }

        Assert.Equal(0, _idp.IntrospectionRequests);

        // …until cacheTtl after the first call, and not one request longer than that bound (plus a margin).
        TimeSpan? rejectedAt = null;
        var lastAccepted = TimeSpan.Zero;
        while (clock.Elapsed < ShortCacheTtl + TimeSpan.FromSeconds(5))
        {
            using var response = await SendAsync("/short/3", token);
            if (response.StatusCode == HttpStatusCode.OK)
            {
                lastAccepted = clock.Elapsed;
                await Task.Delay(50);
                continue;
            }

            rejectedAt = clock.Elapsed;
            await AssertProblemAsync(response, HttpStatusCode.Unauthorized, "introspection.inactive");
            Assert.Contains("error=\"invalid_token\"", response.Headers.WwwAuthenticate.ToString(), StringComparison.Ordinal);
            break;
        }

        Assert.NotNull(rejectedAt);
        // Margin: the first request's own latency (it made the introspection call) plus polling.
        Assert.True(rejectedAt <= ShortCacheTtl + TimeSpan.FromSeconds(1.5), $"revoked token still accepted {rejectedAt} after the first call (cacheTtl {ShortCacheTtl}; last accepted at {lastAccepted})");
        Assert.True(rejectedAt >= ShortCacheTtl - TimeSpan.FromMilliseconds(100), $"rejected at {rejectedAt}, before the cache bound: the cached answer was not used");
        Assert.Equal(1, _idp.IntrospectionRequests);

        // The inactive answer is now negatively cached.
        for (var i = 0; i < 5; i++)
        {
            using var response = await SendAsync("/short/4", token);
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        }

        Assert.Equal(1, _idp.IntrospectionRequests);
    }

    [Fact]
    public async Task InvalidToken_IsNegativelyCached()
    {
        var bogus = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        _idp.ResetCounters();

        for (var i = 0; i < 20; i++)
        {
            using var response = await SendAsync("/orders/1", bogus);
            await AssertProblemAsync(response, HttpStatusCode.Unauthorized, "introspection.inactive");
            Assert.Contains("error=\"invalid_token\"", response.Headers.WwwAuthenticate.ToString(), StringComparison.Ordinal);
        }

        Assert.InRange(_idp.IntrospectionRequests, 1, 2);
        Assert.Equal(0, _upstream.Requests);
    }

    [Fact]
    public async Task MalformedOpaqueToken_IsRefusedWithoutCallingTheProvider()
    {
        _idp.ResetCounters();
        using var response = await SendAsync("/orders/1", "not a token!");
        await AssertProblemAsync(response, HttpStatusCode.Unauthorized, "introspection.malformed");
        Assert.Equal(0, _idp.IntrospectionRequests);
    }

    [Fact]
    public async Task ProviderDown_Is503ProblemJson_AndRecoversWhenItReturns()
    {
        var token = await OpaqueTokenAsync();
        await _idp.StopAsync();

        using (var response = await SendAsync("/orders/1", token))
        {
            await AssertProblemAsync(response, HttpStatusCode.ServiceUnavailable, "introspection.unavailable");
            Assert.NotNull(response.Headers.RetryAfter);
        }

        Assert.Equal(0, _upstream.Requests);

        // Failures are never cached: once the provider is back, the same token passes.
        await _idp.StartAgainAsync();
        using (var response = await SendAsync("/orders/1", token))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
    }

    [Fact]
    public async Task SlowProvider_TimesOut_With503()
    {
        var token = await OpaqueTokenAsync();
        _idp.ResponseDelay = TimeSpan.FromSeconds(3);
        var clock = Stopwatch.StartNew();
        using (var response = await SendAsync("/fast/1", token))
        {
            await AssertProblemAsync(response, HttpStatusCode.ServiceUnavailable, "introspection.unavailable");
        }

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2.5), $"answered after {clock.Elapsed}; timeout is 1s");
        _idp.ResponseDelay = TimeSpan.Zero;
    }

    [Fact]
    public async Task ProviderAnsweringGarbage_Is503()
    {
        var token = await OpaqueTokenAsync();
        _idp.Intercept = async context =>
        {
            if (context.Request.Path != TestIdentityProvider.IntrospectionPath) return false;
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync("{\"active\":\"yes\"");
            return true;
        };

        using var response = await SendAsync("/orders/1", token);
        await AssertProblemAsync(response, HttpStatusCode.ServiceUnavailable, "introspection.unavailable");
        _idp.Intercept = null;
    }

    [Fact]
    public async Task WrongClientSecret_AtTheEndpoint_Is503_NotAnInactiveToken()
    {
        var token = await OpaqueTokenAsync();
        _idp.ResetCounters();
        using var response = await SendAsync("/wrong/1", token);
        await AssertProblemAsync(response, HttpStatusCode.ServiceUnavailable, "introspection.unavailable");
        Assert.Equal(1, _idp.IntrospectionRequests);
    }

    [Fact]
    public async Task MissingScope_Is403InsufficientScope()
    {
        var token = await OpaqueTokenAsync();
        using var response = await SendAsync("/write/1", token);
        await AssertProblemAsync(response, HttpStatusCode.Forbidden, "authz.scope");
        Assert.Contains("error=\"insufficient_scope\"", response.Headers.WwwAuthenticate.ToString(), StringComparison.Ordinal);
        Assert.Contains("scope=\"orders.write\"", response.Headers.WwwAuthenticate.ToString(), StringComparison.Ordinal);
        Assert.Equal(0, _upstream.Requests);
    }

    [Fact]
    public async Task MixedRoute_SendsJwtsToTheIssuer_AndOpaqueTokensToIntrospection()
    {
        var jwt = await _idp.GetAccessTokenAsync(TestIdentityProvider.Reader);
        var opaque = await OpaqueTokenAsync();
        _idp.ResetCounters();

        // The issuer's keys may still be loading right after start.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        HttpResponseMessage response;
        while ((response = await SendAsync("/mixed/1", jwt)).StatusCode == HttpStatusCode.ServiceUnavailable && DateTime.UtcNow < deadline)
        {
            response.Dispose();
            await Task.Delay(100);
        }

        using (response)
        {
            var seen = await UpstreamAnswer.ReadAsync(response);
            Assert.Equal("orders-reader", seen.Header("X-Subject"));
        }

        Assert.Equal(0, _idp.IntrospectionRequests);

        using (var opaqueResponse = await SendAsync("/mixed/2", opaque))
        {
            var seen = await UpstreamAnswer.ReadAsync(opaqueResponse);
            Assert.Equal("orders-opaque", seen.Header("X-Subject"));
        }

        Assert.Equal(1, _idp.IntrospectionRequests);
    }
}
