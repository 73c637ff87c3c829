using System.Net;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Sessions;

/// <summary>
/// Turning keyRing on where a key ring was already kept in Redis unencrypted (issue 13, point 2): the
/// old keys stay readable in Redis, so the gateway says so at start-up, and after the operator deletes
/// them only encrypted keys are written. Real redis-server, real provider; no browser needed (a page load
/// starting a sign-in is what makes the gateway create its first key).
/// </summary>
public sealed class SessionKeyRingMigrationTests : IAsyncLifetime
{
    private const string Prefix = "mig:";
    private const string Warning = "stored unencrypted before keyRing was set";

    private BrowserIdentityProvider _idp = null!;
    private TestUpstream _upstream = null!;
    private RedisServer _redis = null!;

    public async Task InitializeAsync()
    {
        _idp = await BrowserIdentityProvider.StartAsync();
        _upstream = await TestUpstream.StartAsync("app");
        _redis = await RedisServer.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _upstream.DisposeAsync();
        await _idp.DisposeAsync();
        await _redis.DisposeAsync();
    }

    // Every gateway of the test on one port (the provider knows one redirect URI), one after the other.
    private async Task<TestGateway> StartAsync(string keyRing, int? port = null)
    {
        var files = new Dictionary<string, string>();
        KeyRingCertificate.AddFiles(files);
        var listeners = "listeners:\n"
            + "  - { name: public, address: \"127.0.0.1:" + (port?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "{{PORT}}") + "\" }\n"
            + "  - { name: admin, address: \"127.0.0.1:{{ADMIN_PORT}}\", admin: true }\n";
        var stores = $"stores: {{ redis: {{ connection: \"{_redis.ConnectionString}\", keyPrefix: \"{Prefix}\" }} }}";
        var gateway = await TestGateway.StartAsync(listeners + SessionSetup.Config(_idp, _upstream, "store: redis\n    " + keyRing, stores), files, SessionSetup.Environment);
        if (port is null) await _idp.RegisterGatewayAsync(SessionSetup.ClientId, SessionSetup.ClientSecret, "corp", gateway.Url);
        return gateway;
    }

    // A page load without a session starts a sign-in, whose protected state needs a key.
    private static async Task StartASignInAsync(TestGateway gateway, string url)
    {
        Assert.NotNull(gateway);
        using var client = new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = false }) { BaseAddress = new Uri(url) };
        using var request = new HttpRequestMessage(HttpMethod.Get, "/app/page");
        request.Headers.Add("Accept", "text/html");
        using var response = await client.SendAsync(request);
        Assert.Equal(HttpStatusCode.Found, response.StatusCode);
    }

    private Task<string> KeyRingAsync() => _redis.CliAsync("LRANGE", Prefix + "dataprotection-keys", "0", "-1");

    [Fact]
    public async Task KeysWrittenUnencrypted_AreReportedAtStartup_UntilDeleted_ThenOnlyEncryptedKeysAreWritten()
    {
        int port;
        await using (var unprotected = await StartAsync("keyRing: { unprotected: true }"))
        {
            port = unprotected.Port;
            await StartASignInAsync(unprotected, unprotected.Url);
            Assert.Contains("<masterKey", await KeyRingAsync(), StringComparison.Ordinal);
        }

        await using (var protectedNow = await StartAsync(KeyRingCertificate.ConfigLine, port))
        {
            Assert.Contains(Warning, protectedNow.Logs.ToString(), StringComparison.Ordinal);
        }

        await _redis.CliAsync("DEL", Prefix + "dataprotection-keys");
        await using var clean = await StartAsync(KeyRingCertificate.ConfigLine, port);
        await StartASignInAsync(clean, $"http://127.0.0.1:{port}");
        var ring = await KeyRingAsync();
        Assert.Contains("encryptedSecret", ring, StringComparison.Ordinal);
        Assert.DoesNotContain("<masterKey", ring, StringComparison.Ordinal);
        Assert.DoesNotContain(Warning, clean.Logs.ToString(), StringComparison.Ordinal);
    }
}
