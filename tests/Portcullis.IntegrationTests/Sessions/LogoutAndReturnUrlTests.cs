using System.Net;
using Microsoft.Playwright;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Sessions;

/// <summary>
/// Issue 13 point 6: a GET to the logout path only asks (a confirmation page whose form POSTs), and only a
/// same-origin POST ends the session, so another site cannot sign the user out. Point 4 (return URLs): a
/// non-ASCII return URL (é, U+2028, U+3002) is percent-encoded, never a 500 from a non-ASCII Location header.
/// </summary>
[Collection(BrowserCollection.Name)]
public sealed class LogoutAndReturnUrlTests : IAsyncLifetime
{
    private const string SessionCookie = SessionSetup.CookieName + "-corp";

    private Browser _browser = null!;
    private BrowserIdentityProvider _idp = null!;
    private TestUpstream _upstream = null!;
    private TestGateway _gateway = null!;

    public async Task InitializeAsync()
    {
        _browser = await Browser.LaunchAsync();
        _idp = await BrowserIdentityProvider.StartAsync();
        _upstream = await TestUpstream.StartAsync("app");
        _gateway = await TestGateway.StartAsync(SignInHardeningSetup.Config(_idp, _upstream), environment: SessionSetup.Environment);
        await _idp.RegisterGatewayAsync(SessionSetup.ClientId, SessionSetup.ClientSecret, "corp", _gateway.Url);
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _upstream.DisposeAsync();
        await _idp.DisposeAsync();
        await _browser.DisposeAsync();
    }

    private async Task<IPage> SignedInPageAsync(string path = "/app/")
    {
        var page = await _browser.NewPageAsync();
        await page.GotoAsync(_gateway.Url + path);
        await SessionSetup.SignInAsync(page, BrowserIdentityProvider.Alice);
        await page.WaitForURLAsync(url => url.StartsWith(_gateway.Url + "/app/", StringComparison.Ordinal));
        return page;
    }

