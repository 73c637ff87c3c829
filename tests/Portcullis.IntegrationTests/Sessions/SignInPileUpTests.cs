using System.Net;
using System.Text.Json;
using Microsoft.Playwright;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Sessions;

/// <summary>
/// Issue 13 point 5: unauthenticated page loads used to add a correlation and a nonce cookie each, until the
/// callback's Cookie header passed Kestrel's 32 KB and the user was locked out (431). A browser now keeps at
/// most three pending sign-ins, script (fetch) never starts one, and sign-in starts are rate-limited per client.
/// </summary>
[Collection(BrowserCollection.Name)]
public sealed class SignInPileUpTests : IAsyncLifetime
{
    private Browser _browser = null!;
    private BrowserIdentityProvider _idp = null!;
    private TestUpstream _upstream = null!;
    private readonly List<TestGateway> _gateways = [];

    public async Task InitializeAsync()
    {
        _browser = await Browser.LaunchAsync();
        _idp = await BrowserIdentityProvider.StartAsync();
        _upstream = await TestUpstream.StartAsync("app");
    }

    public async Task DisposeAsync()
    {
        foreach (var gateway in _gateways) await gateway.DisposeAsync();
        await _upstream.DisposeAsync();
        await _idp.DisposeAsync();
        await _browser.DisposeAsync();
    }

    private async Task<TestGateway> GatewayAsync(string sessionLines)
    {
        var gateway = await TestGateway.StartAsync(SignInHardeningSetup.Config(_idp, _upstream, sessionLines: sessionLines), environment: SessionSetup.Environment);
        _gateways.Add(gateway);
        await _idp.RegisterGatewayAsync(SessionSetup.ClientId, SessionSetup.ClientSecret, "corp", gateway.Url);
        return gateway;
    }

    private static bool IsPending(BrowserContextCookiesResult cookie) => cookie.Name.StartsWith(".portcullis.", StringComparison.Ordinal);

    [Fact]
    public async Task HundredPageLoads_KeepAtMostThreePendingSignIns_AndTheSignInStillCompletes()
    {
        var gateway = await GatewayAsync("signInsPerMinute: 1000");
        var page = await _browser.NewPageAsync();

        // Page loads sharing the browser's cookie jar (the context's request API), without following the redirect.
        for (var i = 0; i < 100; i++)
        {
            var response = await page.Context.APIRequest.GetAsync(gateway.Url + "/app/load" + i, new()
            {
                MaxRedirects = 0,
                Headers = new Dictionary<string, string> { ["Accept"] = "text/html,*/*;q=0.8" },
            });
            Assert.Equal(302, response.Status);
        }

        var cookies = await page.Context.CookiesAsync();
        var pending = cookies.Where(IsPending).ToList();
        Assert.InRange(pending.Count(c => c.Name.StartsWith(".portcullis.correlation.", StringComparison.Ordinal)), 1, 3);
        Assert.InRange(pending.Count(c => c.Name.StartsWith(".portcullis.nonce.", StringComparison.Ordinal)), 1, 3);
        var headerSize = cookies.Sum(c => c.Name.Length + c.Value.Length + 2);
        Assert.True(headerSize < 4096, $"the Cookie header would be {headerSize} bytes");

        // The user signs in as usual from there.
        await page.GotoAsync(gateway.Url + "/app/final");
        await SessionSetup.SignInAsync(page, BrowserIdentityProvider.Alice);
        await page.WaitForURLAsync(gateway.Url + "/app/final");
        Assert.Equal("alice", (await SessionSetup.UpstreamAnswerAsync(page)).Header("X-Subject"));
    }

    [Fact]
    public async Task Fetch_WithAcceptAny_Gets401_AndStartsNoSignIn()
    {
        var gateway = await GatewayAsync("");
        var page = await _browser.NewPageAsync();
        await page.GotoAsync(gateway.Url + "/public/page");
        var statuses = await page.EvaluateAsync<int[]>("""
            async () => {
              const statuses = [];
              for (let i = 0; i < 5; i++) statuses.push((await fetch('/app/data' + i, { redirect: 'manual' })).status);
              return statuses;
            }
            """);

        Assert.All(statuses, status => Assert.Equal(401, status));
        Assert.DoesNotContain(await page.Context.CookiesAsync(), IsPending);
        Assert.Equal(0, _idp.AuthorizeRequests);
    }

    [Fact]
    public async Task SignInStarts_AreRateLimitedPerClient_With429AndRetryAfter()
    {
        var gateway = await GatewayAsync("signInsPerMinute: 5");
        using var client = SignInHardeningSetup.RawClient(gateway);

        for (var i = 0; i < 5; i++)
        {
            using var started = await SignInHardeningSetup.PageLoadAsync(client, "/app/page" + i);
            Assert.Equal(HttpStatusCode.Found, started.StatusCode);
        }

        using var limited = await SignInHardeningSetup.PageLoadAsync(client, "/app/page");
        Assert.Equal(HttpStatusCode.TooManyRequests, limited.StatusCode);
        Assert.True(limited.Headers.RetryAfter?.Delta >= TimeSpan.FromSeconds(1), "Retry-After must say when to come back");
        Assert.Contains("<title>Too many sign-ins</title>", await limited.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.False(limited.Headers.Contains("Set-Cookie"));

        using var script = await SignInHardeningSetup.PageLoadAsync(client, "/.portcullis/login/corp?rd=/app/", "application/json");
        Assert.Equal(HttpStatusCode.TooManyRequests, script.StatusCode);
        Assert.Equal("application/problem+json", script.Content.Headers.ContentType?.MediaType);
        Assert.Equal("session.signin-rate-limited", JsonDocument.Parse(await script.Content.ReadAsStringAsync()).RootElement.GetProperty("reason").GetString());

        Assert.Equal(1, SignInHardeningSetup.CountLines(gateway, "too many sign-ins started"));
    }
}
