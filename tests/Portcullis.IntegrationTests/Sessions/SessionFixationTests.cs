using System.Net;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Sessions;

/// <summary>
/// Session fixation (issue 13, point 1), in a real browser against the real provider, with the local and
/// the Redis store: a session cookie already in the browser when someone signs in is never continued. The
/// sign-in gets a new session id and cookie, and the old cookie (whoever holds a copy) resolves to nothing.
/// </summary>
[Collection(BrowserCollection.Name)]
public sealed class SessionFixationTests : IAsyncLifetime
{
    private Browser _browser = null!;
    private BrowserIdentityProvider _idp = null!;
    private TestUpstream _upstream = null!;
    private RedisServer? _redis;
    private TestGateway? _gateway;

    public async Task InitializeAsync()
    {
        _browser = await Browser.LaunchAsync();
        _idp = await BrowserIdentityProvider.StartAsync();
        _upstream = await TestUpstream.StartAsync("app");
    }

    public async Task DisposeAsync()
    {
        if (_gateway is not null)
        {
            if (Environment.GetEnvironmentVariable("PORTCULLIS_TEST_LOGS") is { Length: > 0 } dir) await File.WriteAllTextAsync(Path.Combine(dir, $"gw-fixation-{_gateway.Port}.log"), _gateway.Logs + "\n--- idp ---\n" + _idp.LogTail);
            await _gateway.DisposeAsync();
        }
        await _upstream.DisposeAsync();
        await _idp.DisposeAsync();
        await _browser.DisposeAsync();
        if (_redis is not null) await _redis.DisposeAsync();
    }

    [Theory]
    [InlineData("local")]
    [InlineData("redis")]
    public async Task SigningInAgainAsSomeoneElse_IssuesANewSession_AndTheOldCookieResolvesToNothing(string store)
    {
        var storesLine = "";
        var files = new Dictionary<string, string>();
        var sessionLine = "store: " + store;
        if (store == "redis")
        {
            _redis = await RedisServer.StartAsync();
            storesLine = $"stores: {{ redis: {{ connection: \"{_redis.ConnectionString}\", keyPrefix: \"fx:\" }} }}";
            sessionLine += "\n    " + KeyRingCertificate.ConfigLine;
            KeyRingCertificate.AddFiles(files);
        }

        _gateway = await TestGateway.StartAsync(SessionSetup.Config(_idp, _upstream, sessionLine, storesLine), files, SessionSetup.Environment);
        await _idp.RegisterGatewayAsync(SessionSetup.ClientId, SessionSetup.ClientSecret, "corp", _gateway.Url);
        var cookieName = SessionSetup.CookieName + "-corp";

        // Alice signs in; her cookie is what an attacker could have planted, or the previous user left behind.
        var page = await _browser.NewPageAsync();
        await page.GotoAsync(_gateway.Url + "/app/start");
        await SessionSetup.SignInAsync(page, BrowserIdentityProvider.Alice);
        await SessionSetup.ArriveAsync(page, _gateway.Url + "/app/start", _gateway);
        Assert.Equal("alice", (await SessionSetup.UpstreamAnswerAsync(page)).Header("X-Subject"));
        var old = (await page.Context.CookiesAsync()).Single(c => c.Name == cookieName).Value;
        Assert.Equal(HttpStatusCode.OK, (await GetAsync("/app/with-old", cookieName, old)).StatusCode);

        // Bob signs in in the same browser, the old cookie still present (the provider forgets Alice first).
        await page.Context.ClearCookiesAsync(new() { Name = BrowserIdentityProvider.CookieName });
        await page.GotoAsync(_gateway.Url + "/.portcullis/login/corp?rd=/contractors/start");
        await SessionSetup.SignInAsync(page, BrowserIdentityProvider.Bob);
        await SessionSetup.ArriveAsync(page, _gateway.Url + "/contractors/start", _gateway);
        Assert.Equal("bob", (await SessionSetup.UpstreamAnswerAsync(page)).Header("X-Subject"));
        var fresh = (await page.Context.CookiesAsync()).Single(c => c.Name == cookieName).Value;
        Assert.NotEqual(old, fresh);

        // The old cookie is Bob's session no more, nor Alice's: a fresh sign-in (401 for scripts, the
        // provider for pages). Before the fix it was renewed in place and carried Bob's identity.
        var withOld = await GetAsync("/contractors/as-bob", cookieName, old);
        Assert.Equal(HttpStatusCode.Unauthorized, withOld.StatusCode);
        Assert.Contains("session.", await withOld.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        var page401 = await GetAsync("/app/as-alice", cookieName, old, "text/html");
        Assert.Equal(HttpStatusCode.Found, page401.StatusCode);
        Assert.StartsWith(_idp.Authority.TrimEnd('/'), page401.Headers.Location!.AbsoluteUri, StringComparison.Ordinal);

        // The new cookie is Bob's.
        var withFresh = await GetAsync("/contractors/as-bob", cookieName, fresh);
        Assert.Equal(HttpStatusCode.OK, withFresh.StatusCode);
        Assert.Contains("\"bob\"", await withFresh.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        if (_redis is not null)
        {
            // One session in Redis: Alice's was removed, not left to expire.
            var keys = (await _redis.CliAsync("--scan", "--pattern", "fx:session:*")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Single(keys);
        }
    }

    // A script-style request with only the given session cookie, redirects not followed.
    private async Task<HttpResponseMessage> GetAsync(string path, string cookieName, string value, string accept = "application/json")
    {
        using var client = new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = false, UseCookies = false }) { BaseAddress = new Uri(_gateway!.Url) };
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        request.Headers.Add("Cookie", cookieName + "=" + value);
        request.Headers.Add("Accept", accept);
        var response = await client.SendAsync(request);
        await response.Content.LoadIntoBufferAsync();
        return response;
    }
}
