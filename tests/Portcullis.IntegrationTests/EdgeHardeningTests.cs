using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.IntegrationTests.Observability;

namespace Portcullis.IntegrationTests;

/// <summary>
/// A gateway with small limits and a file access log in front of an upstream that records every complete
/// request it receives (shared by <see cref="EdgeHardeningTests"/>).
/// </summary>
public sealed class EdgeGateway : IAsyncLifetime
{
    public const int HeadersSize = 4096; // configured; Kestrel's hard limit is twice that
    public const int RequestLine = 1024;

    internal TestUpstream Upstream { get; private set; } = null!;

    internal TestGateway Gateway { get; private set; } = null!;

    internal ConcurrentQueue<SeenRequest> Seen { get; } = new();

    internal string AccessLogPath => Path.Combine(Gateway.Directory, "access.log");

    public async Task InitializeAsync()
    {
        Upstream = await TestUpstream.StartAsync("edge-recorder");
        Upstream.Handler = async context =>
        {
            var request = context.Request;
            using var body = new MemoryStream();
            await request.Body.CopyToAsync(body, context.RequestAborted);
            Seen.Enqueue(new SeenRequest(
                request.Method,
                request.Path.Value ?? "",
                request.Headers.ToDictionary(h => h.Key, h => h.Value.Select(v => v ?? "").ToArray(), StringComparer.OrdinalIgnoreCase),
                Encoding.UTF8.GetString(body.ToArray())));
            context.Response.ContentLength = 2;
            await context.Response.Body.WriteAsync("ok"u8.ToArray());
        };
        Gateway = await TestGateway.StartAsync($$"""
            limits:
              maxRequestHeadersSize: {{HeadersSize}}
              maxRequestLineSize: {{RequestLine}}
              maxRequestBodySize: 1MiB
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                destinations: [{{Upstream.Url}}]
            observability:
              accessLog: { enabled: true, target: file, path: access.log, flushInterval: 0ms }
            """);
    }

    public async Task DisposeAsync()
    {
        await Gateway.DisposeAsync();
        await Upstream.DisposeAsync();
    }
}

public sealed class EdgeHardeningTests(EdgeGateway fixture, Xunit.Abstractions.ITestOutputHelper output) : IClassFixture<EdgeGateway>
{
    private static readonly TimeSpan ReadTimeout = TimeSpan.FromSeconds(5);

    private TestGateway Gateway => fixture.Gateway;

    // ---- point 16: Content-Length must be 1*DIGIT (RFC 9110 §8.6) ----

    [Theory]
    [InlineData("+5")]
    [InlineData("-0")]
    [InlineData("+0")]
    [InlineData("0x5")]
    [InlineData("5e0")]
    public async Task ContentLengthNotDigits_Gets400ProblemJson_AndIsNeverProxied(string contentLength)
    {
        var path = "/cl-" + Uri.EscapeDataString(contentLength);
        await using var connection = await RawConnection.OpenAsync(Gateway.Port);
        await connection.WriteAsync($"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: {contentLength}\r\n\r\nhello");
        var response = await connection.ReadResponseAsync(ReadTimeout);
        output.WriteLine($"observed: Content-Length: {contentLength} -> {response}");

        Assert.NotNull(response);
        Assert.Equal(400, response.Status);
        Assert.StartsWith("application/problem+json", response.Header("Content-Type"));
        using (var problem = JsonDocument.Parse(response.Body))
        {
            Assert.Equal("request.bad-content-length", problem.RootElement.GetProperty("reason").GetString());
        }

        Assert.Equal("close", response.Header("Connection"));
        Assert.True(await connection.IsClosedAsync(ReadTimeout), "the connection must be closed: its framing is unknown");
        var line = await AccessLogFile.LineAsync(fixture.AccessLogPath, response.Header("X-Request-Id")!);
        Assert.Equal("request.bad-content-length", line.GetProperty("reason").GetString());
        await AssertStillServingAsync();
        Assert.DoesNotContain(fixture.Seen, s => s.Path == path);
    }

