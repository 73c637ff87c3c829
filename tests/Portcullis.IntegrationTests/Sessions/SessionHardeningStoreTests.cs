using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.Extensions.DependencyInjection;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.IntegrationTests.Observability;
using StackExchange.Redis;

namespace Portcullis.IntegrationTests.Sessions;

/// <summary>
/// The Redis session store under attack and under trouble (issue 13, points 2 and 10), with a real browser
/// sign-in and a real redis-server: what Redis holds gives a reader neither a session id nor a usable key
/// ring, and a frozen Redis costs a session request stores.redis.timeout, not the client library's 5 s.
/// </summary>
[Collection(BrowserCollection.Name)]
public sealed class SessionHardeningStoreTests : IAsyncLifetime
{
    private const string Prefix = "hs:";
    private const string CookieScheme = "portcullis.session.corp";

    private Browser _browser = null!;
    private BrowserIdentityProvider _idp = null!;
    private TestUpstream _upstream = null!;
    private RedisServer _redis = null!;
    private TestGateway? _gateway;
    private string? _lastRequestId;

    public async Task InitializeAsync()
    {
        _browser = await Browser.LaunchAsync();
        _idp = await BrowserIdentityProvider.StartAsync();
        _upstream = await TestUpstream.StartAsync("app");
        _redis = await RedisServer.StartAsync();
    }

    public async Task DisposeAsync()
    {
        _redis.Thaw();
        if (_gateway is not null)
        {
            if (Environment.GetEnvironmentVariable("PORTCULLIS_TEST_LOGS") is { Length: > 0 } dir) await File.WriteAllTextAsync(Path.Combine(dir, $"gw-hardening-{_gateway.Port}.log"), _gateway.Logs + "\n--- idp ---\n" + _idp.LogTail);
            await _gateway.DisposeAsync();
        }
        await _upstream.DisposeAsync();
        await _idp.DisposeAsync();
        await _browser.DisposeAsync();
        await _redis.DisposeAsync();
    }

    private static string CookieName => SessionSetup.CookieName + "-corp";

    // A gateway with store: redis and an encrypted key ring, registered at the provider.
    private async Task StartGatewayAsync(string redisExtra, string? connection = null)
    {
        var files = new Dictionary<string, string>();
        KeyRingCertificate.AddFiles(files);
        var stores = $"stores: {{ redis: {{ connection: \"{connection ?? _redis.ConnectionString}\", keyPrefix: \"{Prefix}\"{redisExtra} }} }}";
        stores += "\nobservability:\n  accessLog: { enabled: true, target: file, path: access.log, flushInterval: 0ms }";
        _gateway = await TestGateway.StartAsync(SessionSetup.Config(_idp, _upstream, "store: redis\n    " + KeyRingCertificate.ConfigLine, stores), files, SessionSetup.Environment);
        await _idp.RegisterGatewayAsync(SessionSetup.ClientId, SessionSetup.ClientSecret, "corp", _gateway.Url);
    }

    // Signs Alice in through the browser on a gateway with store: redis; returns her session cookie.
    private async Task<string> SignInAsync(string redisExtra = "", string? connection = null)
    {
        await StartGatewayAsync(redisExtra, connection);
        var page = await _browser.NewPageAsync();
        await page.GotoAsync(_gateway!.Url + "/app/start");
        await SessionSetup.SignInAsync(page, BrowserIdentityProvider.Alice);
        await page.WaitForURLAsync(_gateway.Url + "/app/start");
        Assert.Equal("alice", (await SessionSetup.UpstreamAnswerAsync(page)).Header("X-Subject"));
        return (await page.Context.CookiesAsync()).Single(c => c.Name == CookieName).Value;
    }

