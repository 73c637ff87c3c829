using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.IdentityModel.JsonWebTokens;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Identity;

/// <summary>
/// Issue 14, item 3 (and the JWKS part of item 4), against the real test OpenID Provider: a key the provider
/// withdraws stops verifying once the JWKS response's max-age has run out (not after refreshInterval), or at
/// once on POST /admin/issuers/{name}/refresh (admin scope, audited); discovery and JWKS fetches write no
/// HttpClient log lines.
/// </summary>
public sealed class JwksExpiryTests : IDisposable
{
    private const string OpsToken = "ops-token-3e7d1c9b5a4f8e2d6c0b";
    private const string GrafanaToken = "grafana-token-8d2c6b0a4e9f1d3c";
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(100);
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("portcullis-jwks-expiry-");

    public void Dispose() => _directory.Delete(recursive: true);

    private string AuditPath => Path.Combine(_directory.FullName, "audit.log");

    private static Func<string, string?> Environment => name => name switch
    {
        "OPS_TOKEN" => OpsToken,
        "GRAFANA_TOKEN" => GrafanaToken,
        _ => null,
    };

    private string Config(TestIdentityProvider idp, TestUpstream upstream, string keys) => IssuerRouteConfig.Orders(idp.Authority, upstream.Url, keys, $$"""
        observability:
          audit: { path: {{AuditPath}} }
        admin:
          auth:
            tokens:
              - { name: ops, scope: admin, env: OPS_TOKEN }
              - { name: grafana, scope: read, env: GRAFANA_TOKEN }
        """);