    [Fact]
    public async Task ContentLengthWithLeadingZeros_IsValidAndProxied()
    {
        // 1*DIGIT allows leading zeros: the strict check must not refuse them.
        var response = await RawHttp.ExchangeAsync(Gateway.Port, "POST /cl-zeros HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 005\r\n\r\nhello");

        Assert.Equal(200, response.Status);
        Assert.Equal("hello", Assert.Single(fixture.Seen, s => s.Path == "/cl-zeros").Body);
    }

    // ---- point 16: chunk extensions are bounded (RFC 9112 §7.1.1) ----

    [Fact]
    public async Task ChunkExtensionOf64KiB_Gets400ProblemJson_AndIsNeverProxied()
    {
        await using var connection = await RawConnection.OpenAsync(Gateway.Port);
        await connection.WriteAsync("POST /chunk-ext-huge HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n");
        var sent = await connection.TryWriteAsync($"5;ext={new string('e', 64 * 1024)}\r\nhello\r\n0\r\n\r\n");
        var response = await connection.ReadResponseAsync(ReadTimeout);
        output.WriteLine($"observed: 64 KiB chunk extension (all sent: {sent}) -> {response}");

        Assert.NotNull(response);
        Assert.Equal(400, response.Status);
        Assert.StartsWith("application/problem+json", response.Header("Content-Type"));
        using (var problem = JsonDocument.Parse(response.Body))
        {
            Assert.Equal("request.chunk-extension-too-long", problem.RootElement.GetProperty("reason").GetString());
        }

        Assert.True(await connection.IsClosedAsync(ReadTimeout), "the connection must be closed");
        var line = await AccessLogFile.LineAsync(fixture.AccessLogPath, response.Header("X-Request-Id")!);
        Assert.Equal("request.chunk-extension-too-long", line.GetProperty("reason").GetString());
        await AssertStillServingAsync();
        Assert.DoesNotContain(fixture.Seen, s => s.Path == "/chunk-ext-huge");
    }