    [Fact]
    public async Task Redis_HoldsAnEncryptedKeyRing_AndSessionsUnderTheHashOfTheirId()
    {
        var cookie = await SignInAsync();

        // The key ring: encrypted to the certificate, no plaintext master key.
        var keys = (await _redis.CliAsync("--scan", "--pattern", Prefix + "*")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains(Prefix + "dataprotection-keys", keys);
        var ring = await _redis.CliAsync("LRANGE", Prefix + "dataprotection-keys", "0", "-1");
        Assert.Contains("encryptedSecret", ring, StringComparison.Ordinal);
        Assert.Contains("EncryptedData", ring, StringComparison.Ordinal);
        Assert.DoesNotContain("<masterKey", ring, StringComparison.Ordinal);

        // The session id in the cookie (decrypted here with the key ring and the certificate, as only the
        // gateway can) names the session only through its SHA-256: the id itself is in no key name.
        var id = SessionIdOf(cookie, withCertificate: true);
        var sessionKey = Assert.Single(keys, k => k.StartsWith(Prefix + "session:", StringComparison.Ordinal));
        Assert.Equal(Prefix + "session:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(id))), sessionKey);
        Assert.DoesNotContain(keys, k => k.Contains(id, StringComparison.Ordinal));
        Assert.DoesNotContain("alice@example.test", await _redis.CliAsync("GET", sessionKey), StringComparison.Ordinal);

        // Without the certificate, Redis's content decrypts nothing: no cookie can be read or forged.
        Assert.ThrowsAny<CryptographicException>(() => SessionIdOf(cookie, withCertificate: false));
    }

    [Fact]
    public async Task FrozenRedis_AnswersSessionRequests503WithinTheConfiguredTimeout_ThenTheCircuitAnswersAtOnce()
    {
        var cookie = await SignInAsync(", timeout: 1500ms, retryAfter: 3s");
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(cookie)).Status);

        _redis.Freeze();
        var (status, body, took) = await GetAsync(cookie);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        Assert.Contains("session.store-unavailable", body, StringComparison.Ordinal);
        // The timeout is 1.5 s; before the fix the client library's 5 s applied.
        Assert.InRange(took, TimeSpan.FromMilliseconds(1400), TimeSpan.FromMilliseconds(4000));

        // The circuit is open (retryAfter 3 s): the next request does not wait for Redis at all.
        (status, body, took) = await GetAsync(cookie);
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        Assert.Contains("session.store-unavailable", body, StringComparison.Ordinal);
        Assert.True(took < TimeSpan.FromMilliseconds(1000), $"an open circuit answered after {took}");

        // Both refusals are counted on /metrics and carry the reason code in the access log (issue 14).
        var line = await AccessLogFile.LineAsync(Path.Combine(_gateway!.Directory, "access.log"), _lastRequestId!);
        Assert.Equal("session.store-unavailable", line.GetProperty("authReason").GetString());
        Assert.Equal(503, line.GetProperty("status").GetInt32());
        var samples = await PrometheusText.ScrapeAsync(_gateway.Admin);
        Assert.Equal(2, samples.Sum("portcullis_session_store_unavailable_total", ("route", "app"), ("decision", "session-check.refused")));

        // Redis back: a probe closes the circuit and the session works again, unchanged.
        _redis.Thaw();
        var deadline = Stopwatch.StartNew();
        while ((await GetAsync(cookie)).Status != HttpStatusCode.OK)
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(30), "the session store did not recover after Redis came back");
            await Task.Delay(200);
        }
    }

    [Fact]
    public async Task Sessions_WorkWithTheDocumentedAclUser_ConfinedToTheKeyPrefix()
    {
        // browser-access.md: an ACL user of the gateway's own, its keys confined to the prefix.
        await _redis.CliAsync("ACL", "SETUSER", "portcullis", "on", ">acl-secret-1", "resetkeys", "~" + Prefix + "*", "&*", "+@all", "-@admin", "-flushall", "-flushdb", "-keys");
        await _redis.CliAsync("SET", "other:secret", "x");
        var connection = $"127.0.0.1:{_redis.Port},user=portcullis,password=acl-secret-1";

        var cookie = await SignInAsync(connection: connection);
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(cookie)).Status);
        Assert.Single((await _redis.CliAsync("--scan", "--pattern", Prefix + "session:*")).Split('\n', StringSplitOptions.RemoveEmptyEntries));

        // The same user cannot touch keys outside its prefix.
        using var restricted = await ConnectionMultiplexer.ConnectAsync(connection);
        var denied = await Assert.ThrowsAsync<RedisServerException>(() => restricted.GetDatabase().StringGetAsync("other:secret"));
        Assert.Contains("NOPERM", denied.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task FrozenRedisWhenTheSignInIsSaved_AnswersA503Page_NotABlank500()
    {
        await StartGatewayAsync(", timeout: 1500ms, retryAfter: 3s");
        var page = await _browser.NewPageAsync();
        await page.GotoAsync(_gateway!.Url + "/app/start");
        await page.WaitForURLAsync(url => url.Contains(BrowserIdentityProvider.LoginPath, StringComparison.Ordinal));
        await page.FillAsync("#username", BrowserIdentityProvider.Alice.Username);
        await page.FillAsync("#password", BrowserIdentityProvider.Alice.Password);

        _redis.Freeze();
        var callback = await page.RunAndWaitForResponseAsync(() => page.ClickAsync("#signin"), r => r.Url.Contains("/.portcullis/callback/corp", StringComparison.Ordinal));
        Assert.Equal(503, callback.Status);
        Assert.Contains("Temporarily unavailable", await page.InnerTextAsync("body"), StringComparison.Ordinal);
        Assert.Contains("Session store unavailable at a sign-in", _gateway.Logs.ToString(), StringComparison.Ordinal);

        // Counted on /metrics (no route: the gateway's own callback path) with the reason in the access log.
        // Both are recorded when the response completes, just after the browser has it.
        var deadline = Stopwatch.StartNew();
        while ((await PrometheusText.ScrapeAsync(_gateway.Admin)).Sum("portcullis_session_store_unavailable_total", ("decision", "sign-in.refused")) != 1)
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(10), "the refused sign-in was not counted");
            await Task.Delay(50);
        }

        while (!(await AccessLogFile.LinesAsync(Path.Combine(_gateway.Directory, "access.log"))).Any(l =>
            l.GetProperty("reason").ValueKind == System.Text.Json.JsonValueKind.String && l.GetProperty("reason").GetString() == "session.store-unavailable" && l.GetProperty("status").GetInt32() == 503))
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(20), "no access-log line with reason session.store-unavailable");
            await Task.Delay(50);
        }
    }

    private async Task<(HttpStatusCode Status, string Body, TimeSpan Took)> GetAsync(string cookie)
    {
        using var client = new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = false, UseCookies = false }) { BaseAddress = new Uri(_gateway!.Url), Timeout = TimeSpan.FromSeconds(30) };
        using var request = new HttpRequestMessage(HttpMethod.Get, "/app/data");
        request.Headers.Add("Cookie", CookieName + "=" + cookie);
        request.Headers.Add("Accept", "application/json");
        var watch = Stopwatch.StartNew();
        using var response = await client.SendAsync(request);
        _lastRequestId = response.Headers.TryGetValues("X-Request-Id", out var ids) ? ids.Single() : null;
        var body = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, body, watch.Elapsed);
    }

    // Reads the session id out of a session cookie the way the cookie handler does: the key ring from Redis
    // (decrypted with the certificate when given), the handler's protector purposes, its session-id claim.
    private string SessionIdOf(string cookie, bool withCertificate)
    {
        var services = new ServiceCollection();
        var builder = services.AddDataProtection().SetApplicationName("portcullis-sessions").DisableAutomaticKeyGeneration();
        using var connection = ConnectionMultiplexer.Connect(_redis.ConnectionString);
        builder.PersistKeysToStackExchangeRedis(connection, Prefix + "dataprotection-keys");
        if (withCertificate) builder.UnprotectKeysWithAnyCertificate(KeyRingCertificate.Certificate);
        using var provider = services.BuildServiceProvider();
        var protector = provider.GetRequiredService<IDataProtectionProvider>()
            .CreateProtector("Microsoft.AspNetCore.Authentication.Cookies.CookieAuthenticationMiddleware", CookieScheme, "v2");
        var bytes = protector.Unprotect(Base64UrlTextEncoder.Decode(cookie));
        var ticket = TicketSerializer.Default.Deserialize(bytes) ?? throw new InvalidOperationException("not a ticket");
        return ticket.Principal.FindFirst("Microsoft.AspNetCore.Authentication.Cookies-SessionId")!.Value;
    }
}
