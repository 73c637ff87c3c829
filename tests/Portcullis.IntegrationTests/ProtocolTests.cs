using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Headers;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Portcullis.Cli;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests;

public sealed class ProtocolTests
{
    [Fact]
    public async Task WebSocket_EchoesThroughGateway()
    {
        var echoPort = Ports.GetFree();
        await using var echo = EchoServer.Create("127.0.0.1", echoPort, "ws-echo", h2c: false);
        await echo.StartAsync();
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: ws, match: { path: /ws }, cluster: echo }
            clusters:
              echo:
                destinations: ["http://127.0.0.1:{{echoPort}}"]
            """);

        using var socket = new ClientWebSocket();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await socket.ConnectAsync(new Uri($"ws://127.0.0.1:{gateway.Port}/ws"), timeout.Token);
        Assert.Equal(WebSocketState.Open, socket.State);

        // A text message, then a binary one larger than the echo server's 16KiB buffer (arrives in fragments).
        await socket.SendAsync(Encoding.UTF8.GetBytes("hello through the gate"), WebSocketMessageType.Text, true, timeout.Token);
        var (type, text) = await ReceiveMessageAsync(socket, timeout.Token);
        Assert.Equal(WebSocketMessageType.Text, type);
        Assert.Equal("hello through the gate", Encoding.UTF8.GetString(text));

        var payload = new byte[100_000];
        new Random(42).NextBytes(payload);
        await socket.SendAsync(payload, WebSocketMessageType.Binary, true, timeout.Token);
        var (binaryType, binary) = await ReceiveMessageAsync(socket, timeout.Token);
        Assert.Equal(WebSocketMessageType.Binary, binaryType);
        Assert.Equal(payload, binary);

        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", timeout.Token);
        Assert.Equal(WebSocketState.Closed, socket.State);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, socket.CloseStatus);

        // The gateway is still fine for ordinary requests afterwards.
        using var response = await gateway.Client.GetAsync("/ws");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task WebSocket_ToCustomUpstreamHandler_SeesForwardedHeaders()
    {
        string? forwardedFor = null;
        await using var upstream = await TestUpstream.StartAsync("ws-handler");
        upstream.Handler = async context =>
        {
            if (!context.WebSockets.IsWebSocketRequest)
            {
                context.Response.StatusCode = 400;
                return;
            }

            forwardedFor = context.Request.Headers["X-Forwarded-For"];
            using var ws = await context.WebSockets.AcceptWebSocketAsync();
            var buffer = new byte[1024];
            var result = await ws.ReceiveAsync(buffer, context.RequestAborted);
            var reply = Encoding.UTF8.GetBytes("upstream got: " + Encoding.UTF8.GetString(buffer, 0, result.Count));
            await ws.SendAsync(reply, WebSocketMessageType.Text, true, context.RequestAborted);
            await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", context.RequestAborted);
        };
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: ws, match: { path: /ws }, cluster: up }
            clusters:
              up:
                destinations: [{{upstream.Url}}]
            """);

        using var socket = new ClientWebSocket();
        socket.Options.SetRequestHeader("X-Forwarded-For", "6.6.6.6");
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await socket.ConnectAsync(new Uri($"ws://127.0.0.1:{gateway.Port}/ws"), timeout.Token);
        await socket.SendAsync(Encoding.UTF8.GetBytes("ping"), WebSocketMessageType.Text, true, timeout.Token);
        var (_, reply) = await ReceiveMessageAsync(socket, timeout.Token);
        Assert.Equal("upstream got: ping", Encoding.UTF8.GetString(reply));

        var buffer = new byte[64];
        var close = await socket.ReceiveAsync(buffer, timeout.Token);
        Assert.Equal(WebSocketMessageType.Close, close.MessageType);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, socket.CloseStatus);
        Assert.Equal("127.0.0.1", forwardedFor);
    }

    [Fact]
    public async Task Http2Upstream_SeesHttp2()
    {
        await using var upstream = await TestUpstream.StartAsync("h2-upstream", http2: true);
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: all, cluster: h2 }
            clusters:
              h2:
                httpVersion: http2
                destinations: [{{upstream.Url}}]
            """);

        using var response = await gateway.Client.PostAsync("/h2/thing?x=1", new StringContent("body over h2"));
        var answer = await UpstreamAnswer.ReadAsync(response);

        Assert.Equal(new Version(1, 1), response.Version);
        Assert.Equal("h2-upstream", answer.Server);
        Assert.Equal("HTTP/2", answer.Protocol);
        Assert.Equal("/h2/thing", answer.Path);
        Assert.Equal("?x=1", answer.Query);
        Assert.Equal(12, answer.BodyBytes);
    }

    [Fact]
    public async Task H2cListener_ServesHttp2WithPriorKnowledge_AndRefusesHttp1()
    {
        await using var upstream = await TestUpstream.StartAsync("h1-upstream");
        await using var gateway = await TestGateway.StartAsync($$$"""
            listeners:
              - { name: public, address: "127.0.0.1:{{PORT}}", protocols: http2 }
              - { name: admin, address: "127.0.0.1:{{ADMIN_PORT}}", admin: true }
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                destinations: [{{{upstream.Url}}}]
            """);

        using var h2 = Http2Client(gateway.Url);
        using var response = await h2.GetAsync("/over-h2c");
        var answer = await UpstreamAnswer.ReadAsync(response);
        Assert.Equal(HttpVersion.Version20, response.Version);
        Assert.Equal("HTTP/1.1", answer.Protocol);
        Assert.Equal("/over-h2c", answer.Path);

        // A problem+json answer from the gateway itself travels over HTTP/2 as well.
        using var tooLarge = Http2Request(HttpMethod.Get, "/x");
        tooLarge.Headers.TryAddWithoutValidation("X-Big", new string('b', 40 * 1024));
        using var problem = await h2.SendAsync(tooLarge);
        var problemBody = await problem.Content.ReadAsStringAsync();
        Assert.True(problem.StatusCode == HttpStatusCode.RequestHeaderFieldsTooLarge, $"{(int)problem.StatusCode}: {problemBody}");
        Assert.Equal(HttpStatusCode.RequestHeaderFieldsTooLarge, problem.StatusCode);
        Assert.Equal("application/problem+json", problem.Content.Headers.ContentType?.MediaType);

        // The listener speaks only HTTP/2: Kestrel answers an HTTP/1.1 request with a bare 400 and nothing is proxied.
        using var h1 = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        using var refused = await h1.GetAsync(gateway.Url + "/over-h1");
        Assert.Equal(HttpVersion.Version11, refused.Version);
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.DoesNotContain("   at ", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(1, upstream.Requests);
    }

    [Fact]
    public async Task GrpcStyleCall_OverH2c_TrailersReachClient()
    {
        string? seenContentType = null, seenTe = null, seenProtocol = null;
        byte[]? seenMessage = null;
        await using var upstream = await TestUpstream.StartAsync("grpc", http2: true);
        upstream.Handler = async context =>
        {
            seenContentType = context.Request.ContentType;
            seenTe = context.Request.Headers.TE;
            seenProtocol = context.Request.Protocol;
            using var body = new MemoryStream();
            await context.Request.Body.CopyToAsync(body, context.RequestAborted);
            seenMessage = body.ToArray();

            context.Response.ContentType = "application/grpc";
            context.Response.Headers["grpc-encoding"] = "identity";
            await context.Response.Body.WriteAsync(GrpcFrame("reply:" + Encoding.UTF8.GetString(seenMessage.AsSpan(5))));
            context.Response.AppendTrailer("grpc-status", "0");
            context.Response.AppendTrailer("grpc-message", "OK");
        };
        await using var gateway = await TestGateway.StartAsync($$$"""
            listeners:
              - { name: public, address: "127.0.0.1:{{PORT}}", protocols: http2 }
            routes:
              - { name: grpc, match: { pathPrefix: /echo.Echo }, cluster: grpc }
            clusters:
              grpc:
                httpVersion: http2
                destinations: [{{{upstream.Url}}}]
            """);

        using var client = Http2Client(gateway.Url);
        using var request = Http2Request(HttpMethod.Post, "/echo.Echo/Say", new ByteArrayContent(GrpcFrame("hi")));
        request.Content!.Headers.ContentType = new MediaTypeHeaderValue("application/grpc");
        request.Headers.TE.Add(new TransferCodingWithQualityHeaderValue("trailers"));
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var bytes = await response.Content.ReadAsByteArrayAsync();

        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {Encoding.UTF8.GetString(bytes)}");
        Assert.Equal(HttpVersion.Version20, response.Version);
        Assert.Equal("application/grpc", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal(GrpcFrame("reply:hi"), bytes);
        Assert.Equal("0", Assert.Single(response.TrailingHeaders.GetValues("grpc-status")));
        Assert.Equal("OK", Assert.Single(response.TrailingHeaders.GetValues("grpc-message")));

        Assert.Equal("application/grpc", seenContentType);
        Assert.Equal("trailers", seenTe);
        Assert.Equal("HTTP/2", seenProtocol);
        Assert.Equal(GrpcFrame("hi"), seenMessage);
    }

    [Fact]
    public async Task GrpcStyleCall_UpstreamDown_IsAnsweredWithoutStackTrace()
    {
        var deadPort = Ports.GetFree();
        await using var gateway = await TestGateway.StartAsync($$$"""
            listeners:
              - { name: public, address: "127.0.0.1:{{PORT}}", protocols: http2 }
            routes:
              - { name: grpc, cluster: grpc }
            clusters:
              grpc:
                httpVersion: http2
                retries: 0
                timeouts: { connect: 1s }
                destinations: ["http://127.0.0.1:{{{deadPort}}}"]
            """);

        using var client = Http2Client(gateway.Url);
        using var request = Http2Request(HttpMethod.Post, "/echo.Echo/Say", new ByteArrayContent(GrpcFrame("hi")));
        request.Content!.Headers.ContentType = new MediaTypeHeaderValue("application/grpc");
        using var response = await client.SendAsync(request);
        var body = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        using var problem = JsonDocument.Parse(body);
        Assert.Equal(502, problem.RootElement.GetProperty("status").GetInt32());
        Assert.DoesNotContain("   at ", body, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", body, StringComparison.Ordinal);
    }

    // HttpClient.DefaultRequestVersion applies to GetAsync and friends only, not to a request message built by hand.
    private static HttpRequestMessage Http2Request(HttpMethod method, string path, HttpContent? content = null) => new(method, path)
    {
        Version = HttpVersion.Version20,
        VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        Content = content,
    };

    private static HttpClient Http2Client(string baseUrl) => new()
    {
        BaseAddress = new Uri(baseUrl),
        DefaultRequestVersion = HttpVersion.Version20,
        DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
        Timeout = TimeSpan.FromSeconds(10),
    };

    /// <summary>A gRPC length-prefixed message: uncompressed flag, 4-byte big-endian length, payload.</summary>
    private static byte[] GrpcFrame(string payload)
    {
        var data = Encoding.UTF8.GetBytes(payload);
        var frame = new byte[5 + data.Length];
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(1), (uint)data.Length);
        data.CopyTo(frame, 5);
        return frame;
    }

    private static async Task<(WebSocketMessageType Type, byte[] Data)> ReceiveMessageAsync(WebSocket socket, CancellationToken cancellationToken)
    {
        using var message = new MemoryStream();
        var buffer = new byte[8 * 1024];
        while (true)
        {
            var result = await socket.ReceiveAsync(buffer, cancellationToken);
            message.Write(buffer, 0, result.Count);
            if (result.EndOfMessage) return (result.MessageType, message.ToArray());
        }
    }
}