    /// <summary>The provider serves its JWKS with max-age=2 and withdraws the key that signed a token. Before
    /// the fix the gateway refreshed only every refreshInterval (10m here), so the token kept passing.</summary>
    [Fact]
    public async Task Withdrawn_key_stops_verifying_once_the_jwks_max_age_has_run_out()
    {
        await using var idp = await TestIdentityProvider.StartAsync("idp-max-age");
        idp.Intercept = context =>
        {
            if (context.Request.Path == TestIdentityProvider.JwksPath)
            {
                // After OpenIddict set its own headers: the provider's cache policy for its keys.
                context.Response.OnStarting(() =>
                {
                    context.Response.Headers.CacheControl = "public, max-age=2";
                    return Task.CompletedTask;
                });
            }

            return Task.FromResult(false);
        };
        await using var upstream = await TestUpstream.StartAsync("orders");
        await using var gateway = await TestGateway.StartAsync(Config(idp, upstream, "{ refreshInterval: 10m, minRefreshInterval: 1s }"), environment: Environment);
        await WaitForKeysAsync(gateway);

        var withdrawn = await idp.GetAccessTokenAsync(TestIdentityProvider.Reader);
        await AssertStatusAsync(gateway, withdrawn, HttpStatusCode.OK);
        await idp.RotateSigningKeyAsync();
        await idp.RemoveOldKeysAsync();
        var current = await idp.GetAccessTokenAsync(TestIdentityProvider.Reader);
        Assert.NotEqual(new JsonWebToken(withdrawn).Kid, new JsonWebToken(current).Kid);
        Assert.DoesNotContain(new JsonWebToken(withdrawn).Kid, idp.KeyIds);

        // Refused once a refresh after max-age (2s) took the key away: far sooner than refreshInterval (10m).
        // The bound leaves room for the provider's restart and a retry on a loaded machine.
        var watch = Stopwatch.StartNew();
        while (true)
        {
            using var response = await SendAsync(gateway, withdrawn);
            if (response.StatusCode == HttpStatusCode.Unauthorized)
            {
                Assert.Equal("jwt.unknown-kid", await ReasonAsync(response));
                break;
            }

            Assert.True(response.StatusCode == HttpStatusCode.OK, $"unexpected {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), $"a token signed by the withdrawn key still passes {watch.Elapsed} after the withdrawal\n{gateway.Logs}");
            await Task.Delay(PollInterval);
        }

        await AssertStatusAsync(gateway, current, HttpStatusCode.OK);
        using var ready = await AdminAsync(gateway, HttpMethod.Get, "/readyz", GrafanaToken);
        Assert.Equal(1, IssuerEntry(JsonDocument.Parse(await ready.Content.ReadAsStringAsync())).GetProperty("keyCount").GetInt32());
    }

    /// <summary>POST /admin/issuers/corp/refresh takes a withdrawn key away at once (before the fix: no such
    /// endpoint, 404, and the key verified until the next refresh); the read scope may not, an unknown issuer is
    /// 404 problem+json; the action is audited with its actor.</summary>
    [Fact]
    public async Task Admin_refresh_withdraws_a_key_at_once_and_needs_the_admin_scope()
    {
        await using var idp = await TestIdentityProvider.StartAsync("idp-admin-refresh");
        await using var upstream = await TestUpstream.StartAsync("orders");
        await using var gateway = await TestGateway.StartAsync(Config(idp, upstream, "{ refreshInterval: 10m }"), environment: Environment);
        await WaitForKeysAsync(gateway);

        var withdrawn = await idp.GetAccessTokenAsync(TestIdentityProvider.Reader);
        await AssertStatusAsync(gateway, withdrawn, HttpStatusCode.OK);
        await idp.RotateSigningKeyAsync();
        await idp.RemoveOldKeysAsync();

        // Nothing told the gateway yet: the withdrawn key still verifies (the exposure the endpoint closes).
        await AssertStatusAsync(gateway, withdrawn, HttpStatusCode.OK);

        using (var read = await AdminAsync(gateway, HttpMethod.Post, "/admin/issuers/corp/refresh", GrafanaToken))
        {
            Assert.Equal(HttpStatusCode.Forbidden, read.StatusCode);
            Assert.Equal("admin.scope-insufficient", await ReasonAsync(read));
        }

        using (var anonymous = await AdminAsync(gateway, HttpMethod.Post, "/admin/issuers/corp/refresh", null))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        }

        await AssertStatusAsync(gateway, withdrawn, HttpStatusCode.OK);

        using (var unknown = await AdminAsync(gateway, HttpMethod.Post, "/admin/issuers/nope/refresh", OpsToken))
        {
            Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
            Assert.Equal("application/problem+json", unknown.Content.Headers.ContentType?.MediaType);
            Assert.Equal("admin.unknown-issuer", await ReasonAsync(unknown));
        }

        using (var refresh = await AdminAsync(gateway, HttpMethod.Post, "/admin/issuers/corp/refresh", OpsToken))
        {
            var body = await refresh.Content.ReadAsStringAsync();
            Assert.True(refresh.StatusCode == HttpStatusCode.OK, $"{(int)refresh.StatusCode}: {body}");
            using var json = JsonDocument.Parse(body);
            Assert.Equal("corp", json.RootElement.GetProperty("issuer").GetString());
            Assert.Equal("refreshed", json.RootElement.GetProperty("result").GetString());
            Assert.Equal(1, json.RootElement.GetProperty("keyCount").GetInt32());
            Assert.False(json.RootElement.TryGetProperty("lastError", out _), body);
        }

        // At once: no waiting, no polling.
        using (var refused = await SendAsync(gateway, withdrawn))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
            Assert.Equal("jwt.unknown-kid", await ReasonAsync(refused));
        }

        await AssertStatusAsync(gateway, await idp.GetAccessTokenAsync(TestIdentityProvider.Reader), HttpStatusCode.OK);

