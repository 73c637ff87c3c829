using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Portcullis.Cli;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Observability;

/// <summary>Reads the access-log file of a test gateway: lines by request id, waiting for the background writer.</summary>
internal static class AccessLogFile
{
    public static async Task<JsonElement> LineAsync(string path, string requestId, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(10));
        while (true)
        {
            foreach (var line in await LinesAsync(path))
            {
                if (line.GetProperty("requestId").GetString() == requestId) return line;
            }

            if (DateTime.UtcNow > deadline) throw new TimeoutException($"no access-log line for {requestId} in {path}:\n{await TextAsync(path)}");
            await Task.Delay(20);
        }
    }

    public static async Task<List<JsonElement>> LinesAsync(string path)
    {
        var lines = new List<JsonElement>();
        foreach (var line in (await TextAsync(path)).Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            lines.Add(JsonDocument.Parse(line).RootElement.Clone());
        }

        return lines;
    }

    public static async Task<string> TextAsync(string path)
    {
        if (!File.Exists(path)) return "";
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        return await reader.ReadToEndAsync();
    }

    public static string RequestId(HttpResponseMessage response) => response.Headers.GetValues("X-Request-Id").Single();
}

/// <summary>One access-log line per answer kind (200, 401, 403, 429, 502), every field, and no secret in any log.</summary>
public sealed class AccessLogTests : IAsyncLifetime
{
    private const string Issuer = "https://issuer.test/";
    private readonly TokenFactory _tokens = new(Issuer, "orders-api");
    private TestUpstream _upstream = null!;
    private TestGateway _gateway = null!;
    private string _apiKey = null!;
    private int _deadPort;

    private string LogPath => Path.Combine(_gateway.Directory, "access.log");

    public async Task InitializeAsync()
    {
        _upstream = await TestUpstream.StartAsync("api");
        _upstream.Handler = static async context =>
        {
            var body = Encoding.UTF8.GetBytes("{\"ok\":true}");
            context.Response.ContentType = "application/json";
            context.Response.ContentLength = body.Length;
            await context.Response.Body.WriteAsync(body);
        };
        _deadPort = Ports.GetFree();
        var keys = Path.Combine(Path.GetTempPath(), $"portcullis-keys-{Guid.NewGuid():N}.yaml");
        await File.WriteAllTextAsync(keys, "consumers: {}\n");
        using (var output = new StringWriter())
        using (var errors = new StringWriter())
        {
            Assert.Equal(0, await PortcullisCli.RunAsync(["keys", "create", "--file", keys, "--consumer", "shop"], output, errors));
            _apiKey = output.ToString().Split('\n').Select(l => l.TrimEnd('\r')).Single(l => l.StartsWith("key: ", StringComparison.Ordinal))[5..];
        }

        _gateway = await TestGateway.StartAsync($$"""
            identity:
              issuers:
                - { name: corp, jwksFile: jwks.json, issuer: "{{Issuer}}", audiences: [orders-api] }
              apiKeys: { file: keys.yaml, queryParameter: apikey }
            rateLimits:
              one-per-minute: { key: ip, limit: 1, per: 1m }
            routes:
              - { name: public, match: { pathPrefix: /public }, cluster: api }
              - { name: orders, match: { pathPrefix: /orders }, auth: { issuers: [corp], scopes: [orders.read] }, cluster: api }
              - { name: keyed, match: { pathPrefix: /keyed }, auth: { apiKey: true }, cluster: api }
              - { name: limited, match: { pathPrefix: /limited }, rateLimits: [one-per-minute], cluster: api }
              - { name: dead, match: { pathPrefix: /dead }, cluster: dead }
            clusters:
              api: { destinations: ["{{_upstream.Url}}"] }
              dead: { destinations: ["http://127.0.0.1:{{_deadPort}}"] }
            observability:
              accessLog: { enabled: true, target: file, path: access.log }
            """, new Dictionary<string, string> { ["jwks.json"] = _tokens.JwksJson(), ["keys.yaml"] = await File.ReadAllTextAsync(keys) });
        File.Delete(keys);
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _upstream.DisposeAsync();
        _tokens.Dispose();
    }

