using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests;

/// <summary>
/// One gateway with small limits (shared by the tests of <see cref="BadInputTests"/>) in front of an
/// upstream that records every request it receives, so tests can prove what did (not) get through.
/// </summary>
public sealed class BadInputGateway : IAsyncLifetime
{
    public const int HeadersSize = 4096;   // configured; Kestrel's hard limit is twice that
    public const int HeaderCount = 20;     // configured; Kestrel's hard limit is twice that
    public const int RequestLine = 1024;
    public const int BodySize = 1024;

    internal TestUpstream Upstream { get; private set; } = null!;

    internal TestGateway Gateway { get; private set; } = null!;

    internal ConcurrentQueue<SeenRequest> Seen { get; } = new();

    public async Task InitializeAsync()
    {
        Upstream = await TestUpstream.StartAsync("recorder");
        Upstream.Handler = async context =>
        {
            var request = context.Request;
            using var body = new MemoryStream();
            await request.Body.CopyToAsync(body, context.RequestAborted);
            var seen = new SeenRequest(
                request.Method,
                request.Path.Value ?? "",
                request.Headers.ToDictionary(h => h.Key, h => h.Value.Select(v => v ?? "").ToArray(), StringComparer.OrdinalIgnoreCase),
                Encoding.UTF8.GetString(body.ToArray()));
            Seen.Enqueue(seen);
            var bytes = JsonSerializer.SerializeToUtf8Bytes(seen);
            context.Response.ContentType = "application/json";
            context.Response.ContentLength = bytes.Length;
            await context.Response.Body.WriteAsync(bytes);
        };
        Gateway = await TestGateway.StartAsync($$"""
            limits:
              maxRequestHeadersSize: {{HeadersSize}}
              maxRequestHeaderCount: {{HeaderCount}}
              maxRequestLineSize: {{RequestLine}}
              maxRequestBodySize: {{BodySize}}
              requestHeadersTimeout: 1s
              minRequestBodyDataRate: 200
              minRequestBodyDataRateGracePeriod: 2s
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                destinations: [{{Upstream.Url}}]
            """);
    }

    public async Task DisposeAsync()
    {
        await Gateway.DisposeAsync();
        await Upstream.DisposeAsync();
    }
}

internal sealed record SeenRequest(string Method, string Path, Dictionary<string, string[]> Headers, string Body);

public sealed class BadInputTests(BadInputGateway fixture, Xunit.Abstractions.ITestOutputHelper output) : IClassFixture<BadInputGateway>
{
    private static readonly TimeSpan ReadTimeout = TimeSpan.FromSeconds(5);

    private TestGateway Gateway => fixture.Gateway;

    // ---- configured limits: the gateway answers with problem+json ----

    [Fact]
    public async Task HeadersAboveConfiguredSize_Get431ProblemJson()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/big-headers");
        request.Headers.TryAddWithoutValidation("X-Big", new string('a', BadInputGateway.HeadersSize + 500));
        using var response = await Gateway.Client.SendAsync(request);

