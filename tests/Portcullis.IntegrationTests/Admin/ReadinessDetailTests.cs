using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.IntegrationTests.Sessions;

namespace Portcullis.IntegrationTests.Admin;

/// <summary>
/// /readyz names each issuer and each session provider with its state (issue 18, item 20): a session provider
/// whose discovery fails, and an issuer with no usable keys, make it degraded (still 200) with the reason,
/// never "ready".
/// </summary>
public sealed class ReadinessDetailTests
{
    [Fact]
    public async Task SessionProviderUnreachable_IsDegradedWithTheError_ThenOkOnceItAnswers()
    {
        var idpPort = Ports.GetFree(); // nothing listens there yet
        await using var upstream = await TestUpstream.StartAsync("app");
        await using var gateway = await TestGateway.StartAsync($$"""
            identity:
              sessions:
                providers:
                  - { name: corp, authority: "http://127.0.0.1:{{idpPort}}/", clientId: {{SessionSetup.ClientId}}, clientSecretEnv: {{SessionSetup.SecretVariable}} }
                cookie: { name: {{SessionSetup.CookieName}} }
            routes:
              - { name: app, match: { pathPrefix: /app }, auth: { session: corp }, cluster: app }
              - { name: open, match: { pathPrefix: /open }, cluster: app }
            clusters:
              app: { destinations: [{{upstream.Url}}] }
            """, environment: SessionSetup.Environment);

        await Eventually.TrueAsync(async () => Provider(await ReadyAsync(gateway)).GetProperty("discovery").GetString() == "failed", "discovery failed",
            context: async () => (await ReadyAsync(gateway)).ToString());
        var down = await ReadyAsync(gateway);
        Assert.Equal("degraded", down.GetProperty("status").GetString());
        var check = down.GetProperty("checks").GetProperty("sessionProviders");
        Assert.Equal("degraded", check.GetProperty("status").GetString());
        Assert.Contains("session provider corp: discovery failing since", check.GetProperty("description").GetString(), StringComparison.Ordinal);
        var provider = Provider(down);
        Assert.Equal($"http://127.0.0.1:{idpPort}/", provider.GetProperty("authority").GetString());
        Assert.Contains("refused", provider.GetProperty("lastError").GetString(), StringComparison.OrdinalIgnoreCase);
        Assert.True(provider.TryGetProperty("since", out _));
        // Routes without sign-in keep serving: degraded, not out of rotation.
        using (var open = await gateway.Client.GetAsync("/open/x")) Assert.Equal(HttpStatusCode.OK, open.StatusCode);

        // The real provider comes up on that port: the next check (every 5 s while failing) finds it.
        await using var idp = await BrowserIdentityProvider.StartAsync(port: idpPort);
        await Eventually.TrueAsync(async () => Provider(await ReadyAsync(gateway)).GetProperty("discovery").GetString() == "ok", "discovery ok",
            TimeSpan.FromSeconds(60), async () => (await ReadyAsync(gateway)).ToString());
        var up = await ReadyAsync(gateway);
        Assert.Equal("ready", up.GetProperty("status").GetString());
        Assert.Equal("healthy", up.GetProperty("checks").GetProperty("sessionProviders").GetProperty("status").GetString());
        Assert.False(Provider(up).TryGetProperty("lastError", out _));
        Assert.Single(gateway.Logs.Lines, l => l.Contains("Session provider corp: discovery at", StringComparison.Ordinal) && l.StartsWith("Warning", StringComparison.Ordinal));
        Assert.Single(gateway.Logs.Lines, l => l.Contains("Session provider corp: discovery answers again", StringComparison.Ordinal));
    }

    [Fact]
    public async Task IssuerWithoutUsableKeys_IsDegraded_NamingZeroUsableKeysAndWhy()
    {
        await using var idp = await TestIdentityProvider.StartAsync();
        idp.Intercept = async context =>
        {
            if (context.Request.Path != TestIdentityProvider.JwksPath) return false;
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync("""{"keys":[]}""");
            return true;
        };
        await using var upstream = await TestUpstream.StartAsync("orders");
        await using var gateway = await TestGateway.StartAsync(IssuerRouteConfig.Orders(idp.Authority, upstream.Url, "{ refreshInterval: 1m }"));

        await Eventually.TrueAsync(async () => Issuer(await ReadyAsync(gateway)).GetProperty("failures").GetInt64() > 0, "a failed key fetch",
            context: async () => (await ReadyAsync(gateway)).ToString());
        var ready = await ReadyAsync(gateway);
        Assert.Equal("degraded", ready.GetProperty("status").GetString());
        var issuer = Issuer(ready);
        Assert.Equal(0, issuer.GetProperty("usableKeys").GetInt32());
        Assert.StartsWith("not loaded: no fetch has succeeded yet", issuer.GetProperty("keys").GetString(), StringComparison.Ordinal);
        Assert.Contains("the key set is empty", issuer.GetProperty("lastError").GetString(), StringComparison.Ordinal);
        Assert.True(issuer.TryGetProperty("failingSince", out _));
        var check = ready.GetProperty("checks").GetProperty("issuers");
        Assert.Equal("degraded", check.GetProperty("status").GetString());
        Assert.Contains("issuer corp: no usable keys: not loaded yet (key set rejected: the key set is empty)", check.GetProperty("description").GetString(), StringComparison.Ordinal);
    }

    private static JsonElement Provider(JsonElement ready) => Assert.Single(ready.GetProperty("sessionProviders").EnumerateArray());

    private static JsonElement Issuer(JsonElement ready) => Assert.Single(ready.GetProperty("issuers").EnumerateArray());

    private static async Task<JsonElement> ReadyAsync(TestGateway gateway)
    {
        using var response = await gateway.Admin.GetAsync("/readyz");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode); // degraded is still ready
        return await response.Content.ReadFromJsonAsync<JsonElement>();
    }
}