    private async Task<(HttpResponseMessage Response, JsonElement Line)> SendAsync(string path, Action<HttpRequestMessage>? configure = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        request.Headers.UserAgent.ParseAdd("portcullis-test/1.0");
        configure?.Invoke(request);
        var response = await _gateway.Client.SendAsync(request);
        var line = await AccessLogFile.LineAsync(LogPath, AccessLogFile.RequestId(response));
        return (response, line);
    }

    private void AssertCommon(JsonElement line, HttpResponseMessage response, string path)
    {
        Assert.True(DateTimeOffset.TryParse(line.GetProperty("time").GetString(), out var time));
        Assert.InRange(time, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddSeconds(1));
        Assert.Equal(AccessLogFile.RequestId(response), line.GetProperty("requestId").GetString());
        Assert.Matches("^[0-9a-f]{32}$", line.GetProperty("traceId").GetString());
        Assert.Matches("^[0-9a-f]{16}$", line.GetProperty("spanId").GetString());
        Assert.Equal("public", line.GetProperty("listener").GetString());
        Assert.Equal("GET", line.GetProperty("method").GetString());
        Assert.Equal("http", line.GetProperty("scheme").GetString());
        Assert.Equal($"127.0.0.1:{_gateway.Port}", line.GetProperty("host").GetString());
        Assert.Equal(path, line.GetProperty("path").GetString());
        Assert.Equal("HTTP/1.1", line.GetProperty("protocol").GetString());
        Assert.Equal((int)response.StatusCode, line.GetProperty("status").GetInt32());
        Assert.Equal(0, line.GetProperty("bytesIn").GetInt64());
        Assert.Equal(response.Content.Headers.ContentLength, line.GetProperty("bytesOut").GetInt64());
        Assert.True(line.GetProperty("totalMs").GetDouble() >= 0);
        Assert.Equal("127.0.0.1", line.GetProperty("clientIp").GetString());
        Assert.Equal("portcullis-test/1.0", line.GetProperty("userAgent").GetString());
        Assert.Equal(JsonValueKind.Null, line.GetProperty("tlsVersion").ValueKind);
        Assert.Equal(JsonValueKind.Null, line.GetProperty("sni").ValueKind);
        var edge = line.GetProperty("stages").GetProperty("edge");
        Assert.Equal("public", edge.GetProperty("listener").GetString());
        Assert.Equal("none", edge.GetProperty("tls").GetString());
        Assert.Equal("ok", edge.GetProperty("limits").GetString());
    }

    [Fact]
    public async Task A_200_line_tells_route_cluster_destination_timings_and_redacts_the_query()
    {
        var (response, line) = await SendAsync("/public/items?page=2&apikey=" + _apiKey);
        using var _ = response;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        AssertCommon(line, response, "/public/items");
        Assert.Equal("?page=*&apikey=*", line.GetProperty("query").GetString());
        Assert.Equal("public", line.GetProperty("route").GetString());
        Assert.Equal("api", line.GetProperty("cluster").GetString());
        Assert.Equal(_upstream.Url, line.GetProperty("destination").GetString()!.TrimEnd('/'));
        Assert.Equal(1, line.GetProperty("attempts").GetInt32());
        Assert.True(line.GetProperty("upstreamMs").GetDouble() > 0);
        Assert.True(line.GetProperty("upstreamMs").GetDouble() <= line.GetProperty("totalMs").GetDouble());
        Assert.Equal(JsonValueKind.Null, line.GetProperty("identityMs").ValueKind);
        Assert.Equal(JsonValueKind.Null, line.GetProperty("trafficMs").ValueKind);
        Assert.Equal("none", line.GetProperty("auth").GetString());
        Assert.Equal(JsonValueKind.Null, line.GetProperty("consumer").ValueKind);
        Assert.Equal(JsonValueKind.Null, line.GetProperty("reason").ValueKind);
        var stages = line.GetProperty("stages");
        Assert.Equal("matched", stages.GetProperty("route").GetProperty("result").GetString());
        Assert.Equal("none", stages.GetProperty("identity").GetProperty("result").GetString());
        Assert.Equal("none", stages.GetProperty("traffic").GetProperty("result").GetString());
        var upstream = stages.GetProperty("upstream");
        Assert.Equal("ok", upstream.GetProperty("result").GetString());
        Assert.Equal(200, upstream.GetProperty("status").GetInt32());
        Assert.Equal(1, upstream.GetProperty("attempt").GetInt32());
        await AssertNoSecretAsync(_apiKey);
    }