        await AssertProblemAsync(response, 431, "request.headers-too-large");
        Assert.DoesNotContain(fixture.Seen, s => s.Path == "/big-headers");
        await AssertStillServingAsync();
    }

    [Fact]
    public async Task MoreHeadersThanConfigured_Get431ProblemJson()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/many-headers");
        for (var i = 0; i < BadInputGateway.HeaderCount + 5; i++) request.Headers.TryAddWithoutValidation($"X-H{i}", "v");
        using var response = await Gateway.Client.SendAsync(request);

        await AssertProblemAsync(response, 431, "request.headers-too-large");
        Assert.DoesNotContain(fixture.Seen, s => s.Path == "/many-headers");
        await AssertStillServingAsync();
    }

    [Fact]
    public async Task RepeatedHeaderLinesCountEach_Get431ProblemJson()
    {
        // 25 lines of the same name are 25 headers for Kestrel's limit; the configured limit must count them the same way.
        var lines = string.Concat(Enumerable.Range(0, BadInputGateway.HeaderCount + 5).Select(i => $"X-Same: {i}\r\n"));
        var response = await RawHttp.ExchangeAsync(Gateway.Port, $"GET /repeated HTTP/1.1\r\nHost: 127.0.0.1\r\n{lines}\r\n");

        Observed("RepeatedHeaderLinesCountEach_Get431ProblemJson", response);
        Assert.Equal(431, response.Status);
        Assert.StartsWith("application/problem+json", response.Header("Content-Type"));
        AssertNoLeak(response.Body);
        Assert.DoesNotContain(fixture.Seen, s => s.Path == "/repeated");
        await AssertStillServingAsync();
    }

    [Fact]
    public async Task ContentLengthAboveLimit_Gets413ProblemJson_BeforeTheBodyIsSent()
    {
        // Only the head is sent: the gateway must answer from Content-Length alone, without waiting for a body.
        var response = await RawHttp.ExchangeAsync(Gateway.Port,
            "POST /too-big HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 1000000\r\n\r\n");

        Observed("ContentLengthAboveLimit_Gets413ProblemJson_BeforeTheBodyIsSent", response);
        Assert.Equal(413, response.Status);
        Assert.StartsWith("application/problem+json", response.Header("Content-Type"));
        using (var problem = JsonDocument.Parse(response.Body))
        {
            Assert.Equal(413, problem.RootElement.GetProperty("status").GetInt32());
            Assert.Equal("request.body-too-large", problem.RootElement.GetProperty("reason").GetString());
        }

        AssertNoLeak(response.Body);
        Assert.DoesNotContain(fixture.Seen, s => s.Path == "/too-big");
        await AssertStillServingAsync();
    }

    [Fact]
    public async Task ChunkedBodyGrowingBeyondLimit_Gets413ProblemJson()
    {
        // No Content-Length: the limit can only be enforced while the body streams through (4 x 512 bytes > 1KiB).
        var chunk = $"200\r\n{new string('x', 512)}\r\n";
        var response = await RawHttp.ExchangeAsync(Gateway.Port,
            "POST /chunked-too-big HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n" +
            chunk + chunk + chunk + chunk + "0\r\n\r\n");
        Observed("ChunkedBodyGrowingBeyondLimit_Gets413ProblemJson", response);

        Assert.Equal(413, response.Status);
        Assert.StartsWith("application/problem+json", response.Header("Content-Type"));
        Assert.Contains("request.body-too-large", response.Body, StringComparison.Ordinal);
        AssertNoLeak(response.Body);
        Assert.DoesNotContain(fixture.Seen, s => s.Path == "/chunked-too-big");
        await AssertStillServingAsync();
    }

    [Fact]
    public async Task ChunkedBodyWithinLimit_IsProxied()
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/chunked-ok") { Content = new StringContent(new string('y', 500)) };
        request.Headers.TransferEncodingChunked = true;
        using var response = await Gateway.Client.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var seen = Assert.Single(fixture.Seen, s => s.Path == "/chunked-ok");
        Assert.Equal(500, seen.Body.Length);
    }

    // ---- Kestrel's hard limits and protocol errors, over raw sockets ----

    [Fact]
    public async Task ContentLengthAndTransferEncoding_NeverReachUpstreamAsConflictingOrSmuggledRequest()
    {
        // CL.TE: a parser trusting Content-Length (6 bytes: "0\r\n\r\nG") and one trusting Transfer-Encoding disagree on
        // where this request ends; the chunked reading ends it at the zero chunk and sees "GET /smuggled" as a pipelined
        // second request. Kestrel frames by Transfer-Encoding, strips Content-Length and closes the connection after
        // answering, so the trailing bytes are never parsed as a request.
        const string attack =
            "POST /cl-te HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n" +
            "0\r\n\r\n" +
            "GET /smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
        await using var connection = await RawConnection.OpenAsync(Gateway.Port);
        await connection.WriteAsync(attack);
        var first = await connection.ReadResponseAsync(ReadTimeout);
        Observed("ContentLengthAndTransferEncoding_NeverReachUpstreamAsConflictingOrSmuggledRequest", first);
        Assert.NotNull(first);
        AssertNoLeak(first.Body);

        // Secure outcomes: either 400, or the request is handled by Transfer-Encoding alone and the connection is
        // closed afterwards (RFC 9112 6.1), so the bytes after the zero chunk are never parsed as a request.
        Assert.True(first.Status is 400 or 200, $"unexpected {first.Status}");
        Assert.True(await connection.IsClosedAsync(ReadTimeout), "the connection must be closed after a CL+TE request");
        Assert.DoesNotContain("HTTP/1.1 ", connection.Unread, StringComparison.Ordinal);
        output.WriteLine($"observed: CL+TE first answer Connection: {first.Header("Connection")}");
        Assert.DoesNotContain(fixture.Seen, s => s.Path == "/smuggled");

        if (first.Status == 200)
        {
            // What the upstream got is one unambiguous request: the chunked body ("") and never both framings.
            var seen = Assert.Single(fixture.Seen, s => s.Path == "/cl-te");
            output.WriteLine($"observed: upstream got /cl-te with Content-Length={string.Join(",", seen.Headers.GetValueOrDefault("Content-Length") ?? [])} Transfer-Encoding={string.Join(",", seen.Headers.GetValueOrDefault("Transfer-Encoding") ?? [])} body={seen.Body.Length} bytes");
            Assert.Equal("", seen.Body);
            Assert.False(seen.Headers.ContainsKey("Content-Length") && seen.Headers.ContainsKey("Transfer-Encoding"));
        }
        else
        {
            Assert.DoesNotContain(fixture.Seen, s => s.Path == "/cl-te");
        }

        await AssertStillServingAsync();
    }

    [Fact]
    public async Task ObfuscatedTransferEncodingWithContentLength_Gets400()
    {
        // TE.CL variants: a framing the gateway and an upstream might read differently is refused outright.
        foreach (var (name, te) in new[]
        {
            ("xchunked", "Transfer-Encoding: xchunked\r\n"),
            ("chunked then identity", "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n"),
            ("identity", "Transfer-Encoding: identity\r\n"),
        })
        {
            var response = await RawHttp.ExchangeAsync(Gateway.Port,
                $"POST /te-obfuscated HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\n{te}\r\n0\r\n\r\n");
            Observed(name, response);
            Assert.True(response.Status == 400, $"{name}: got {response.Status}");
            AssertNoLeak(response.Body);
        }

        Assert.DoesNotContain(fixture.Seen, s => s.Path == "/te-obfuscated");
        await AssertStillServingAsync();
    }

    [Fact]
    public async Task TransferEncodingNotEndingInChunked_Gets400()
    {
        var response = await RawHttp.ExchangeAsync(Gateway.Port,
            "POST /te-gzip HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n");

        Observed("TransferEncodingNotEndingInChunked_Gets400", response);
        Assert.Equal(400, response.Status);
        AssertNoLeak(response.Body);
        Assert.DoesNotContain(fixture.Seen, s => s.Path == "/te-gzip");
        await AssertStillServingAsync();
    }

    [Fact]
    public async Task TwoContentLengths_Get400()
    {
        var response = await RawHttp.ExchangeAsync(Gateway.Port,
            "POST /two-cl HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\nContent-Length: 10\r\n\r\nabc");

        Observed("TwoContentLengths_Get400", response);
        Assert.Equal(400, response.Status);
        AssertNoLeak(response.Body);
        Assert.DoesNotContain(fixture.Seen, s => s.Path == "/two-cl");
        await AssertStillServingAsync();
    }

    [Fact]
    public async Task DuplicateHost_Gets400()
    {
        var response = await RawHttp.ExchangeAsync(Gateway.Port,
            "GET /dup-host HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n");

        Observed("DuplicateHost_Gets400", response);
        Assert.Equal(400, response.Status);
        AssertNoLeak(response.Body);
        Assert.DoesNotContain(fixture.Seen, s => s.Path == "/dup-host");
        await AssertStillServingAsync();
    }

    [Fact]
    public async Task MissingHost_Gets400()
    {
        var response = await RawHttp.ExchangeAsync(Gateway.Port, "GET /no-host HTTP/1.1\r\nX-A: b\r\n\r\n");

        Observed("MissingHost_Gets400", response);
        Assert.Equal(400, response.Status);
        AssertNoLeak(response.Body);
        Assert.DoesNotContain(fixture.Seen, s => s.Path == "/no-host");
    }

    [Fact]
    public async Task MalformedHeaderLines_Get400()
    {
        foreach (var (name, head) in new[]
        {
            ("obs-fold", "GET /bad-1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: a\r\n folded\r\n\r\n"),
            ("space before colon", "GET /bad-2 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A : a\r\n\r\n"),
            ("NUL in value", "GET /bad-3 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: a\0b\r\n\r\n"),
            ("bad chunk size", "POST /bad-4 HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
        })
        {
            var response = await RawHttp.ExchangeAsync(Gateway.Port, head);
            Observed("MalformedHeaderLines_Get400", response);
            Assert.True(response.Status == 400, $"{name}: got {response.Status}");
            AssertNoLeak(response.Body);
        }

        Assert.DoesNotContain(fixture.Seen, s => s.Path.StartsWith("/bad-", StringComparison.Ordinal));
        await AssertStillServingAsync();
    }

    [Fact]
    public async Task HeaderBeyondKestrelHardLimit_Gets431()
    {
        var response = await RawHttp.ExchangeAsync(Gateway.Port,
            $"GET /huge-header HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Huge: {new string('h', BadInputGateway.HeadersSize * 2 + 100)}\r\n\r\n");

        Observed("HeaderBeyondKestrelHardLimit_Gets431", response);
        Assert.Equal(431, response.Status);
        AssertNoLeak(response.Body);
        Assert.DoesNotContain(fixture.Seen, s => s.Path == "/huge-header");
        await AssertStillServingAsync();
    }

    [Fact]
    public async Task HeaderCountBeyondKestrelHardLimit_Gets431()
    {
        var lines = string.Concat(Enumerable.Range(0, BadInputGateway.HeaderCount * 2 + 5).Select(i => $"X-N{i}: v\r\n"));
        var response = await RawHttp.ExchangeAsync(Gateway.Port, $"GET /huge-count HTTP/1.1\r\nHost: 127.0.0.1\r\n{lines}\r\n");

        Observed("HeaderCountBeyondKestrelHardLimit_Gets431", response);
        Assert.Equal(431, response.Status);
        AssertNoLeak(response.Body);
        Assert.DoesNotContain(fixture.Seen, s => s.Path == "/huge-count");
        await AssertStillServingAsync();
    }

    [Fact]
    public async Task UrlBeyondRequestLineLimit_Gets414()
    {
        var path = "/long/" + new string('u', BadInputGateway.RequestLine + 100);
        var response = await RawHttp.ExchangeAsync(Gateway.Port, $"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");

        Observed("UrlBeyondRequestLineLimit_Gets414", response);
        Assert.Equal(414, response.Status);
        AssertNoLeak(response.Body);
        Assert.DoesNotContain(fixture.Seen, s => s.Path.StartsWith("/long/", StringComparison.Ordinal));
        await AssertStillServingAsync();
    }

    [Fact]
    public async Task SlowHeaders_AreCutOffAfterRequestHeadersTimeout()
    {
        // requestHeadersTimeout is 1s: a client dribbling header lines (slowloris) must not hold the connection.
        await using var connection = await RawConnection.OpenAsync(Gateway.Port);
        var clock = Stopwatch.StartNew();
        await connection.WriteAsync("GET /slow-headers HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        var reading = connection.ReadResponseAsync(TimeSpan.FromSeconds(8));
        for (var i = 0; i < 40 && !reading.IsCompleted; i++)
        {
            await Task.Delay(200);
            if (!await connection.TryWriteAsync($"X-Slow-{i}: still-coming\r\n")) break;
        }

        var response = await reading;
        var closed = await connection.IsClosedAsync(TimeSpan.FromSeconds(3));
        Observed("SlowHeaders_AreCutOffAfterRequestHeadersTimeout", response, $"closed={closed} after {clock.Elapsed.TotalSeconds:F1}s");
        clock.Stop();

        Assert.True(closed, "the connection must be closed");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"cut off only after {clock.Elapsed}");
        if (response is not null)
        {
            Assert.Equal(408, response.Status);
            AssertNoLeak(response.Body);
        }

        Assert.DoesNotContain(fixture.Seen, s => s.Path == "/slow-headers");
        await AssertStillServingAsync();
    }

    [Fact]
    public async Task SlowBody_BelowMinimumDataRate_IsDropped()
    {
        // minRequestBodyDataRate is 200 B/s after a 2s grace period; this client sends about 10 B/s.
        await using var connection = await RawConnection.OpenAsync(Gateway.Port);
        var clock = Stopwatch.StartNew();
        await connection.WriteAsync("POST /slow-body HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n");
        var reading = connection.ReadResponseAsync(TimeSpan.FromSeconds(10));
        for (var i = 0; i < 100 && !reading.IsCompleted; i++)
        {
            if (!await connection.TryWriteAsync("ab")) break;
            await Task.Delay(200);
        }

        var response = await reading;
        var closed = await connection.IsClosedAsync(TimeSpan.FromSeconds(3));
        Observed("SlowBody_BelowMinimumDataRate_IsDropped", response, $"closed={closed} after {clock.Elapsed.TotalSeconds:F1}s");
        clock.Stop();

        Assert.True(closed, "the connection must be dropped");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(7), $"dropped only after {clock.Elapsed}");
        if (response is not null)
        {
            // Kestrel fails the body read with 408; the gateway says so (problem+json) unless the connection is already gone.
            Assert.Equal(408, response.Status);
            Assert.StartsWith("application/problem+json", response.Header("Content-Type"));
            Assert.Contains("request.body-timeout", response.Body, StringComparison.Ordinal);
            AssertNoLeak(response.Body);
        }

        Assert.DoesNotContain(fixture.Seen, s => s.Path == "/slow-body");
        await AssertStillServingAsync();
    }

    // ---- forwarded headers ----

    [Fact]
    public async Task ForwardedHeadersFromUntrustedPeer_AreReplaced()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/xff-untrusted");
        request.Headers.TryAddWithoutValidation("X-Forwarded-For", "6.6.6.6, 7.7.7.7");
        request.Headers.TryAddWithoutValidation("X-Forwarded-Proto", "https");
        request.Headers.TryAddWithoutValidation("X-Forwarded-Host", "evil.example");
        request.Headers.TryAddWithoutValidation("X-Forwarded-Prefix", "/admin");
        request.Headers.TryAddWithoutValidation("Forwarded", "for=6.6.6.6;proto=https");
        request.Headers.TryAddWithoutValidation("X-Real-IP", "6.6.6.6");
        using var response = await Gateway.Client.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        var seen = Assert.Single(fixture.Seen, s => s.Path == "/xff-untrusted");
        Assert.Equal(new[] { "127.0.0.1" }, seen.Headers["X-Forwarded-For"]);
        Assert.Equal(new[] { "http" }, seen.Headers["X-Forwarded-Proto"]);
        Assert.Equal(new[] { $"127.0.0.1:{Gateway.Port}" }, seen.Headers["X-Forwarded-Host"]);
        Assert.False(seen.Headers.ContainsKey("X-Forwarded-Prefix"));
        Assert.False(seen.Headers.ContainsKey("Forwarded"));
        Assert.False(seen.Headers.ContainsKey("X-Real-IP"));
        Assert.DoesNotContain(seen.Headers.Values.SelectMany(v => v), v => v.Contains("6.6.6.6", StringComparison.Ordinal) || v.Contains("evil", StringComparison.Ordinal));
    }

    [Fact]
    public async Task ForwardedHeadersFromUntrustedPeer_RepeatedHeaderLines_AreAllReplaced()
    {
        var response = await RawHttp.ExchangeAsync(Gateway.Port,
            "GET /xff-repeated HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-For: 6.6.6.6\r\nx-forwarded-for: 7.7.7.7\r\nFORWARDED: for=8.8.8.8\r\nConnection: close\r\n\r\n");
        Observed("ForwardedHeadersFromUntrustedPeer_RepeatedHeaderLines_AreAllReplaced", response);
        Assert.Equal(200, response.Status);

        var seen = Assert.Single(fixture.Seen, s => s.Path == "/xff-repeated");
        Assert.Equal(new[] { "127.0.0.1" }, seen.Headers["X-Forwarded-For"]);
        Assert.False(seen.Headers.ContainsKey("Forwarded"));
    }

    [Fact]
    public async Task ForwardedHeadersFromTrustedProxy_AreKeptAndExtended()
    {
        await using var upstream = await TestUpstream.StartAsync("trusted-upstream");
        await using var gateway = await TestGateway.StartAsync($$"""
            trustedProxies: [127.0.0.1]
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                destinations: [{{upstream.Url}}]
            """);
        using var request = new HttpRequestMessage(HttpMethod.Get, "/xff-trusted");
        request.Headers.TryAddWithoutValidation("X-Forwarded-For", "203.0.113.7");
        request.Headers.TryAddWithoutValidation("X-Forwarded-Proto", "https");
        request.Headers.TryAddWithoutValidation("X-Forwarded-Host", "shop.example");
        request.Headers.TryAddWithoutValidation("Forwarded", "for=203.0.113.7;proto=https");
        using var response = await gateway.Client.SendAsync(request);
        var answer = await UpstreamAnswer.ReadAsync(response);

        Assert.Equal("203.0.113.7, 127.0.0.1", answer.Header("X-Forwarded-For"));
        Assert.Equal("https", answer.Header("X-Forwarded-Proto"));
        Assert.Equal("shop.example", answer.Header("X-Forwarded-Host"));
        Assert.Equal("for=203.0.113.7;proto=https", answer.Header("Forwarded"));
    }

    [Fact]
    public async Task ForwardedHeadersFromPeerOutsideTrustedProxies_AreReplaced()
    {
        await using var upstream = await TestUpstream.StartAsync("untrusted-upstream");
        await using var gateway = await TestGateway.StartAsync($$"""
            trustedProxies: [10.0.0.0/8, "::1"]
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                destinations: [{{upstream.Url}}]
            """);
        using var request = new HttpRequestMessage(HttpMethod.Get, "/xff-outside");
        request.Headers.TryAddWithoutValidation("X-Forwarded-For", "10.1.2.3");
        request.Headers.TryAddWithoutValidation("Forwarded", "for=10.1.2.3");
        using var response = await gateway.Client.SendAsync(request);
        var answer = await UpstreamAnswer.ReadAsync(response);

        Assert.Equal("127.0.0.1", answer.Header("X-Forwarded-For"));
        Assert.Null(answer.Header("Forwarded"));
    }

    [Theory]
    [InlineData("maxRequestHeaderCount: 10000\n  maxRequestHeadersSize: 16MiB\n  maxRequestLineSize: 16MiB\n  maxRequestBodySize: 100GiB")]
    [InlineData("maxRequestHeadersSize: 1MiB")]
    [InlineData("maxRequestLineSize: 2MiB")]
    public async Task LargeConfiguredLimits_StillStartAndServe(string limits)
    {
        // Kestrel's backstop is twice the configured limit; that must saturate instead of overflowing.
        await using var upstream = await TestUpstream.StartAsync("huge-limits");
        await using var gateway = await TestGateway.StartAsync($$"""
            limits:
              {{limits}}
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                destinations: [{{upstream.Url}}]
            """);

        using var response = await gateway.Client.GetAsync("/huge-limits");
        Assert.Equal("huge-limits", (await UpstreamAnswer.ReadAsync(response)).Server);
    }

    // ---- helpers ----

    private static async Task AssertProblemAsync(HttpResponseMessage response, int status, string reason)
    {
        var body = await response.Content.ReadAsStringAsync();
        Assert.Equal(status, (int)response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        AssertNoLeak(body);
        using var problem = JsonDocument.Parse(body);
        Assert.Equal(status, problem.RootElement.GetProperty("status").GetInt32());
        Assert.Equal(reason, problem.RootElement.GetProperty("reason").GetString());
        Assert.False(string.IsNullOrEmpty(problem.RootElement.GetProperty("title").GetString()));
    }

    private void Observed(string attack, RawResponse? response, string? extra = null) =>
        output.WriteLine($"observed: {attack} -> {(response is null ? "no response" : response.ToString())}{(extra is null ? "" : " " + extra)}");

    private static void AssertNoLeak(string body)
    {
        Assert.DoesNotContain("   at ", body, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", body, StringComparison.Ordinal);
        Assert.DoesNotContain("Microsoft.", body, StringComparison.Ordinal);
    }

    private async Task AssertStillServingAsync()
    {
        using var response = await Gateway.Client.GetAsync("/still-serving");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }
}

/// <summary>One HTTP/1.1 response read off a raw socket.</summary>
internal sealed record RawResponse(int Status, string StatusLine, IReadOnlyList<KeyValuePair<string, string>> Headers, string Body)
{
    public string? Header(string name) => Headers.FirstOrDefault(h => string.Equals(h.Key, name, StringComparison.OrdinalIgnoreCase)).Value;

    public override string ToString() => $"{StatusLine} ({Body.Length} body chars)";
}

internal static class RawHttp
{
    /// <summary>Opens a connection, writes <paramref name="request"/> as Latin-1 bytes and reads one response.</summary>
    public static async Task<RawResponse> ExchangeAsync(int port, string request, TimeSpan? timeout = null)
    {
        await using var connection = await RawConnection.OpenAsync(port);
        await connection.WriteAsync(request);
        return await connection.ReadResponseAsync(timeout ?? TimeSpan.FromSeconds(5))
            ?? throw new InvalidOperationException("the server closed the connection without an answer");
    }
}

/// <summary>A TCP connection to 127.0.0.1 that writes raw bytes and parses HTTP/1.1 responses.</summary>
internal sealed class RawConnection : IAsyncDisposable
{
    private readonly TcpClient _client;
    private readonly NetworkStream _stream;
    private readonly List<byte> _pending = [];

    private RawConnection(TcpClient client)
    {
        _client = client;
        _stream = client.GetStream();
    }

    public bool Closed { get; private set; }

    /// <summary>Bytes received but not (yet) parsed as part of a response.</summary>
    public string Unread => Encoding.Latin1.GetString(_pending.ToArray());

    public static async Task<RawConnection> OpenAsync(int port)
    {
        var client = new TcpClient { NoDelay = true };
        await client.ConnectAsync(IPAddress.Loopback, port);
        return new RawConnection(client);
    }

    public async Task WriteAsync(string data)
    {
        await _stream.WriteAsync(Encoding.Latin1.GetBytes(data));
        await _stream.FlushAsync();
    }

    /// <summary>False when the server has closed or reset the connection.</summary>
    public async Task<bool> TryWriteAsync(string data)
    {
        try
        {
            await WriteAsync(data);
            return true;
        }
        catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException)
        {
            return false;
        }
    }

    /// <summary>Reads one response; null when the connection closes before a status line arrives.</summary>
    public async Task<RawResponse?> ReadResponseAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var ct = cts.Token;
        var statusLine = await ReadLineAsync(ct);
        if (statusLine is null) return null;
        var parts = statusLine.Split(' ', 3);
        if (parts.Length < 2 || !parts[0].StartsWith("HTTP/", StringComparison.Ordinal) || !int.TryParse(parts[1], out var status))
        {
            throw new InvalidDataException($"not a status line: {statusLine}");
        }

        var headers = new List<KeyValuePair<string, string>>();
        while (await ReadLineAsync(ct) is { Length: > 0 } line)
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            headers.Add(new(line[..colon].Trim(), line[(colon + 1)..].Trim()));
        }

        string? Get(string name) => headers.FirstOrDefault(h => string.Equals(h.Key, name, StringComparison.OrdinalIgnoreCase)).Value;
        var body = new List<byte>();
        if (Get("Content-Length") is { } length)
        {
            body.AddRange(await ReadExactAsync(int.Parse(length), ct) ?? throw new EndOfStreamException("body cut short"));
        }
        else if (Get("Transfer-Encoding")?.Contains("chunked", StringComparison.OrdinalIgnoreCase) == true)
        {
            while (true)
            {
                var sizeLine = await ReadLineAsync(ct) ?? throw new EndOfStreamException("chunk size missing");
                var size = Convert.ToInt32(sizeLine.Split(';')[0].Trim(), 16);
                if (size == 0)
                {
                    while (await ReadLineAsync(ct) is { Length: > 0 })
                    {
                    }

                    break;
                }

                body.AddRange(await ReadExactAsync(size, ct) ?? throw new EndOfStreamException("chunk cut short"));
                await ReadLineAsync(ct);
            }
        }
        else if (status is not (204 or 304) && status >= 200)
        {
            while (await FillAsync(ct))
            {
            }

            body.AddRange(_pending);
            _pending.Clear();
        }

        return new RawResponse(status, statusLine, headers, Encoding.UTF8.GetString(body.ToArray()));
    }

    /// <summary>True when the server closes (or resets) the connection within <paramref name="timeout"/>.</summary>
    public async Task<bool> IsClosedAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            while (await FillAsync(cts.Token))
            {
            }

            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    private async Task<bool> FillAsync(CancellationToken ct)
    {
        if (Closed) return false;
        var chunk = new byte[16 * 1024];
        int read;
        try
        {
            read = await _stream.ReadAsync(chunk, ct);
        }
        catch (IOException)
        {
            read = 0;
        }

        if (read == 0)
        {
            Closed = true;
            return false;
        }

        _pending.AddRange(chunk.AsSpan(0, read));
        return true;
    }

    private async Task<string?> ReadLineAsync(CancellationToken ct)
    {
        while (true)
        {
            for (var i = 0; i + 1 < _pending.Count; i++)
            {
                if (_pending[i] != '\r' || _pending[i + 1] != '\n') continue;
                var line = Encoding.Latin1.GetString(_pending.GetRange(0, i).ToArray());
                _pending.RemoveRange(0, i + 2);
                return line;
            }

            if (!await FillAsync(ct)) return null;
        }
    }

    private async Task<byte[]?> ReadExactAsync(int count, CancellationToken ct)
    {
        while (_pending.Count < count)
        {
            if (!await FillAsync(ct)) return null;
        }

        var bytes = _pending.GetRange(0, count).ToArray();
        _pending.RemoveRange(0, count);
        return bytes;
    }

    public ValueTask DisposeAsync()
    {
        _stream.Dispose();
        _client.Dispose();
        return ValueTask.CompletedTask;
    }
}