        var record = await AuditRecordAsync("admin.issuer-refresh");
        Assert.Equal("token:ops", record.GetProperty("actor").GetString());
        Assert.Equal("corp", record.GetProperty("issuer").GetString());
        Assert.Equal("refreshed", record.GetProperty("result").GetString());
        Assert.Equal(1, record.GetProperty("keyCount").GetInt32());
        Assert.DoesNotContain(OpsToken, await File.ReadAllTextAsync(AuditPath), StringComparison.Ordinal);
    }

    /// <summary>Item 4: each discovery + JWKS fetch wrote 4 HttpClient info lines per request (8 per refresh);
    /// now none, while the key cache's own line is still written.</summary>
    [Fact]
    public async Task Key_fetches_write_no_HttpClient_log_lines()
    {
        var captured = new CapturingLoggerProvider();
        await using var idp = await TestIdentityProvider.StartAsync("idp-quiet");
        await using var upstream = await TestUpstream.StartAsync("orders");
        await using var gateway = await TestGateway.StartAsync(
            Config(idp, upstream, "{ }"), environment: Environment, configureServices: services => services.AddSingleton<ILoggerProvider>(captured));
        await WaitForKeysAsync(gateway);
        using (var refresh = await AdminAsync(gateway, HttpMethod.Post, "/admin/issuers/corp/refresh", OpsToken))
        {
            Assert.Equal(HttpStatusCode.OK, refresh.StatusCode);
        }

        Assert.True(idp.JwksRequests >= 2, $"{idp.JwksRequests} JWKS requests");
        Assert.Contains(captured.Lines, l => l.StartsWith("Portcullis.Identity.IssuerKeyCache: Issuer corp: fetched", StringComparison.Ordinal));
        var httpClientLines = captured.Lines.Where(l => l.StartsWith("System.Net.Http.HttpClient.", StringComparison.Ordinal)).ToList();
        Assert.True(httpClientLines.Count == 0, "HttpClient log lines:\n" + string.Join("\n", httpClientLines));
    }

    private static async Task WaitForKeysAsync(TestGateway gateway)
    {
        var watch = Stopwatch.StartNew();
        while (true)
        {
            using var response = await AdminAsync(gateway, HttpMethod.Get, "/readyz", GrafanaToken);
            var entry = IssuerEntry(JsonDocument.Parse(await response.Content.ReadAsStringAsync()));
            if (entry.TryGetProperty("keyCount", out var count) && count.GetInt32() > 0) return;
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), $"no keys 30s after start\n{gateway.Logs}");
            await Task.Delay(PollInterval);
        }
    }

    private static JsonElement IssuerEntry(JsonDocument ready) =>
        ready.RootElement.GetProperty("issuers").EnumerateArray().Single(i => i.GetProperty("name").GetString() == "corp").Clone();

    private static async Task<HttpResponseMessage> AdminAsync(TestGateway gateway, HttpMethod method, string path, string? token)
    {
        using var request = new HttpRequestMessage(method, path);
        if (token is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return await gateway.Admin.SendAsync(request);
    }

    private static async Task<HttpResponseMessage> SendAsync(TestGateway gateway, string token)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/orders/1");
        request.Headers.TryAddWithoutValidation("Authorization", "Bearer " + token);
        return await gateway.Client.SendAsync(request);
    }

    private static async Task AssertStatusAsync(TestGateway gateway, string token, HttpStatusCode expected)
    {
        using var response = await SendAsync(gateway, token);
        if (response.StatusCode != expected)
        {
            Assert.Fail($"expected {(int)expected}, got {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}\n--- gateway log ---\n{gateway.Logs}");
        }
    }

    private static async Task<string?> ReasonAsync(HttpResponseMessage response)
    {
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return json.RootElement.GetProperty("reason").GetString();
    }

    private async Task<JsonElement> AuditRecordAsync(string type)
    {
        var watch = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                await using var stream = new FileStream(AuditPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                using var reader = new StreamReader(stream);
                foreach (var line in (await reader.ReadToEndAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries))
                {
                    var record = JsonDocument.Parse(line).RootElement;
                    if (record.GetProperty("type").GetString() == type) return record.Clone();
                }
            }
            catch (IOException)
            {
                // Not written yet, or held for a moment by the writer.
            }

            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(15), $"no {type} audit record within 15s");
            await Task.Delay(20);
        }
    }

    /// <summary>Every log line of every category at Information and up, as "category: message".</summary>
    private sealed class CapturingLoggerProvider : ILoggerProvider
    {
        private readonly ConcurrentQueue<string> _lines = new();

        public IReadOnlyCollection<string> Lines => _lines;

        public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

        public void Dispose()
        {
        }

        private sealed class Logger(CapturingLoggerProvider owner, string category) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                if (IsEnabled(logLevel)) owner._lines.Enqueue(category + ": " + formatter(state, exception));
            }
        }
    }
}
