using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests;

/// <summary>
/// routes[].jsonLimits end to end on real sockets: bodies within the limits reach the upstream byte for byte;
/// each broken limit answers its status and reason as problem+json and the upstream never receives a whole
/// offending body; a declared oversize body never reaches the upstream; a violation early in a body that never
/// ends is answered at once (checked while streaming, not after buffering).
/// </summary>
public sealed class JsonLimitsTests : IAsyncLifetime
{
    private TestUpstream _upstream = null!;
    private TestGateway _gateway = null!;

    // Bodies the upstream read to their end (an aborted upload throws in its read and is not listed).
    private readonly ConcurrentQueue<string> _received = new();

    public async Task InitializeAsync()
    {
        _upstream = await TestUpstream.StartAsync("api");
        _upstream.Handler = async context =>
        {
            using var reader = new StreamReader(context.Request.Body, Encoding.UTF8);
            var body = await reader.ReadToEndAsync(context.RequestAborted);
            _received.Enqueue(body);
            context.Response.ContentType = "text/plain";
            await context.Response.WriteAsync("ok " + body.Length);
        };
        _gateway = await TestGateway.StartAsync($$"""
            routes:
              - name: strict
                match: { pathPrefix: /strict }
                jsonLimits: { maxSize: 64KiB, maxDepth: 4, maxStringLength: 16, maxArrayItems: 5, maxObjectMembers: 3, requireJson: true }
                cluster: api
              - name: lenient
                match: { pathPrefix: /lenient }
                jsonLimits: { maxDepth: 4 }
                cluster: api
              - name: open
                match: { pathPrefix: /open }
                cluster: api
            clusters:
              api: { destinations: [{{_upstream.Url}}] }
            """);
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _upstream.DisposeAsync();
    }

    private async Task<(HttpStatusCode Status, string Body, string? ContentType)> PostAsync(string path, string body, string contentType = "application/json")
    {
        using var content = new StringContent(body, Encoding.UTF8);
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue(contentType);
        using var response = await _gateway.Client.PostAsync(path, content);
        return (response.StatusCode, await response.Content.ReadAsStringAsync(), response.Content.Headers.ContentType?.MediaType);
    }

    [Fact]
    public async Task A_body_within_the_limits_reaches_the_upstream_unchanged()
    {
        const string body = "{\"order\": {\"id\": \"A-17\", \"lines\": [1, 2, 3]}, \"note\": \"ok\"}";
        var (status, answer, _) = await PostAsync("/strict/orders", body);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("ok " + body.Length, answer);
        Assert.Contains(body, _received);
    }

    [Theory]
    [InlineData("[[[[[1]]]]]", 400, "request.json-too-deep")]
    [InlineData("{\"name\": \"a string longer than sixteen bytes\"}", 400, "request.json-string-too-long")]
    [InlineData("{\"a property name that is too long\": 1}", 400, "request.json-string-too-long")]
    [InlineData("[1, 2, 3, 4, 5, 6]", 400, "request.json-too-many-items")]
    [InlineData("{\"a\": 1, \"b\": 2, \"c\": 3, \"d\": 4}", 400, "request.json-too-many-members")]
    [InlineData("{\"a\": 1,}", 400, "request.json-malformed")]
    [InlineData("{\"a\": 1", 400, "request.json-malformed")]
    public async Task Each_broken_limit_is_answered_with_its_reason_and_the_upstream_never_gets_the_whole_body(string body, int expected, string reason)
    {
        var (status, answer, contentType) = await PostAsync("/strict/orders", body);
        Assert.Equal(expected, (int)status);
        Assert.Equal("application/problem+json", contentType);
        using var problem = JsonDocument.Parse(answer);
        Assert.Equal(reason, problem.RootElement.GetProperty("reason").GetString());
        Assert.Equal(expected, problem.RootElement.GetProperty("status").GetInt32());
        Assert.DoesNotContain(body, _received);
        Assert.DoesNotContain("Exception", answer, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_declared_oversize_body_is_refused_before_the_upstream_is_contacted()
    {
        var before = _upstream.Requests;
        var body = "[" + string.Join(',', Enumerable.Repeat("\"0123456789\"", 6000)) + "]"; // ~78 KB > 64 KiB
        var (status, answer, _) = await PostAsync("/strict/orders", body);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, status);
        Assert.Equal("request.json-too-large", JsonDocument.Parse(answer).RootElement.GetProperty("reason").GetString());
        Assert.Equal(before, _upstream.Requests);
    }

    [Fact]
    public async Task Non_json_bodies_are_refused_where_json_is_required_and_pass_unchecked_elsewhere()
    {
        var (status, answer, _) = await PostAsync("/strict/upload", "[[[[[[[[not json", "text/plain");
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, status);
        Assert.Equal("request.json-required", JsonDocument.Parse(answer).RootElement.GetProperty("reason").GetString());

        (status, _, _) = await PostAsync("/lenient/upload", "[[[[[[[[not json", "text/plain");
        Assert.Equal(HttpStatusCode.OK, status);
        (status, _, _) = await PostAsync("/lenient/upload", "[[[[[[[[1]]]]]]]]", "application/vnd.api+json");
        Assert.Equal(HttpStatusCode.BadRequest, status);
        // A route without jsonLimits is not checked at all.
        (status, _, _) = await PostAsync("/open/upload", "[[[[[[[[1]]]]]]]]");
        Assert.Equal(HttpStatusCode.OK, status);
        // Bodiless requests pass untouched.
        using var get = await _gateway.Client.GetAsync("/strict/orders");
        Assert.Equal(HttpStatusCode.OK, get.StatusCode);
    }

    [Fact]
    public async Task A_violation_early_in_a_body_that_never_ends_is_answered_at_once()
    {
        // Chunked, so no length is declared: the first chunk nests too deep and the client then sends nothing more
        // and keeps the upload open. A gateway that buffered the body first would wait for the rest forever.
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, _gateway.Port);
        var stream = client.GetStream();
        const string chunk = "[[[[[[[[[[1";
        var head = $"POST /strict/orders HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{chunk.Length:x}\r\n{chunk}\r\n";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(head));

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var response = new StringBuilder();
        var buffer = new byte[4096];
        while (!response.ToString().Contains('}'))
        {
            var read = await stream.ReadAsync(buffer, timeout.Token);
            if (read == 0) break;
            response.Append(Encoding.ASCII.GetString(buffer, 0, read));
        }

        var text = response.ToString();
        Assert.StartsWith("HTTP/1.1 400", text, StringComparison.Ordinal);
        Assert.Contains("request.json-too-deep", text, StringComparison.Ordinal);
        Assert.Contains("Connection: close", text, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain(_received, b => b.StartsWith("[[[[", StringComparison.Ordinal));
    }
}