    private static async Task<HttpStatusCode> AppStatusAsync(HttpClient client, string cookie)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/app/check");
        request.Headers.TryAddWithoutValidation("Accept", "text/html");
        request.Headers.TryAddWithoutValidation("Cookie", cookie);
        using var response = await client.SendAsync(request);
        return response.StatusCode;
    }

    private static async Task<HttpResponseMessage> LogoutAsync(HttpClient client, HttpMethod method, string cookie, params (string Name, string Value)[] headers)
    {
        using var request = new HttpRequestMessage(method, "/.portcullis/logout?rd=/public/bye");
        request.Headers.TryAddWithoutValidation("Accept", "text/html");
        request.Headers.TryAddWithoutValidation("Cookie", cookie);
        foreach (var (name, value) in headers) request.Headers.TryAddWithoutValidation(name, value);
        return await client.SendAsync(request);
    }

    [Fact]
    public async Task Logout_GetOnlyAsks_CrossSitePostsAreRefused_AndTheConfirmedFormSignsOut()
    {
        var page = await SignedInPageAsync();
        var session = (await page.Context.CookiesAsync()).Single(c => c.Name == SessionCookie);
        var cookie = session.Name + "=" + session.Value;
        using var client = SignInHardeningSetup.RawClient(_gateway);
        Assert.Equal(HttpStatusCode.OK, await AppStatusAsync(client, cookie));

        using (var confirm = await LogoutAsync(client, HttpMethod.Get, cookie))
        {
            Assert.Equal(HttpStatusCode.OK, confirm.StatusCode);
            var html = await confirm.Content.ReadAsStringAsync();
            Assert.Contains("<form method=\"post\" action=\"/.portcullis/logout?rd=/public/bye\">", html, StringComparison.Ordinal);
            Assert.False(confirm.Headers.Contains("Set-Cookie"));
        }

        Assert.Equal(HttpStatusCode.OK, await AppStatusAsync(client, cookie));

        (string, string)[][] crossSite =
        [
            [("Origin", "http://evil.example")],
            [("Origin", "null")],
            [("Sec-Fetch-Site", "cross-site")],
            [("Sec-Fetch-Site", "same-site"), ("Origin", "http://sub.127.0.0.1")],
            [("Sec-Fetch-Site", "cross-site"), ("Origin", _gateway.Url)], // the browser's Sec-Fetch-Site wins
        ];
        foreach (var headers in crossSite)
        {
            using var refused = await LogoutAsync(client, HttpMethod.Post, cookie, headers);
            Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
            Assert.False(refused.Headers.Contains("Set-Cookie"));
            Assert.Equal(HttpStatusCode.OK, await AppStatusAsync(client, cookie));
        }

        using (var put = await LogoutAsync(client, HttpMethod.Put, cookie))
        {
            Assert.Equal(HttpStatusCode.MethodNotAllowed, put.StatusCode);
        }

        // A real cross-origin page (the upstream, another port) auto-submitting a form: refused by Chromium's own headers.
        var attacker = await _browser.NewPageAsync();
        await attacker.Context.AddCookiesAsync([new Microsoft.Playwright.Cookie { Name = session.Name, Value = session.Value, Url = _gateway.Url }]);
        await attacker.GotoAsync(_upstream.Url + "/attacker");
        var forged = attacker.WaitForResponseAsync(response => response.Url.StartsWith(_gateway.Url + "/.portcullis/logout", StringComparison.Ordinal));
        await attacker.EvaluateAsync($$"""
            () => { const f = document.createElement('form'); f.method = 'POST'; f.action = '{{_gateway.Url}}/.portcullis/logout'; document.body.appendChild(f); f.submit(); }
            """);
        Assert.Equal(403, (await forged).Status);
        Assert.Equal(HttpStatusCode.OK, await AppStatusAsync(client, cookie));

        // The user confirms on the gateway's own page: signed out, landing on the return URL.
        await page.GotoAsync(_gateway.Url + "/.portcullis/logout?rd=/public/bye");
        Assert.Equal("Sign out", await page.TitleAsync());
        await page.ClickAsync("#confirm");
        await page.WaitForURLAsync(_gateway.Url + "/public/bye");
        Assert.DoesNotContain(await page.Context.CookiesAsync(), c => c.Name == SessionCookie);
        Assert.Equal(HttpStatusCode.Found, await AppStatusAsync(client, cookie));
    }

    [Theory]
    [InlineData("/%C3%A9", "/%C3%A9")]
    [InlineData("/a%E2%80%A8b", "/a%E2%80%A8b")]
    [InlineData("/x%E3%80%82example", "/x%E3%80%82example")]
    [InlineData("/%EF%BC%8F%EF%BC%8Fevil.example", "/%EF%BC%8F%EF%BC%8Fevil.example")]
    public async Task NonAsciiReturnUrls_ArePercentEncoded_NotA500(string rd, string location)
    {
        using var client = SignInHardeningSetup.RawClient(_gateway);
        using var logout = await client.PostAsync("/.portcullis/logout?rd=" + rd, null);
        Assert.Equal(HttpStatusCode.Found, logout.StatusCode);
        Assert.Equal(location, logout.Headers.Location!.OriginalString);

        using var login = await SignInHardeningSetup.PageLoadAsync(client, "/.portcullis/login/corp?rd=" + rd);
        Assert.Equal(HttpStatusCode.Found, login.StatusCode);
        Assert.StartsWith(_idp.Authority, login.Headers.Location!.AbsoluteUri, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SignIn_WithANonAsciiReturnUrl_ReturnsThere()
    {
        // rd arrives decoded ("/app/café?q=\u2028"); the callback's redirect used to carry it raw in Location (500).
        var page = await SignedInPageAsync("/.portcullis/login/corp?rd=" + Uri.EscapeDataString("/app/café?q=\u2028"));
        Assert.Equal(_gateway.Url + "/app/caf%C3%A9?q=%E2%80%A8", page.Url);
        Assert.Equal("/app/caf%C3%A9", (await SessionSetup.UpstreamAnswerAsync(page)).Path);
    }
}
