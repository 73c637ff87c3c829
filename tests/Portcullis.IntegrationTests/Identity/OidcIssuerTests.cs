using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Identity;

/// <summary>
/// Issuers configured by OIDC discovery (<c>authority:</c>) against the real test OpenID Provider
/// (OpenIddict on Kestrel): tokens from two providers, claim mapping and scopes, consumer-group routing
/// through a map, key rotation, an unknown-kid flood, a provider going away (stale window, fail closed,
/// recovery), a provider down at start-up, and ID tokens refused where access tokens are required.
/// Everything runs on real sockets and in real time, with short key intervals and polling deadlines.
/// </summary>
public sealed class OidcIssuerTests
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(100);

    [Fact]
    public async Task Tokens_from_two_providers_pass_one_route_claims_are_mapped_and_scopes_enforced()
    {
        await using var a = await TestIdentityProvider.StartAsync("idp-a");
        await using var b = await TestIdentityProvider.StartAsync("idp-b");
        await using var upstream = await TestUpstream.StartAsync("orders");
        await using var gateway = await TestGateway.StartAsync($$"""
            identity:
              issuers:
                - name: a
                  authority: {{a.Authority}}
                  audiences: [orders-api]
                  claims: { consumerGroup: tier }
                - name: b
                  authority: {{b.Authority}}
                  audiences: [orders-api]
                  claims: { consumerGroup: tier }
            routes:
              - name: both
                match: { pathPrefix: /both }
                auth: { issuers: [a, b], scopes: [orders.read] }
                cluster: orders
              - name: only-a
                match: { pathPrefix: /only-a }
                auth: { issuers: [a] }
                cluster: orders
              - name: manage
                match: { pathPrefix: /manage }
                auth: { issuers: [a, b], scopes: [orders.admin] }
                cluster: orders
            clusters:
              orders:
                destinations: [{{upstream.Url}}]
            """);
        await WaitForKeysAsync(gateway, "a", "b");

        var readerFromA = await a.GetAccessTokenAsync(TestIdentityProvider.Reader);
        var adminFromB = await b.GetAccessTokenAsync(TestIdentityProvider.Admin);

        // Reader from provider a: tier basic, groups [users], scope orders.read.
        using (var response = await SendAsync(gateway, "/both/1", readerFromA))
        {
            var seen = await UpstreamAnswer.ReadAsync(response);
            Assert.Equal("orders-reader", seen.Header("X-Consumer-Id"));
            Assert.Equal("orders-reader", seen.Header("X-Subject"));
            Assert.Equal("basic", seen.Header("X-Consumer-Group"));
            Assert.Equal("users", seen.Header("X-Groups"));
            Assert.Equal("orders.read", seen.Header("X-Scopes"));
            Assert.Null(seen.Header("Authorization"));
        }

        // Admin from provider b, on the same route: tier premium, groups [admins, users]. Spoofed copies go.
        using (var response = await SendAsync(gateway, "/both/1", adminFromB, r =>
               {
                   r.Headers.TryAddWithoutValidation("X-Consumer-Group", "platinum");
                   r.Headers.TryAddWithoutValidation("X-Groups", "root");
               }))
        {
            var seen = await UpstreamAnswer.ReadAsync(response);
            Assert.Equal("orders-admin", seen.Header("X-Consumer-Id"));
            Assert.Equal("premium", seen.Header("X-Consumer-Group"));
            Assert.Equal("admins,users", seen.Header("X-Groups"));
            Assert.Equal("orders.admin orders.read orders.write", seen.Header("X-Scopes"));
        }

        // A route that trusts only a: a's token passes, b's (valid, signed by b's real key) does not.
        using (var response = await SendAsync(gateway, "/only-a/1", readerFromA))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        await AssertProblemAsync(await SendAsync(gateway, "/only-a/1", adminFromB), HttpStatusCode.Unauthorized, "jwt.issuer");

        // Scopes: orders.admin needed. The reader lacks it; the admin has it; the admin's token
        // down-scoped at the provider to orders.read lacks it too (the token decides, not the client).
        using (var response = await SendAsync(gateway, "/manage/1", readerFromA))
        {
            Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
            var challenge = response.Headers.WwwAuthenticate.ToString();
            Assert.Contains("error=\"insufficient_scope\"", challenge, StringComparison.Ordinal);
            Assert.Contains("scope=\"orders.admin\"", challenge, StringComparison.Ordinal);
            await AssertProblemAsync(response, HttpStatusCode.Forbidden, "authz.scope");
        }

        using (var response = await SendAsync(gateway, "/manage/1", adminFromB))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        var downScoped = await b.GetAccessTokenAsync(TestIdentityProvider.Admin, "orders.read");
        await AssertProblemAsync(await SendAsync(gateway, "/manage/1", downScoped), HttpStatusCode.Forbidden, "authz.scope");
    }

    [Fact]
    public async Task Consumer_group_from_the_token_chooses_the_cluster_through_a_map()
    {
        await using var idp = await TestIdentityProvider.StartAsync("idp-tiers");
        await using var premium = await TestUpstream.StartAsync("premium");
        await using var basic = await TestUpstream.StartAsync("basic");
        await using var gateway = await TestGateway.StartAsync($$"""
            identity:
              issuers:
                - name: corp
                  authority: {{idp.Authority}}
                  audiences: [orders-api]
                  claims: { consumerGroup: tier }
            maps:
              tiers:
                entries:
                  premium: cluster-premium
                default: cluster-basic
            routes:
              - name: orders
                match: { pathPrefix: /orders }
                auth: { issuers: [corp] }
                cluster: "${map:tiers(consumerGroup)}"
            clusters:
              cluster-premium:
                destinations: [{{premium.Url}}]
              cluster-basic:
                destinations: [{{basic.Url}}]
            """);
        await WaitForKeysAsync(gateway, "corp");

        var admin = await idp.GetAccessTokenAsync(TestIdentityProvider.Admin);
        var reader = await idp.GetAccessTokenAsync(TestIdentityProvider.Reader);

        for (var i = 0; i < 3; i++)
        {
            using (var response = await SendAsync(gateway, "/orders/1", admin))
            {
                var seen = await UpstreamAnswer.ReadAsync(response);
                Assert.Equal("premium", seen.Server);
                Assert.Equal("premium", seen.Header("X-Consumer-Group"));
            }

            // A reader claiming premium in a header still lands on the basic cluster: the map reads the token.
            using (var response = await SendAsync(gateway, "/orders/1", reader, r => r.Headers.TryAddWithoutValidation("X-Consumer-Group", "premium")))
            {
                var seen = await UpstreamAnswer.ReadAsync(response);
                Assert.Equal("basic", seen.Server);
                Assert.Equal("basic", seen.Header("X-Consumer-Group"));
            }
        }

        Assert.Equal(3, premium.Requests);
        Assert.Equal(3, basic.Requests);

        // Without a token the request never reaches either cluster.
        await AssertProblemAsync(await SendAsync(gateway, "/orders/1", null), HttpStatusCode.Unauthorized, "auth.missing", tokenPresented: false);
        Assert.Equal(3, premium.Requests);
        Assert.Equal(3, basic.Requests);
    }

    [Fact]
    public async Task Key_rotated_at_the_provider_is_picked_up_without_restart_and_a_removed_key_stops_verifying()
    {
        await using var idp = await TestIdentityProvider.StartAsync("idp-rotate");
        await using var upstream = await TestUpstream.StartAsync("orders");
        await using var gateway = await TestGateway.StartAsync(IssuerRouteConfig.Orders(idp.Authority, upstream.Url, "{ unknownKidRefreshInterval: 1s }"));
        await WaitForKeysAsync(gateway, "corp");
        var generation = gateway.Generation;

        var oldKid = idp.ActiveKeyId;
        var oldToken = await idp.GetAccessTokenAsync(TestIdentityProvider.Reader);
        await AssertStatusAsync(gateway, "/orders/1", oldToken, HttpStatusCode.OK);

        var newKid = await idp.RotateSigningKeyAsync();
        var newToken = await idp.GetAccessTokenAsync(TestIdentityProvider.Reader);
        Assert.Equal(newKid, new JsonWebToken(newToken).Kid);
        var jwksBefore = idp.JwksRequests;

        // The gateway has never seen the new kid: the first request waits for one refresh and passes,
        // without any restart or reload (issue 13, point 13: it used to be refused while the refresh ran).
        await AssertStatusAsync(gateway, "/orders/1", newToken, HttpStatusCode.OK);
        Assert.Equal(generation, gateway.Generation);
        var refreshes = idp.JwksRequests - jwksBefore;
        Assert.Equal(1, refreshes);

        // The old key is still published (overlap): its tokens, cached or new, keep passing.
        await AssertStatusAsync(gateway, "/orders/1", oldToken, HttpStatusCode.OK);
        var oldKeyToken = idp.SignToken(idp.StandardClaims("orders-reader", "orders.read"), keyId: oldKid);
        await AssertStatusAsync(gateway, "/orders/1", oldKeyToken, HttpStatusCode.OK);

        // The provider drops the old key. Once the gateway refreshes (here: provoked by a token with a
        // kid it does not know, after the 1s throttle), tokens signed by the old key no longer pass —
        // including ones the validated-token cache remembers.
        await idp.RemoveOldKeysAsync();
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            using var probe = await SendAsync(gateway, "/orders/1", AssembleWithKid(idp, RandomKid()));
            Assert.Equal(HttpStatusCode.Unauthorized, probe.StatusCode);
            using var response = await SendAsync(gateway, "/orders/1", oldToken);
            if (response.StatusCode == HttpStatusCode.Unauthorized)
            {
                await AssertProblemAsync(response, HttpStatusCode.Unauthorized, "jwt.unknown-kid");
                break;
            }

            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(10), "the removed key still verifies tokens 10s after removal");
            await Task.Delay(PollInterval);
        }

        await AssertProblemAsync(await SendAsync(gateway, "/orders/1", oldKeyToken), HttpStatusCode.Unauthorized, "jwt.unknown-kid");
        await AssertStatusAsync(gateway, "/orders/1", newToken, HttpStatusCode.OK);
    }

    [Fact]
    public async Task Unknown_kid_flood_of_500_requests_causes_at_most_one_jwks_fetch()
    {
        await using var idp = await TestIdentityProvider.StartAsync("idp-flood");
        await using var upstream = await TestUpstream.StartAsync("orders");
        await using var gateway = await TestGateway.StartAsync(IssuerRouteConfig.Orders(idp.Authority, upstream.Url, "{ unknownKidRefreshInterval: 30s }"));
        await WaitForKeysAsync(gateway, "corp");
        await AssertStatusAsync(gateway, "/orders/1", await idp.GetAccessTokenAsync(TestIdentityProvider.Reader), HttpStatusCode.OK);

        // 500 tokens as an attacker makes them: the provider's iss and aud, each naming a random kid, with a
        // signature of random bytes (no RSA work on our side; the gateway must not need any on its side).
        var tokens = Enumerable.Range(0, 500).Select(_ => AssembleWithKid(idp, RandomKid())).ToArray();
        var jwksBefore = idp.JwksRequests;
        var discoveryBefore = idp.DiscoveryRequests;
        var upstreamBefore = upstream.Requests;

        var results = new (HttpStatusCode Status, string? Reason, string Challenge)[tokens.Length];
        var flood = Stopwatch.StartNew();
        await Parallel.ForEachAsync(Enumerable.Range(0, tokens.Length), new ParallelOptions { MaxDegreeOfParallelism = 32 }, async (i, _) =>
        {
            using var response = await SendAsync(gateway, "/orders/1", tokens[i]);
            results[i] = (response.StatusCode, await ReasonAsync(response), response.Headers.WwwAuthenticate.ToString());
        });
        flood.Stop();
        Assert.True(flood.Elapsed < TimeSpan.FromSeconds(30), $"the flood took {flood.Elapsed}, longer than the 30s refresh throttle");

        Assert.All(results, r =>
        {
            Assert.Equal(HttpStatusCode.Unauthorized, r.Status);
            Assert.Equal("jwt.unknown-kid", r.Reason);
            Assert.Contains("error=\"invalid_token\"", r.Challenge, StringComparison.Ordinal);
        });
        Assert.Equal(upstreamBefore, upstream.Requests);

        // Let a refresh still in flight land before counting at the provider.
        await Task.Delay(500);
        Assert.InRange(idp.JwksRequests - jwksBefore, 0, 1);
        Assert.InRange(idp.DiscoveryRequests - discoveryBefore, 0, 1);

        // The keys are intact: a genuine, never-seen token still passes.
        await AssertStatusAsync(gateway, "/orders/1", await idp.GetAccessTokenAsync(TestIdentityProvider.Admin), HttpStatusCode.OK);
    }

    [Fact]
    public async Task Provider_stopped_keys_serve_inside_the_stale_window_then_fail_closed_then_recover()
    {
        await using var idp = await TestIdentityProvider.StartAsync("idp-stale");
        await using var upstream = await TestUpstream.StartAsync("orders");
        await using var gateway = await TestGateway.StartAsync(IssuerRouteConfig.Orders(idp.Authority, upstream.Url, "{ refreshInterval: 1s, staleFor: 6s, timeout: 1s }"));
        await WaitForKeysAsync(gateway, "corp");

        // Real tokens from the token endpoint, minted before the stop; each is sent once at most, so the
        // validated-token cache is never what lets a request through.
        var minted = await Task.WhenAll(Enumerable.Range(0, 160).Select(_ => idp.GetAccessTokenAsync(TestIdentityProvider.Reader)));
        var pool = new Queue<string>(minted.Distinct());
        Assert.Equal(160, pool.Count);
        var usedBeforeStop = pool.Dequeue();
        await AssertStatusAsync(gateway, "/orders/1", usedBeforeStop, HttpStatusCode.OK);
        var failuresBefore = await IssuerFailuresAsync(gateway, "corp");

        await idp.StopAsync();
        var down = Stopwatch.StartNew();

        // Inside the stale window: last fetch + refreshInterval 1s + staleFor 6s. On a loaded machine the last refresh
        // may have run seconds late, so only the first 2.2 s after the stop are surely inside it (the window's exact
        // arithmetic is covered with fake time in the unit tests).
        var passedWhileDown = 0;
        while (down.Elapsed < TimeSpan.FromSeconds(2.2))
        {
            await AssertStatusAsync(gateway, "/orders/1", pool.Dequeue(), HttpStatusCode.OK);
            passedWhileDown++;
            await Task.Delay(PollInterval);
        }

        Assert.True(passedWhileDown >= 5, $"only {passedWhileDown} requests inside the stale window");
        Assert.True(await IssuerFailuresAsync(gateway, "corp") > failuresBefore, "the gateway should have tried (and failed) to refresh while the provider was down");

        // After it: fail closed, 503 problem+json, for new tokens and remembered ones alike.
        TimeSpan failedClosedAt;
        while (true)
        {
            Assert.True(down.Elapsed < TimeSpan.FromSeconds(12), "still accepting tokens 12s after the provider stopped (staleFor 6s)");
            Assert.True(pool.Count > 0, "ran out of minted tokens");
            using var response = await SendAsync(gateway, "/orders/1", pool.Dequeue());
            if (response.StatusCode == HttpStatusCode.OK)
            {
                await Task.Delay(PollInterval);
                continue;
            }

            failedClosedAt = down.Elapsed;
            await AssertProblemAsync(response, HttpStatusCode.ServiceUnavailable, "jwt.keys-expired");
            Assert.NotNull(response.Headers.RetryAfter);
            break;
        }

        Assert.True(failedClosedAt >= TimeSpan.FromSeconds(2.2), $"failed closed {failedClosedAt} after the stop, inside the stale window (staleFor 6s)");
        await AssertProblemAsync(await SendAsync(gateway, "/orders/1", usedBeforeStop), HttpStatusCode.ServiceUnavailable, "jwt.keys-expired");
        using (var ready = await ReadyAsync(gateway))
        {
            Assert.Equal("degraded", ready.RootElement.GetProperty("status").GetString());
            Assert.StartsWith("expired", IssuerEntry(ready, "corp").GetProperty("keys").GetString(), StringComparison.Ordinal);
        }

        // The provider returns on the same port: the background retry picks its keys up again.
        await idp.StartAgainAsync();
        await PollUntilStatusAsync(gateway, "/orders/1", () => pool.Count > 0 ? pool.Dequeue() : throw new InvalidOperationException("ran out of minted tokens"),
            HttpStatusCode.OK, TimeSpan.FromSeconds(10), "a token after the provider came back");
        await AssertStatusAsync(gateway, "/orders/1", await idp.GetAccessTokenAsync(TestIdentityProvider.Admin), HttpStatusCode.OK);
        await AssertStatusAsync(gateway, "/orders/1", usedBeforeStop, HttpStatusCode.OK);
        using (var ready = await ReadyAsync(gateway))
        {
            Assert.Equal("ready", ready.RootElement.GetProperty("status").GetString());
        }
    }

    [Fact]
    public async Task Failing_provider_is_retried_at_a_bounded_rate_not_a_growing_one()
    {
        await using var idp = await TestIdentityProvider.StartAsync("idp-failing");
        await using var upstream = await TestUpstream.StartAsync("orders");
        await using var gateway = await TestGateway.StartAsync(IssuerRouteConfig.Orders(idp.Authority, upstream.Url, "{ refreshInterval: 2s, unknownKidRefreshInterval: 200ms, staleFor: 1h, timeout: 1s }"));
        await WaitForKeysAsync(gateway, "corp");
        var token = await idp.GetAccessTokenAsync(TestIdentityProvider.Reader);

        // The provider answers, but discovery fails fast with 500 (every attempt still reaches it and is counted).
        idp.Intercept = async context =>
        {
            if (context.Request.Path != TestIdentityProvider.DiscoveryPath) return false;
            context.Response.StatusCode = 500;
            await context.Response.WriteAsync("down for maintenance");
            return true;
        };

        // Unknown kids for 2s provoke a failed refresh every ~250ms, each asking for a retry.
        var provoking = Stopwatch.StartNew();
        while (provoking.Elapsed < TimeSpan.FromSeconds(2))
        {
            await AssertProblemAsync(await SendAsync(gateway, "/orders/1", AssembleWithKid(idp, RandomKid())), HttpStatusCode.Unauthorized, "jwt.unknown-kid");
            await Task.Delay(250);
        }

        // Then, left alone for two refresh intervals, the gateway tries the provider about once per interval
        // (the timer plus at most one pending retry) — not once per failure it ever had, forever (that would be
        // ~8 retries 200 ms apart). Two intervals, not one: a tick due at the end of a single 2 s window can land
        // just after it on a loaded machine (a CI run counted 0).
        var before = idp.DiscoveryRequests;
        await Task.Delay(TimeSpan.FromSeconds(4));
        var attempts = idp.DiscoveryRequests - before;
        Assert.InRange(attempts, 1, 5);

        // Stale keys kept serving meanwhile; once the provider recovers a fetch succeeds again.
        await AssertStatusAsync(gateway, "/orders/1", token, HttpStatusCode.OK);
        var fetchesBefore = await IssuerCounterAsync(gateway, "corp", "fetches");
        idp.Intercept = null;
        var recovery = Stopwatch.StartNew();
        while (await IssuerCounterAsync(gateway, "corp", "fetches") == fetchesBefore)
        {
            Assert.True(recovery.Elapsed < TimeSpan.FromSeconds(8), "no successful fetch 8s after the provider recovered");
            await Task.Delay(PollInterval);
        }
    }

    [Fact]
    public async Task Reload_changing_only_key_timings_keeps_the_keys_while_the_provider_is_down()
    {
        await using var idp = await TestIdentityProvider.StartAsync("idp-reload");
        await using var upstream = await TestUpstream.StartAsync("orders");
        string Config(string staleFor) => IssuerRouteConfig.Orders(idp.Authority, upstream.Url, $"{{ staleFor: {staleFor}, timeout: 1s }}");
        await using var gateway = await TestGateway.StartAsync(Config("1h"));
        await WaitForKeysAsync(gateway, "corp");
        var tokens = await Task.WhenAll(Enumerable.Range(0, 3).Select(_ => idp.GetAccessTokenAsync(TestIdentityProvider.Reader)));
        await AssertStatusAsync(gateway, "/orders/1", tokens[0], HttpStatusCode.OK);

        await idp.StopAsync();
        var generation = gateway.Generation;
        await gateway.WriteConfigAsync(Config("2h"));
        await gateway.WaitForGenerationAsync(generation);

        // The issuer's key cache was rebuilt for the new timings, but the keys it had still serve
        // (a cache starting empty would answer 503 jwt.keys-loading until the provider returns).
        await AssertStatusAsync(gateway, "/orders/1", tokens[1], HttpStatusCode.OK);
        using (var ready = await ReadyAsync(gateway))
        {
            Assert.Equal("available", IssuerEntry(ready, "corp").GetProperty("keys").GetString());
        }

        await idp.StartAgainAsync();
        await AssertStatusAsync(gateway, "/orders/1", tokens[2], HttpStatusCode.OK);
    }

    [Fact]
    public async Task Issuer_unreachable_at_start_up_its_routes_answer_503_others_work_and_it_recovers_without_restart()
    {
        await using var up = await TestIdentityProvider.StartAsync("idp-up");
        await using var down = await TestIdentityProvider.StartAsync("idp-down");
        var downToken = await down.GetAccessTokenAsync(TestIdentityProvider.Reader);
        await down.StopAsync();

        await using var upstream = await TestUpstream.StartAsync("orders");
        await using var gateway = await TestGateway.StartAsync($$"""
            identity:
              issuers:
                - name: up
                  authority: {{up.Authority}}
                  audiences: [orders-api]
                - name: down
                  authority: {{down.Authority}}
                  audiences: [orders-api]
                  keys: { refreshInterval: 1s, timeout: 1s }
            routes:
              - name: public
                match: { pathPrefix: /public }
                cluster: orders
              - name: up
                match: { pathPrefix: /up }
                auth: { issuers: [up] }
                cluster: orders
              - name: down
                match: { pathPrefix: /down }
                auth: { issuers: [down] }
                cluster: orders
            clusters:
              orders:
                destinations: [{{upstream.Url}}]
            """);

        // The gateway started. The issuer without keys makes its routes answer 503 (not 401: the token
        // may well be good), problem+json with a reason, and nothing reaches the upstream.
        using (var response = await SendAsync(gateway, "/down/1", downToken))
        {
            await AssertProblemAsync(response, HttpStatusCode.ServiceUnavailable, "jwt.keys-loading");
            Assert.NotNull(response.Headers.RetryAfter);
        }

        Assert.Equal(0, upstream.Requests);

        // Other routes work.
        await AssertStatusAsync(gateway, "/public/1", null, HttpStatusCode.OK);
        var upToken = await up.GetAccessTokenAsync(TestIdentityProvider.Reader);
        await PollUntilStatusAsync(gateway, "/up/1", () => upToken, HttpStatusCode.OK, TimeSpan.FromSeconds(10), "the reachable issuer's route");

        // /readyz: still ready to serve (200) but degraded, naming the issuer and why.
        using (var response = await gateway.Admin.GetAsync("/readyz"))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            using var ready = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            Assert.Equal("degraded", ready.RootElement.GetProperty("status").GetString());
            Assert.StartsWith("not loaded", IssuerEntry(ready, "down").GetProperty("keys").GetString(), StringComparison.Ordinal);
            Assert.True(IssuerEntry(ready, "down").GetProperty("failures").GetInt64() >= 1);
            Assert.Equal("available", IssuerEntry(ready, "up").GetProperty("keys").GetString());
        }

        await AssertProblemAsync(await SendAsync(gateway, "/down/1", downToken), HttpStatusCode.ServiceUnavailable, "jwt.keys-loading");

        // The provider comes up: the route works, no restart, no reload.
        var generation = gateway.Generation;
        await down.StartAgainAsync();
        await PollUntilStatusAsync(gateway, "/down/1", () => downToken, HttpStatusCode.OK, TimeSpan.FromSeconds(10), "the late issuer's route");
        Assert.Equal(generation, gateway.Generation);
        await AssertProblemAsync(await SendAsync(gateway, "/down/1", upToken), HttpStatusCode.Unauthorized, "jwt.issuer");
        using (var ready = await ReadyAsync(gateway))
        {
            Assert.Equal("ready", ready.RootElement.GetProperty("status").GetString());
            Assert.Equal("available", IssuerEntry(ready, "down").GetProperty("keys").GetString());
        }
    }

    [Fact]
    public async Task Id_token_is_refused_where_access_tokens_are_required_and_an_access_token_passes()
    {
        await using var idp = await TestIdentityProvider.StartAsync("idp-types");
        await using var upstream = await TestUpstream.StartAsync("orders");

        // Both issuers trust the same provider and accept the ID token's audience (the client id), so the
        // only difference between them is requireAccessTokenType.
        await using var gateway = await TestGateway.StartAsync($$"""
            identity:
              issuers:
                - name: strict
                  authority: {{idp.Authority}}
                  audiences: [orders-api, {{TestIdentityProvider.Reader.ClientId}}]
                  requireAccessTokenType: true
                - name: lax
                  authority: {{idp.Authority}}
                  audiences: [orders-api, {{TestIdentityProvider.Reader.ClientId}}]
            routes:
              - name: strict
                match: { pathPrefix: /strict }
                auth: { issuers: [strict] }
                cluster: orders
              - name: lax
                match: { pathPrefix: /lax }
                auth: { issuers: [lax] }
                cluster: orders
            clusters:
              orders:
                destinations: [{{upstream.Url}}]
            """);
        await WaitForKeysAsync(gateway, "strict", "lax");

        var idToken = await idp.GetIdTokenAsync();
        Assert.NotEqual("at+jwt", new JsonWebToken(idToken).Typ);
        var accessToken = await idp.GetAccessTokenAsync(TestIdentityProvider.Reader);
        Assert.Equal("at+jwt", new JsonWebToken(accessToken).Typ);

        // The ID token is genuine (signature, iss, aud, exp all fine): the lax issuer takes it…
        using (var response = await SendAsync(gateway, "/lax/1", idToken))
        {
            var seen = await UpstreamAnswer.ReadAsync(response);
            Assert.Equal("alice", seen.Header("X-Subject"));
        }

        // …the strict one refuses it for its type, even right after the lax route remembered it.
        await AssertProblemAsync(await SendAsync(gateway, "/strict/1", idToken), HttpStatusCode.Unauthorized, "jwt.type");

        // A token with access-token claims but typ JWT is refused too; a real at+jwt access token passes.
        var plainJwt = idp.SignToken(idp.StandardClaims("orders-reader", "orders.read"), type: "JWT");
        await AssertProblemAsync(await SendAsync(gateway, "/strict/1", plainJwt), HttpStatusCode.Unauthorized, "jwt.type");
        await AssertStatusAsync(gateway, "/strict/1", accessToken, HttpStatusCode.OK);
        await AssertStatusAsync(gateway, "/lax/1", accessToken, HttpStatusCode.OK);
    }

    private static async Task<HttpResponseMessage> SendAsync(TestGateway gateway, string path, string? token, Action<HttpRequestMessage>? configure = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (token is not null) request.Headers.TryAddWithoutValidation("Authorization", "Bearer " + token);
        configure?.Invoke(request);
        return await gateway.Client.SendAsync(request);
    }

    private static async Task AssertStatusAsync(TestGateway gateway, string path, string? token, HttpStatusCode expected)
    {
        using var response = await SendAsync(gateway, path, token);
        if (response.StatusCode != expected)
        {
            Assert.Fail($"{path}: expected {(int)expected}, got {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}\n--- gateway log ---\n{gateway.Logs}");
        }
    }

    /// <summary>Asserts a problem+json answer with this status and reason code, then disposes the response.</summary>
    private static async Task AssertProblemAsync(HttpResponseMessage response, HttpStatusCode status, string reason, bool tokenPresented = true)
    {
        using (response)
        {
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == status, $"expected {(int)status} {reason}, got {(int)response.StatusCode}: {body}");
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
            using var json = JsonDocument.Parse(body);
            Assert.Equal(reason, json.RootElement.GetProperty("reason").GetString());
            Assert.DoesNotContain("IDX", body, StringComparison.Ordinal);
            Assert.DoesNotContain("Exception", body, StringComparison.Ordinal);
            if (status == HttpStatusCode.Unauthorized)
            {
                // RFC 6750 §3.1: a request without a token gets the challenge without an error code.
                var challenge = response.Headers.WwwAuthenticate.ToString();
                Assert.StartsWith("Bearer ", challenge, StringComparison.Ordinal);
                if (tokenPresented) Assert.Contains("error=\"invalid_token\"", challenge, StringComparison.Ordinal);
                else Assert.DoesNotContain("error=", challenge, StringComparison.Ordinal);
            }
        }
    }

    private static async Task<string?> ReasonAsync(HttpResponseMessage response)
    {
        var body = await response.Content.ReadAsStringAsync();
        if (response.Content.Headers.ContentType?.MediaType != "application/problem+json") return null;
        using var json = JsonDocument.Parse(body);
        return json.RootElement.TryGetProperty("reason", out var reason) ? reason.GetString() : null;
    }

    private static async Task PollUntilStatusAsync(TestGateway gateway, string path, Func<string> token, HttpStatusCode expected, TimeSpan timeout, string what)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            using var response = await SendAsync(gateway, path, token());
            if (response.StatusCode == expected) return;
            if (deadline.Elapsed > timeout)
            {
                Assert.Fail($"{what}: still {(int)response.StatusCode} after {timeout}: {await response.Content.ReadAsStringAsync()}\n--- gateway log ---\n{gateway.Logs}");
            }

            await Task.Delay(PollInterval);
        }
    }

    private static async Task<JsonDocument> ReadyAsync(TestGateway gateway)
    {
        using var response = await gateway.Admin.GetAsync("/readyz");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync());
    }

    private static JsonElement IssuerEntry(JsonDocument ready, string name) =>
        ready.RootElement.GetProperty("issuers").EnumerateArray().Single(i => i.GetProperty("name").GetString() == name);

    private static Task<long> IssuerFailuresAsync(TestGateway gateway, string name) => IssuerCounterAsync(gateway, name, "failures");

    private static async Task<long> IssuerCounterAsync(TestGateway gateway, string name, string counter)
    {
        using var ready = await ReadyAsync(gateway);
        return IssuerEntry(ready, name).GetProperty(counter).GetInt64();
    }

    /// <summary>Polls /readyz until every named issuer reports its keys available.</summary>
    private static async Task WaitForKeysAsync(TestGateway gateway, params string[] issuers)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            using (var ready = await ReadyAsync(gateway))
            {
                if (issuers.All(name => IssuerEntry(ready, name).GetProperty("keys").GetString() == "available")) return;
                if (deadline.Elapsed > TimeSpan.FromSeconds(10))
                {
                    Assert.Fail($"issuer keys not loaded after 10s: {ready.RootElement}\n--- gateway log ---\n{gateway.Logs}");
                }
            }

            await Task.Delay(50);
        }
    }

    private static string RandomKid() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8));

    /// <summary>header.payload.signature with the provider's iss/aud/exp, a chosen kid and 256 random signature bytes.</summary>
    private static string AssembleWithKid(TestIdentityProvider idp, string kid)
    {
        var header = JsonSerializer.Serialize(new Dictionary<string, object> { ["alg"] = "RS256", ["typ"] = "at+jwt", ["kid"] = kid });
        var payload = JsonSerializer.Serialize(idp.StandardClaims("orders-reader", "orders.read"));
        return Base64UrlEncoder.Encode(header) + "." + Base64UrlEncoder.Encode(payload) + "." + Base64UrlEncoder.Encode(RandomNumberGenerator.GetBytes(256));
    }
}