    [Fact]
    public async Task A_jwt_and_an_api_key_route_log_the_consumer_and_identity_time()
    {
        var token = _tokens.Create(new Dictionary<string, object> { ["scope"] = "orders.read", ["sub"] = "alice", ["client_id"] = "web-shop" });
        var (response, line) = await SendAsync("/orders/1", r => r.Headers.TryAddWithoutValidation("Authorization", "Bearer " + token));
        using var _ = response;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("allowed", line.GetProperty("auth").GetString());
        Assert.Equal("jwt.valid", line.GetProperty("authReason").GetString());
        Assert.True(line.GetProperty("identityMs").GetDouble() >= 0);
        Assert.Equal("allowed", line.GetProperty("stages").GetProperty("authorization").GetProperty("result").GetString());

        var (keyed, keyLine) = await SendAsync("/keyed/1", r => r.Headers.TryAddWithoutValidation("X-Api-Key", _apiKey));
        using var __ = keyed;
        Assert.Equal(HttpStatusCode.OK, keyed.StatusCode);
        Assert.Equal("shop", keyLine.GetProperty("consumer").GetString());
        Assert.Equal("allowed", keyLine.GetProperty("auth").GetString());
        Assert.StartsWith("apikey.", keyLine.GetProperty("authReason").GetString(), StringComparison.Ordinal);

        await AssertNoSecretAsync(token, _apiKey);
    }

    [Fact]
    public async Task A_401_line_names_the_auth_reason_and_no_upstream()
    {
        var (response, line) = await SendAsync("/orders/1");
        using var _ = response;
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        AssertCommon(line, response, "/orders/1");
        Assert.Equal("orders", line.GetProperty("route").GetString());
        Assert.Equal("unauthenticated", line.GetProperty("auth").GetString());
        Assert.Equal("auth.missing", line.GetProperty("authReason").GetString());
        Assert.Equal(0, line.GetProperty("attempts").GetInt32());
        Assert.True(line.GetProperty("identityMs").GetDouble() >= 0);
        Assert.Equal(JsonValueKind.Null, line.GetProperty("upstreamMs").ValueKind);
        var stages = line.GetProperty("stages");
        Assert.Equal("auth.missing", stages.GetProperty("identity").GetProperty("result").GetString());
        Assert.Equal("not-reached", stages.GetProperty("authorization").GetProperty("result").GetString());
        Assert.Equal("not-reached", stages.GetProperty("upstream").GetProperty("result").GetString());

        // A forged token is refused too, and appears nowhere.
        var forged = _tokens.Create(new Dictionary<string, object> { ["scope"] = "orders.read" }, issuer: "https://evil.test/");
        var (bad, badLine) = await SendAsync("/orders/1", r => r.Headers.TryAddWithoutValidation("Authorization", "Bearer " + forged));
        using var __ = bad;
        Assert.Equal(HttpStatusCode.Unauthorized, bad.StatusCode);
        Assert.StartsWith("jwt.", badLine.GetProperty("authReason").GetString(), StringComparison.Ordinal);
        await AssertNoSecretAsync(forged);
    }

