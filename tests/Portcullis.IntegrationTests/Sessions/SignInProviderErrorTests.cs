using System.Net;
using System.Text.Json;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Sessions;

/// <summary>
/// Issue 13 point 3: public clients sign in (PKCE, no secret, also through PAR), and a provider that refuses the
/// client (at its pushed-authorization endpoint, or at its token endpoint) gives the "Sign-in unavailable" or
/// "Sign-in failed" page (problem+json for script), never a blank 500, and is logged once with its error code.
/// </summary>
[Collection(BrowserCollection.Name)]
public sealed class SignInProviderErrorTests : IAsyncLifetime
{
    private Browser _browser = null!;
    private BrowserIdentityProvider _idp = null!;
    private TestUpstream _upstream = null!;
    private readonly List<TestGateway> _gateways = [];

    public async Task InitializeAsync()
    {
        _browser = await Browser.LaunchAsync();
        _idp = await BrowserIdentityProvider.StartAsync(pushedAuthorization: true);
        _upstream = await TestUpstream.StartAsync("app");
    }

    public async Task DisposeAsync()
    {
        foreach (var gateway in _gateways) await gateway.DisposeAsync();
        await _upstream.DisposeAsync();
        await _idp.DisposeAsync();
        await _browser.DisposeAsync();
    }

    private async Task<TestGateway> StartAsync(string providerLines, string sessionLines = "")
    {
        var gateway = await TestGateway.StartAsync(SignInHardeningSetup.Config(_idp, _upstream, providerLines, sessionLines), environment: SessionSetup.Environment);
        _gateways.Add(gateway);
        return gateway;
    }

    [Fact]
    public async Task PublicClient_SignsInThroughPar_AndRefreshes_WithoutASecret()
    {
        _idp.AccessTokenLifetime = TimeSpan.FromSeconds(3);
        var gateway = await StartAsync("publicClient: true", "refreshBefore: 1s");
        // A public client at the provider: it refuses any client_secret, so a sent secret would fail the flow.
        await _idp.RegisterGatewayAsync(SessionSetup.ClientId, secret: null, "corp", gateway.Url);

        var page = await _browser.NewPageAsync();
        await page.GotoAsync(gateway.Url + "/app/home");
        await SessionSetup.SignInAsync(page, BrowserIdentityProvider.Alice);
        await page.WaitForURLAsync(gateway.Url + "/app/home");
        Assert.Equal("alice", (await SessionSetup.UpstreamAnswerAsync(page)).Header("X-Subject"));
        Assert.True(_idp.PushedAuthorizationRequests >= 1, "the provider offers PAR, so the sign-in must have used it");
        Assert.Equal(1, _idp.CodeRedemptions);

        // Past the access token's expiry: the refresh (no secret either) keeps the session going.
        await Task.Delay(TimeSpan.FromSeconds(3));
        await page.GotoAsync(gateway.Url + "/app/later");
        Assert.Equal("/app/later", (await SessionSetup.UpstreamAnswerAsync(page)).Path);
        Assert.Equal(1, _idp.RefreshRedemptions); // counted only once the provider accepted the (secret-less) client
    }

    [Fact]
    public async Task ProviderRefusingTheClientAtPar_GivesSignInUnavailable_NotA500_LoggedOnce()
    {
        var gateway = await StartAsync("clientSecretEnv: " + SessionSetup.SecretVariable);
        await _idp.RegisterGatewayAsync(SessionSetup.ClientId, "another-secret-than-the-gateways", "corp", gateway.Url);
        using var client = SignInHardeningSetup.RawClient(gateway, new CookieContainer());

        for (var i = 0; i < 3; i++)
        {
            using var response = await SignInHardeningSetup.PageLoadAsync(client, "/app/page" + i);
            Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
            Assert.Equal("text/html; charset=utf-8", response.Content.Headers.ContentType?.ToString());
            var html = await response.Content.ReadAsStringAsync();
            Assert.Contains("<title>Sign-in unavailable</title>", html, StringComparison.Ordinal);
            Assert.DoesNotContain("Exception", html, StringComparison.Ordinal);
            Assert.DoesNotContain("invalid_client", html, StringComparison.Ordinal);
            // A refused start leaves no pending-sign-in cookies behind.
            Assert.False(response.Headers.Contains("Set-Cookie"));
        }

        // Script at the login path gets problem+json.
        using (var json = await SignInHardeningSetup.PageLoadAsync(client, "/.portcullis/login/corp?rd=/app/", "application/json"))
        {
            Assert.Equal(HttpStatusCode.BadGateway, json.StatusCode);
            Assert.Equal("application/problem+json", json.Content.Headers.ContentType?.MediaType);
            var problem = JsonDocument.Parse(await json.Content.ReadAsStringAsync()).RootElement;
            Assert.Equal("session.provider-refused", problem.GetProperty("reason").GetString());
        }

        Assert.True(_idp.PushedAuthorizationRequests >= 4);
        Assert.Equal(0, _idp.AuthorizeRequests);
        // Four refusals, one log line, naming the provider's error code.
        var refusals = gateway.Logs.Lines.Where(line => line.Contains("refused to start a sign-in", StringComparison.Ordinal)).ToList();
        var refusal = Assert.Single(refusals);
        Assert.Contains("invalid_client", refusal, StringComparison.Ordinal);
        Assert.DoesNotContain(gateway.Logs.Lines, line => line.Contains("another-secret", StringComparison.Ordinal) || line.Contains(SessionSetup.ClientSecret, StringComparison.Ordinal));
    }

    [Fact]
    public async Task ProviderRefusingTheCodeAtItsTokenEndpoint_GivesSignInFailed_LoggedOnceWithItsCode()
    {
        // Without PAR the wrong secret is noticed only when the code is redeemed at the token endpoint.
        await using var idp = await BrowserIdentityProvider.StartAsync();
        var gateway = await TestGateway.StartAsync(SignInHardeningSetup.Config(idp, _upstream), environment: SessionSetup.Environment);
        _gateways.Add(gateway);
        await idp.RegisterGatewayAsync(SessionSetup.ClientId, "another-secret-than-the-gateways", "corp", gateway.Url);

        for (var round = 0; round < 2; round++)
        {
            var page = await _browser.NewPageAsync();
            await page.GotoAsync(gateway.Url + "/app/");
            await SessionSetup.SignInAsync(page, BrowserIdentityProvider.Alice);
            await page.WaitForURLAsync(url => url.StartsWith(gateway.Url + "/.portcullis/callback/corp", StringComparison.Ordinal));
            Assert.Equal("Sign-in failed", await page.TitleAsync());
            Assert.DoesNotContain("invalid_client", await page.InnerTextAsync("body"), StringComparison.Ordinal);
            await page.Context.CloseAsync();
        }

        Assert.Equal(0, idp.CodeRedemptions); // refused before the code is looked at
        var line = Assert.Single(gateway.Logs.Lines, l => l.Contains("answered the sign-in with error", StringComparison.Ordinal));
        Assert.Contains("invalid_client", line, StringComparison.Ordinal);
    }
}
