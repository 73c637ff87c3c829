using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Portcullis.Cli;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Sessions;

/// <summary>
/// routes[].cors in a real browser (headless Chromium): a page on http://127.0.0.1:PORT calls the API on
/// http://localhost:PORT (another origin). A preflighted PUT with an API key and credentials works and its
/// preflight never reaches the upstream or the key check; a route that does not allow the page's origin is
/// blocked by the browser; an unknown origin's preflight gets no CORS headers.
/// </summary>
[Collection(BrowserCollection.Name)]
public sealed class CorsBrowserTests : IAsyncLifetime
{
    private Browser _browser = null!;
    private TestUpstream _upstream = null!;
    private TestGateway _gateway = null!;
    private string _key = "";
    private readonly ConcurrentQueue<string> _methods = new();

    public async Task InitializeAsync()
    {
        _browser = await Browser.LaunchAsync();
        _upstream = await TestUpstream.StartAsync("api");
        _upstream.Handler = async context =>
        {
            _methods.Enqueue(context.Request.Method);
            context.Response.Headers["X-Seen-Key"] = context.Request.Headers.ContainsKey("X-Api-Key") ? "yes" : "no";
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync(JsonSerializer.Serialize(new { method = context.Request.Method, origin = context.Request.Headers.Origin.ToString() }));
        };

        var directory = Directory.CreateTempSubdirectory("portcullis-cors-keys-");
        var keyFile = Path.Combine(directory.FullName, "keys.yaml");
        await File.WriteAllTextAsync(keyFile, "consumers: {}\n");
        using (var output = new StringWriter())
        using (var errors = new StringWriter())
        {
            Assert.Equal(0, await PortcullisCli.RunAsync(["keys", "create", "--file", keyFile, "--consumer", "web"], output, errors));
            _key = output.ToString().Split('\n').Select(l => l.TrimEnd('\r')).Single(l => l.StartsWith("key: ", StringComparison.Ordinal))[5..];
        }

        _gateway = await TestGateway.StartAsync($$"""
            identity:
              apiKeys: { file: keys.yaml }
            routes:
              - name: page
                match: { path: /page }
                respond: { status: 200, contentType: text/html, body: "<html><body>app</body></html>" }
              - name: api
                match: { pathPrefix: /api, methods: [GET, PUT] }
                auth: { apiKey: true }
                cors:
                  allowOrigins: ["http://127.0.0.1:{{"{{PORT}}"}}"]
                  allowMethods: [GET, PUT]
                  allowHeaders: [X-Api-Key, Content-Type]
                  exposeHeaders: [X-Seen-Key]
                  allowCredentials: true
                  maxAge: 0s
                cluster: api
              - name: strict
                match: { pathPrefix: /strict }
                cors: { allowOrigins: ["https://app.example.com"] }
                cluster: api
            clusters:
              api: { destinations: [{{_upstream.Url}}] }
            """, new Dictionary<string, string> { ["keys.yaml"] = await File.ReadAllTextAsync(keyFile) });
        directory.Delete(recursive: true);
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _upstream.DisposeAsync();
        await _browser.DisposeAsync();
    }

    private string CrossOrigin => $"http://localhost:{_gateway.Port}";

    [Fact]
    public async Task A_preflighted_put_with_a_key_and_credentials_works_and_its_preflight_stops_at_the_gateway()
    {
        var page = await _browser.NewPageAsync();
        await page.GotoAsync(_gateway.Url + "/page");
        var answer = await page.EvaluateAsync<JsonElement>("""
            async ([api, key]) => {
              const r = await fetch(api + '/api/orders/1', { method: 'PUT', credentials: 'include',
                headers: { 'X-Api-Key': key, 'Content-Type': 'application/json' }, body: '{}' });
              return { status: r.status, body: await r.json(), seenKey: r.headers.get('X-Seen-Key') };
            }
            """, new[] { CrossOrigin, _key });
        Assert.Equal(200, answer.GetProperty("status").GetInt32());
        Assert.Equal("PUT", answer.GetProperty("body").GetProperty("method").GetString());
        Assert.Equal(_gateway.Url, answer.GetProperty("body").GetProperty("origin").GetString());
        // An exposed header the page may read (its value: the gateway took the key off before the upstream).
        Assert.Equal("no", answer.GetProperty("seenKey").GetString());
        Assert.Equal(["PUT"], _methods); // the OPTIONS preflight was answered by the gateway
    }

    [Fact]
    public async Task A_route_that_does_not_allow_the_pages_origin_is_blocked_by_the_browser()
    {
        var page = await _browser.NewPageAsync();
        await page.GotoAsync(_gateway.Url + "/page");
        var result = await page.EvaluateAsync<string>("""
            async (api) => fetch(api + '/strict/x').then(r => 'read ' + r.status, e => 'blocked ' + e.name)
            """, CrossOrigin);
        Assert.Equal("blocked TypeError", result);
    }

    [Fact]
    public async Task Preflights_are_answered_without_auth_and_an_unknown_origin_gets_no_cors_headers()
    {
        using var allowed = new HttpRequestMessage(HttpMethod.Options, _gateway.Url + "/api/orders/1");
        allowed.Headers.Add("Origin", _gateway.Url);
        allowed.Headers.Add("Access-Control-Request-Method", "PUT");
        allowed.Headers.Add("Access-Control-Request-Headers", "x-api-key");
        using var yes = await _gateway.Client.SendAsync(allowed);
        Assert.Equal(HttpStatusCode.NoContent, yes.StatusCode);
        Assert.Equal(_gateway.Url, yes.Headers.GetValues("Access-Control-Allow-Origin").Single());
        Assert.Equal("true", yes.Headers.GetValues("Access-Control-Allow-Credentials").Single());

        using var refused = new HttpRequestMessage(HttpMethod.Options, _gateway.Url + "/api/orders/1");
        refused.Headers.Add("Origin", "https://evil.example");
        refused.Headers.Add("Access-Control-Request-Method", "PUT");
        using var no = await _gateway.Client.SendAsync(refused);
        Assert.Equal(HttpStatusCode.NoContent, no.StatusCode);
        Assert.False(no.Headers.Contains("Access-Control-Allow-Origin"));
        Assert.Empty(_methods); // neither reached the upstream

        // Without an Origin header the route is not cross-origin: its auth still applies.
        using var plain = await _gateway.Client.GetAsync(_gateway.Url + "/api/orders/1");
        Assert.Equal(HttpStatusCode.Unauthorized, plain.StatusCode);
    }
}
