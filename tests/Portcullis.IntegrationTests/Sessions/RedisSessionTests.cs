using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Sessions;

/// <summary>
/// Browser sessions with <c>identity.sessions.store: redis</c>, in a real browser: a session started on one
/// gateway instance works on another instance sharing the Redis (sessions and the Data Protection key ring
/// live there), and survives a restart of the gateway that issued it.
/// </summary>
[Collection(BrowserCollection.Name)]
public sealed class RedisSessionTests : IAsyncLifetime
{
    private Browser _browser = null!;
    private BrowserIdentityProvider _idp = null!;
    private TestUpstream _upstream = null!;
    private RedisServer _redis = null!;
    private readonly List<TestGateway> _gateways = [];

    public async Task InitializeAsync()
    {
        _browser = await Browser.LaunchAsync();
        _idp = await BrowserIdentityProvider.StartAsync();
        _upstream = await TestUpstream.StartAsync("app");
        _redis = await RedisServer.StartAsync();
    }

    public async Task DisposeAsync()
    {
        foreach (var gateway in _gateways.ToList()) await DisposeGatewayAsync(gateway);
        await _upstream.DisposeAsync();
        await _idp.DisposeAsync();
        await _browser.DisposeAsync();
        await _redis.DisposeAsync();
    }

    private string StoresLine => $"stores: {{ redis: {{ connection: \"{_redis.ConnectionString}\", keyPrefix: \"it:\" }} }}";

    // Explicit listeners, so a restarted instance can come back on the port the browser already uses.
    private async Task<TestGateway> StartAsync(int? port = null)
    {
        var listeners = "listeners:\n"
            + "  - { name: public, address: \"127.0.0.1:" + (port?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "{{PORT}}") + "\" }\n"
            + "  - { name: admin, address: \"127.0.0.1:{{ADMIN_PORT}}\", admin: true }\n";
        var files = new Dictionary<string, string>();
        KeyRingCertificate.AddFiles(files);
        var gateway = await TestGateway.StartAsync(listeners + SessionSetup.Config(_idp, _upstream, "store: redis\n    " + KeyRingCertificate.ConfigLine, StoresLine), files, SessionSetup.Environment);
        _gateways.Add(gateway);
        return gateway;
    }

    private async Task DisposeGatewayAsync(TestGateway gateway)
    {
        if (!_gateways.Remove(gateway)) return;
        if (Environment.GetEnvironmentVariable("PORTCULLIS_TEST_LOGS") is { Length: > 0 } dir)
        {
            await File.WriteAllTextAsync(Path.Combine(dir, $"gw-redis-{gateway.Port}.log"), gateway.Logs + "\n--- idp ---\n" + _idp.LogTail);
        }

        await gateway.DisposeAsync();
    }

    [Fact]
    public async Task SessionStartedOnOneInstance_WorksOnAnother_AndSurvivesARestart()
    {
        var first = await StartAsync();
        var second = await StartAsync();
        Assert.NotEqual(first.Port, second.Port);
        // One client at the provider for both instances (each one's callback and signed-out URLs).
        await _idp.RegisterGatewayAsync(SessionSetup.ClientId, SessionSetup.ClientSecret, "corp", first.Url, second.Url);

        var page = await _browser.NewPageAsync();
        await page.GotoAsync(first.Url + "/app/start");
        await SessionSetup.SignInAsync(page, BrowserIdentityProvider.Alice);
        await page.WaitForURLAsync(first.Url + "/app/start");
        Assert.Equal("alice", (await SessionSetup.UpstreamAnswerAsync(page)).Header("X-Subject"));
        Assert.Equal(1, _idp.Logins);
        var authorize = _idp.AuthorizeRequests;
        var codes = _idp.CodeRedemptions;

        // The session and the key ring are in Redis; the cookie holds only the protected session id.
        var keys = (await _redis.CliAsync("--scan", "--pattern", "it:*")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains("it:dataprotection-keys", keys);
        var sessionKey = Assert.Single(keys, k => k.StartsWith("it:session:", StringComparison.Ordinal));
        var ttl = int.Parse(await _redis.CliAsync("TTL", sessionKey), System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(ttl, 1, 3600); // the idle timeout (default 1h), not forever
        var stored = await _redis.CliAsync("GET", sessionKey);
        Assert.DoesNotContain("alice@example.test", stored, StringComparison.Ordinal); // encrypted at rest
        var cookie = (await page.Context.CookiesAsync()).Single(c => c.Name == SessionSetup.CookieName + "-corp");
        Assert.True(cookie.Value.Length < 600, $"session cookie is {cookie.Value.Length} characters");

        // Cookies are not isolated by port: the same browser sends the cookie to the second instance.
        await page.GotoAsync(second.Url + "/app/on-second");
        Assert.Equal(second.Url + "/app/on-second", page.Url);
        var seen = await SessionSetup.UpstreamAnswerAsync(page);
        Assert.Equal("/app/on-second", seen.Path);
        Assert.Equal("alice", seen.Header("X-Subject"));
        Assert.Equal("staff,admins", seen.Header("X-Groups"));
        Assert.NotNull(seen.Header("X-Portcullis-Assertion"));

        // The issuing instance goes away; a new one comes up on its port with the same config and Redis.
        // (TestGateway.Url names the port it picked, not the listener given here: keep using the first URL.)
        var url = first.Url;
        await DisposeGatewayAsync(first);
        await StartAsync(first.Port);
        await page.GotoAsync(url + "/app/after-restart");
        Assert.Equal(url + "/app/after-restart", page.Url);
        seen = await SessionSetup.UpstreamAnswerAsync(page);
        Assert.Equal("/app/after-restart", seen.Path);
        Assert.Equal("alice", seen.Header("X-Subject"));

        // The second instance keeps serving it too, and the provider was never asked again.
        await page.GotoAsync(second.Url + "/app/still");
        Assert.Equal("alice", (await SessionSetup.UpstreamAnswerAsync(page)).Header("X-Subject"));
        Assert.Equal(authorize, _idp.AuthorizeRequests);
        Assert.Equal(codes, _idp.CodeRedemptions);
        Assert.Equal(1, _idp.Logins);
        Assert.Equal(1, int.Parse(await _redis.CliAsync("LLEN", "it:dataprotection-keys"), System.Globalization.CultureInfo.InvariantCulture));

        // Logout on one instance ends the session everywhere: it is gone from Redis.
        await page.GotoAsync(second.Url + "/.portcullis/logout?rd=/public/bye");
        await page.ClickAsync("#confirm"); // GET asks; the form POSTs
        await page.WaitForURLAsync(url => url.Contains("/public/bye", StringComparison.Ordinal));
        Assert.Equal("0", await _redis.CliAsync("EXISTS", sessionKey));
    }
}