    [Fact]
    public async Task ChunkExtensionsWithinLimit_SplitAcrossWrites_AreProxied_AndTheNextRequestToo()
    {
        // Extensions below the limit (even split over several TCP writes, trailers included) pass; the request
        // pipelined after the body is parsed as a request of its own.
        var extension = ";name=" + new string('v', 1000);
        await using var connection = await RawConnection.OpenAsync(Gateway.Port);
        await connection.WriteAsync("POST /chunk-ext-ok HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        await connection.WriteAsync($"5{extension[..500]}");
        await connection.WriteAsync($"{extension[500..]}\r\nhel");
        await connection.WriteAsync($"lo\r\n6{extension}\r\n world\r\n0{extension}\r\nX-Trailer: t\r\n\r\n");
        await connection.WriteAsync("GET /chunk-ext-next HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");

        var first = await connection.ReadResponseAsync(ReadTimeout);
        var second = await connection.ReadResponseAsync(ReadTimeout);
        Assert.Equal(200, first?.Status);
        Assert.Equal(200, second?.Status);
        Assert.Equal("hello world", Assert.Single(fixture.Seen, s => s.Path == "/chunk-ext-ok").Body);
        Assert.Single(fixture.Seen, s => s.Path == "/chunk-ext-next");
    }

    // ---- point 17: Kestrel's own refusals are logged like the gateway's ----

    [Fact]
    public async Task HeaderBeyondKestrelLimit_Gets431_AndAnAccessLogLine()
    {
        var response = await RawHttp.ExchangeAsync(Gateway.Port,
            $"GET /edge-huge-header HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Huge: {new string('h', 100_000)}\r\n\r\n");
        output.WriteLine($"observed: 100 KB header -> {response}");

        Assert.Equal(431, response.Status);
        var line = await LineAsync(l => l.GetProperty("path").GetString() == "/edge-huge-header");
        Assert.Equal(431, line.GetProperty("status").GetInt32());
        Assert.Equal("request.headers-too-large", line.GetProperty("reason").GetString());
        Assert.Equal("GET", line.GetProperty("method").GetString());
        Assert.Equal("127.0.0.1", line.GetProperty("clientIp").GetString());
        Assert.Equal("public", line.GetProperty("listener").GetString());
        Assert.DoesNotContain(fixture.Seen, s => s.Path == "/edge-huge-header");
        await AssertStillServingAsync();
    }

    [Fact]
    public async Task RequestLineAboveConfiguredLimit_Gets414ProblemJson()
    {
        // Between the configured limit and Kestrel's backstop (twice it) the gateway answers, like for headers.
        var response = await RawHttp.ExchangeAsync(Gateway.Port,
            $"GET /edge-long/{new string('u', EdgeGateway.RequestLine + 100)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");

        Assert.Equal(414, response.Status);
        Assert.StartsWith("application/problem+json", response.Header("Content-Type"));
        Assert.Contains("\"reason\":\"request.line-too-long\"", response.Body, StringComparison.Ordinal);
        var line = await AccessLogFile.LineAsync(fixture.AccessLogPath, response.Header("X-Request-Id")!);
        Assert.Equal("request.line-too-long", line.GetProperty("reason").GetString());
        Assert.DoesNotContain(fixture.Seen, s => s.Path.StartsWith("/edge-long/", StringComparison.Ordinal));
    }

    [Fact]
    public async Task RequestLineBeyondKestrelLimit_Gets414_AndAnAccessLogLine()
    {
        var response = await RawHttp.ExchangeAsync(Gateway.Port,
            $"GET /edge-longer/{new string('u', EdgeGateway.RequestLine * 2 + 100)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");

        Assert.Equal(414, response.Status);
        var line = await LineAsync(l => l.GetProperty("status").GetInt32() == 414 && l.GetProperty("path").ValueKind == JsonValueKind.Null);
        Assert.Equal("request.line-too-long", line.GetProperty("reason").GetString());
        Assert.Equal("public", line.GetProperty("listener").GetString());
    }

    [Fact]
    public async Task MalformedHeaderLine_Gets400_AndAnAccessLogLine()
    {
        var response = await RawHttp.ExchangeAsync(Gateway.Port, "GET /edge-bad-header HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A : b\r\n\r\n");

        Assert.Equal(400, response.Status);
        var line = await LineAsync(l => l.GetProperty("path").GetString() == "/edge-bad-header");
        Assert.Equal(400, line.GetProperty("status").GetInt32());
        Assert.Equal("request.malformed", line.GetProperty("reason").GetString());
    }

    [Fact]
    public async Task GatewayAnsweredRefusal_IsLoggedOnce()
    {
        // A Content-Length above the body limit is answered by the gateway (413 problem+json); Kestrel then
        // refuses to drain that body, which must not add a second line.
        var response = await RawHttp.ExchangeAsync(Gateway.Port, "POST /edge-once HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000000\r\n\r\n");
        Assert.Equal(413, response.Status);
        await AssertStillServingAsync();

        await LineAsync(l => l.GetProperty("path").GetString() == "/still-serving" && l.GetProperty("requestId").GetString() == _lastStillServing);
        var lines = (await AccessLogFile.LinesAsync(fixture.AccessLogPath)).Where(l => l.GetProperty("path").GetString() == "/edge-once").ToList();
        Assert.Single(lines);
    }

    // ---- helpers ----

    private string? _lastStillServing;

    private async Task<JsonElement> LineAsync(Func<JsonElement, bool> match)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            foreach (var line in await AccessLogFile.LinesAsync(fixture.AccessLogPath))
            {
                if (line.TryGetProperty("path", out _) && match(line)) return line;
            }

            if (DateTime.UtcNow > deadline) throw new TimeoutException($"no matching access-log line:\n{await AccessLogFile.TextAsync(fixture.AccessLogPath)}");
            await Task.Delay(20);
        }
    }

    private async Task AssertStillServingAsync()
    {
        using var response = await Gateway.Client.GetAsync("/still-serving");
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        _lastStillServing = AccessLogFile.RequestId(response);
    }
}