    [Fact]
    public async Task A_403_line_names_the_authorization_reason()
    {
        var token = _tokens.Create(new Dictionary<string, object> { ["scope"] = "reports.read" });
        var (response, line) = await SendAsync("/orders/1", r => r.Headers.TryAddWithoutValidation("Authorization", "Bearer " + token));
        using var _ = response;
        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        AssertCommon(line, response, "/orders/1");
        Assert.Equal("forbidden", line.GetProperty("auth").GetString());
        Assert.Equal("authz.scope", line.GetProperty("authReason").GetString());
        var stages = line.GetProperty("stages");
        Assert.Equal("authenticated", stages.GetProperty("identity").GetProperty("result").GetString());
        Assert.Equal("authz.scope", stages.GetProperty("authorization").GetProperty("result").GetString());
        Assert.Equal("not-reached", stages.GetProperty("upstream").GetProperty("result").GetString());
        await AssertNoSecretAsync(token);
    }

    [Fact]
    public async Task A_429_line_names_the_rate_limit_decision()
    {
        var (first, firstLine) = await SendAsync("/limited/a");
        using var _ = first;
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        Assert.Equal("admitted", firstLine.GetProperty("rateLimit").GetString());
        Assert.True(firstLine.GetProperty("trafficMs").GetDouble() >= 0);

        var (response, line) = await SendAsync("/limited/a");
        using var __ = response;
        Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
        AssertCommon(line, response, "/limited/a");
        Assert.Equal("ratelimit.exceeded", line.GetProperty("rateLimit").GetString());
        Assert.Equal("ratelimit.exceeded", line.GetProperty("reason").GetString());
        Assert.True(line.GetProperty("trafficMs").GetDouble() >= 0);
        var stages = line.GetProperty("stages");
        Assert.Equal("ratelimit.exceeded", stages.GetProperty("traffic").GetProperty("result").GetString());
        Assert.Equal("not-reached", stages.GetProperty("upstream").GetProperty("result").GetString());
    }

    [Fact]
    public async Task A_502_line_names_the_upstream_error()
    {
        var (response, line) = await SendAsync("/dead/x");
        using var _ = response;
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        AssertCommon(line, response, "/dead/x");
        Assert.Equal("dead", line.GetProperty("cluster").GetString());
        Assert.Equal($"http://127.0.0.1:{_deadPort}", line.GetProperty("destination").GetString()!.TrimEnd('/'));
        Assert.Equal("upstream.error", line.GetProperty("reason").GetString());
        Assert.Equal(1, line.GetProperty("attempts").GetInt32());
        Assert.True(line.GetProperty("upstreamMs").GetDouble() >= 0);
        var upstream = line.GetProperty("stages").GetProperty("upstream");
        Assert.Equal("error", upstream.GetProperty("result").GetString());
        Assert.Equal("request", upstream.GetProperty("error").GetString());
        Assert.Equal(JsonValueKind.Null, upstream.GetProperty("status").ValueKind);
    }

    [Fact]
    public async Task The_admin_api_reports_the_access_log_counters()
    {
        using var _ = (await SendAsync("/public/x")).Response;
        var status = await _gateway.Admin.GetFromJsonAsync<JsonElement>("/admin/observability");
        var log = status.GetProperty("accessLog");
        Assert.True(log.GetProperty("enabled").GetBoolean());
        Assert.Equal("file", log.GetProperty("target").GetString());
        Assert.True(log.GetProperty("written").GetInt64() >= 1);
        Assert.Equal(0, log.GetProperty("dropped").GetInt64());
        Assert.Equal(10_000, log.GetProperty("queueSize").GetInt32());
        Assert.Equal("trustedProxies", status.GetProperty("requestId").GetProperty("trustInbound").GetString());
    }

    /// <summary>Neither the access log nor the gateway's own logs hold a credential sent to it.</summary>
    private async Task AssertNoSecretAsync(params string[] secrets)
    {
        var text = await AccessLogFile.TextAsync(LogPath);
        var logs = _gateway.Logs.ToString();
        foreach (var secret in secrets)
        {
            Assert.DoesNotContain(secret, text, StringComparison.Ordinal);
            Assert.DoesNotContain(secret, logs, StringComparison.Ordinal);
            // Not even a part: a JWT's signature, an API key's random part.
            var tail = secret[^16..];
            Assert.DoesNotContain(tail, text, StringComparison.Ordinal);
            Assert.DoesNotContain(tail, logs, StringComparison.Ordinal);
        }
    }
}
