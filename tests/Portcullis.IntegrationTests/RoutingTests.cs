using System.Net;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests;

/// <summary>Route matching (hosts, paths, methods, headers, query), precedence, and the three route actions.</summary>
public sealed class RoutingTests : IAsyncLifetime
{
    private readonly Dictionary<string, TestUpstream> _upstreams = [];
    private TestGateway _gateway = null!;

    public async Task InitializeAsync()
    {
        foreach (var name in new[] { "exact-host", "wild-host", "template", "prefix", "methods", "hdr-exact", "hdr-prefix", "hdr-present", "hdr-absent", "query", "first", "second", "ordered", "fallback" })
        {
            _upstreams[name] = await TestUpstream.StartAsync(name);
        }

        var clusters = string.Join("\n", _upstreams.Select(u => $"  {u.Key}:\n    destinations: [{u.Value.Url}]"));
        _gateway = await TestGateway.StartAsync($$"""
            routes:
              - name: exact-host
                match: { hosts: [api.example.com], pathPrefix: /h }
                cluster: exact-host
              - name: wild-host
                match: { hosts: ["*.example.com"], pathPrefix: /h }
                cluster: wild-host
              - name: template
                match: { path: "/items/{id}/detail" }
                cluster: template
              - name: prefix
                match: { pathPrefix: /files }
                stripPrefix: /files
                cluster: prefix
              - name: methods
                match: { pathPrefix: /m, methods: [POST, put] }
                cluster: methods
              - name: hdr-exact
                match: { pathPrefix: /hdr, headers: [{ name: X-Env, values: [prod, staging] }] }
                cluster: hdr-exact
              - name: hdr-prefix
                match: { pathPrefix: /hdr, headers: [{ name: X-Env, values: [dev-], mode: prefix }] }
                cluster: hdr-prefix
              - name: hdr-present
                match: { pathPrefix: /hdr, headers: [{ name: X-Debug, mode: present }] }
                cluster: hdr-present
              - name: hdr-absent
                match: { pathPrefix: /hdr, headers: [{ name: X-Env, mode: absent }] }
                cluster: hdr-absent
              - name: query
                match: { pathPrefix: /q, query: [{ name: version, values: ["2"] }] }
                cluster: query
              - name: first
                match: { pathPrefix: /overlap }
                cluster: first
              - name: second
                match: { pathPrefix: /overlap/deeper }
                cluster: second
              - name: ordered
                order: -1
                match: { pathPrefix: /overlap/deeper/ordered }
                cluster: ordered
              - name: preserve
                match: { pathPrefix: /preserve }
                preserveHost: true
                cluster: fallback
              - name: moved
                match: { path: /old }
                redirect: { url: "https://new.example.com/new", status: 301 }
              - name: moved-keep-path
                match: { pathPrefix: /legacy }
                redirect: { url: "https://new.example.com", status: 308, appendPath: true }
              - name: teapot
                match: { path: /brew }
                respond: { status: 418, body: "short and stout\n", contentType: text/plain, headers: { X-Pot: tea } }
            clusters:
            {{clusters}}
            """);
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        foreach (var upstream in _upstreams.Values) await upstream.DisposeAsync();
    }

    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, string? host = null, params (string Name, string Value)[] headers)
    {
        using var request = new HttpRequestMessage(method, path);
        if (host is not null) request.Headers.Host = host;
        foreach (var (name, value) in headers) request.Headers.TryAddWithoutValidation(name, value);
        return await _gateway.Client.SendAsync(request);
    }

    private async Task<string?> ServerAsync(HttpMethod method, string path, string? host = null, params (string, string)[] headers)
    {
        using var response = await SendAsync(method, path, host, headers);
        if (response.StatusCode != HttpStatusCode.OK) return $"{(int)response.StatusCode}";
        return (await UpstreamAnswer.ReadAsync(response)).Server;
    }

    [Theory]
    [InlineData("api.example.com", "exact-host")]
    [InlineData("API.EXAMPLE.COM", "exact-host")]
    [InlineData("eu.example.com", "wild-host")]
    [InlineData("a.b.example.com", "wild-host")]
    [InlineData("example.com", "404")]
    [InlineData("api.example.org", "404")]
    public async Task Hosts_ExactAndWildcard(string host, string expected) =>
        Assert.Equal(expected, await ServerAsync(HttpMethod.Get, "/h", host));

    [Theory]
    [InlineData("/items/42/detail", "template")]
    [InlineData("/items/42", "404")]
    [InlineData("/items/42/detail/more", "404")]
    [InlineData("/files", "prefix")]
    [InlineData("/files/a/b.txt", "prefix")]
    [InlineData("/filesystem", "404")]
    public async Task Paths_TemplateAndPrefix(string path, string expected) =>
        Assert.Equal(expected, await ServerAsync(HttpMethod.Get, path));

    [Fact]
    public async Task StripPrefix_RemovesThePrefixBeforeProxying()
    {
        using var response = await SendAsync(HttpMethod.Get, "/files/a/b.txt?x=1");
        var seen = await UpstreamAnswer.ReadAsync(response);
        Assert.Equal("/a/b.txt", seen.Path);
        Assert.Equal("?x=1", seen.Query);
    }

    [Fact]
    public async Task Methods_AreMatchedCaseInsensitively()
    {
        Assert.Equal("methods", await ServerAsync(HttpMethod.Post, "/m"));
        Assert.Equal("methods", await ServerAsync(HttpMethod.Put, "/m"));
        Assert.Equal("404", await ServerAsync(HttpMethod.Get, "/m"));
    }

    [Theory]
    [InlineData("X-Env", "prod", "hdr-exact")]
    [InlineData("X-Env", "STAGING", "hdr-exact")]
    [InlineData("X-Env", "dev-7", "hdr-prefix")]
    [InlineData("X-Other", "1", "hdr-absent")]
    [InlineData("X-Env", "qa", "404")]
    public async Task Headers_ExactPrefixPresentAbsent(string name, string value, string expected) =>
        Assert.Equal(expected, await ServerAsync(HttpMethod.Get, "/hdr", null, (name, value)));

    [Fact]
    public async Task Headers_Present()
    {
        Assert.Equal("hdr-present", await ServerAsync(HttpMethod.Get, "/hdr", null, ("X-Debug", "1"), ("X-Env", "qa")));
        Assert.Equal("hdr-absent", await ServerAsync(HttpMethod.Get, "/hdr"));
    }

    [Theory]
    [InlineData("/q?version=2", "query")]
    [InlineData("/q?version=3", "404")]
    [InlineData("/q", "404")]
    public async Task Query_Exact(string path, string expected) =>
        Assert.Equal(expected, await ServerAsync(HttpMethod.Get, path));

    [Theory]
    [InlineData("/overlap/x", "first")]
    [InlineData("/overlap/deeper/x", "first")]
    [InlineData("/overlap/deeper/ordered/x", "ordered")]
    public async Task Precedence_FirstMatchInFileOrder_UnlessOrderSaysOtherwise(string path, string expected) =>
        Assert.Equal(expected, await ServerAsync(HttpMethod.Get, path));

    [Fact]
    public async Task PreserveHost_SendsTheClientsHost()
    {
        using var preserved = await SendAsync(HttpMethod.Get, "/preserve", "shop.example.com");
        Assert.Equal("shop.example.com", (await UpstreamAnswer.ReadAsync(preserved)).Header("Host"));
        using var rewritten = await SendAsync(HttpMethod.Get, "/files/x", "shop.example.com");
        var seen = await UpstreamAnswer.ReadAsync(rewritten);
        Assert.Equal($"127.0.0.1:{_upstreams["prefix"].Port}", seen.Header("Host"));
        Assert.Equal("shop.example.com", seen.Header("X-Forwarded-Host"));
    }

    [Fact]
    public async Task Redirect_AnswersWithLocation()
    {
        using var client = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = new Uri(_gateway.Url) };
        using var response = await client.GetAsync("/old");
        Assert.Equal(HttpStatusCode.MovedPermanently, response.StatusCode);
        Assert.Equal("https://new.example.com/new", response.Headers.Location?.ToString());

        using var kept = await client.GetAsync("/legacy/a?b=1");
        Assert.Equal(HttpStatusCode.PermanentRedirect, kept.StatusCode);
        Assert.Equal("https://new.example.com/legacy/a?b=1", kept.Headers.Location?.ToString());
    }

    [Fact]
    public async Task FixedResponse_AnswersWithoutAnUpstream()
    {
        using var response = await SendAsync(HttpMethod.Get, "/brew");
        Assert.Equal((HttpStatusCode)418, response.StatusCode);
        Assert.Equal("short and stout\n", await response.Content.ReadAsStringAsync());
        Assert.Equal("tea", response.Headers.GetValues("X-Pot").Single());
        Assert.Equal("text/plain", response.Content.Headers.ContentType?.MediaType);
    }

    [Fact]
    public async Task NoRoute_Is404ProblemJson()
    {
        using var response = await SendAsync(HttpMethod.Get, "/nothing/here");
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Contains("\"reason\":\"route.unmatched\"", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }
}
