using System.Net.Http.Headers;
using Microsoft.AspNetCore.Http;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Routing;

/// <summary>
/// Issue 19 item 7: header templates from the caller's identity, response header set/add/remove and query
/// set/remove, against a real upstream that echoes what it received (or answers with headers of its own).
/// </summary>
public sealed class TransformTests : IAsyncLifetime
{
    private const string Issuer = "https://issuer.test/";
    private readonly TokenFactory _tokens = new(Issuer, "orders-api", "k1");
    private TestUpstream _echo = null!;
    private TestUpstream _chatty = null!;
    private TestGateway _gateway = null!;

    public async Task InitializeAsync()
    {
        _echo = await TestUpstream.StartAsync("orders");
        _chatty = await TestUpstream.StartAsync("chatty");
        _chatty.Handler = async context =>
        {
            context.Response.Headers["X-Powered-By"] = "framework/1.2";
            context.Response.Headers["X-Route"] = "forged-by-upstream";
            context.Response.Headers.Vary = "Accept";
            await context.Response.WriteAsync("ok");
        };
        _gateway = await TestGateway.StartAsync($$$"""
            listeners:
              - { name: public, address: "127.0.0.1:{{PORT}}" }
              - { name: admin, address: "127.0.0.1:{{ADMIN_PORT}}", admin: true }
            identity:
              issuers:
                - { name: corp, jwksFile: jwks.json, issuer: "{{{Issuer}}}", audiences: [orders-api] }
            routes:
              - name: orders
                match: { pathPrefix: /orders }
                auth: { issuers: [corp] }
                requestHeaders:
                  set:
                    X-Who: "${consumer}/${claim:sub}"
                    X-Req: "req-${requestId}"
                    X-Team: "${claim:team}"
                transforms:
                  query: { set: { api-version: "2" }, remove: [debug] }
                cluster: orders
              - name: legacy
                match: { pathPrefix: /v1/items }
                transforms:
                  pathRewrite: { regex: '^/v1/items/(?<id>[0-9]+)/(\w+)$', replacement: '/items/$${id}/detail/$1' }
                cluster: orders
              - name: chatty
                match: { pathPrefix: /chatty }
                transforms:
                  response:
                    set: { X-Route: "${route}" }
                    add: { Vary: "Origin" }
                    remove: [X-Powered-By]
                cluster: chatty
            clusters:
              orders: { destinations: [{{{_echo.Url}}}] }
              chatty: { destinations: [{{{_chatty.Url}}}] }
            """, new Dictionary<string, string> { ["jwks.json"] = _tokens.JwksJson() });
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _echo.DisposeAsync();
        await _chatty.DisposeAsync();
        _tokens.Dispose();
    }

    [Fact]
    public async Task IdentityTemplates_ReachTheUpstream_AndOverwriteForgedInboundHeaders()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/orders/1");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _tokens.Create());
        request.Headers.TryAddWithoutValidation("X-Who", "forged");
        request.Headers.TryAddWithoutValidation("X-Team", "forged");
        using var response = await _gateway.Client.SendAsync(request);
        var seen = await UpstreamAnswer.ReadAsync(response);

        var consumer = seen.Header("X-Consumer-Id");
        Assert.False(string.IsNullOrEmpty(consumer));
        Assert.Equal($"{consumer}/alice", seen.Header("X-Who"));
        Assert.Equal("req-" + seen.Header("X-Request-Id"), seen.Header("X-Req"));
        Assert.NotEqual("req-", seen.Header("X-Req"));
        // The token has no team claim: the header is left unset, and the forged inbound one is gone.
        Assert.Null(seen.Header("X-Team"));
    }

    [Fact]
    public async Task Query_SetAndRemove_ReachTheUpstream()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/orders/1?debug=1&api-version=9&keep=x");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _tokens.Create());
        using var response = await _gateway.Client.SendAsync(request);
        var seen = await UpstreamAnswer.ReadAsync(response);

        var query = Microsoft.AspNetCore.WebUtilities.QueryHelpers.ParseQuery(seen.Query);
        Assert.Equal("2", query["api-version"].ToString());
        Assert.Equal("x", query["keep"].ToString());
        Assert.False(query.ContainsKey("debug"));
    }

    [Fact]
    public async Task ResponseHeaders_SetAddRemove()
    {
        using var response = await _gateway.Client.GetAsync("/chatty/1");

        Assert.True(response.IsSuccessStatusCode);
        Assert.False(response.Headers.Contains("X-Powered-By"));
        Assert.Equal(["chatty"], response.Headers.GetValues("X-Route"));
        Assert.Equal(["Accept", "Origin"], response.Headers.Vary);
    }

    [Fact]
    public async Task PathRewrite_UsesNamedAndNumberedCaptures()
    {
        using var response = await _gateway.Client.GetAsync("/v1/items/42/price?x=1");
        var seen = await UpstreamAnswer.ReadAsync(response);

        Assert.Equal("/items/42/detail/price", seen.Path);
        Assert.Equal("?x=1", seen.Query);
    }
}
