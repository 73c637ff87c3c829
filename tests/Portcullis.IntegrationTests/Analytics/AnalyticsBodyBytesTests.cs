using System.Net;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Portcullis.Analytics;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.IntegrationTests.Observability;
using Portcullis.Testing;
using static Portcullis.IntegrationTests.Analytics.AnalyticsTestSupport;

namespace Portcullis.IntegrationTests.Analytics;

/// <summary>
/// Body sizes of chunked bodies, on real sockets: a chunked request body and a chunked upstream response (no
/// Content-Length on either) are counted as they pass, and the access log, the rollups and the samples all
/// show the real sizes (they showed null/-1 and 0 when the sizes came from Content-Length only).
/// </summary>
public sealed class AnalyticsBodyBytesTests : IAsyncLifetime
{
    private const int RequestSize = 70_001;
    private const int ResponseChunk = 12_345;
    private const int ResponseChunks = 10;

    private readonly string _directory = Directory.CreateTempSubdirectory("portcullis-bytes-it-").FullName;
    private TestUpstream _upstream = null!;
    private long _upstreamReceived = -1;

    public async Task InitializeAsync()
    {
        _upstream = await TestUpstream.StartAsync("orders");
        _upstream.Handler = async context =>
        {
            var buffer = new byte[8192];
            long received = 0;
            int read;
            while ((read = await context.Request.Body.ReadAsync(buffer)) > 0) received += read;
            Interlocked.Exchange(ref _upstreamReceived, received);
            // No Content-Length, flushed piece by piece: Kestrel sends it chunked, and so does the gateway.
            var chunk = new byte[ResponseChunk];
            Array.Fill(chunk, (byte)'x');
            for (var i = 0; i < ResponseChunks; i++)
            {
                await context.Response.Body.WriteAsync(chunk);
                await context.Response.Body.FlushAsync();
            }
        };
    }

    public async Task DisposeAsync()
    {
        await _upstream.DisposeAsync();
        Directory.Delete(_directory, recursive: true);
    }

    [Fact]
    public async Task Chunked_request_and_response_bodies_are_counted_alike_in_the_access_log_rollups_and_samples()
    {
        var database = Path.Combine(_directory, "analytics.duckdb");
        var config = $$"""
            analytics:
              path: "{{database}}"
              flushInterval: 200ms
              samples: { successRate: 1 }
            observability:
              accessLog: { enabled: true, target: file, path: access.log }
            routes:
              - { name: upload, match: { pathPrefix: /upload }, cluster: orders }
            clusters:
              orders: { destinations: ["{{_upstream.Url}}"] }
            """;
        await using var gateway = await TestGateway.StartAsync(config);

        using var request = new HttpRequestMessage(HttpMethod.Post, "/upload/1")
        {
            Content = new StreamContent(new UnseekableStream(new byte[RequestSize])),
        };
        request.Headers.TransferEncodingChunked = true;
        using var response = await gateway.Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.False(response.Content.Headers.Contains("Content-Length"), "no Content-Length on the gateway's answer");
        Assert.True(response.Headers.TransferEncodingChunked, "the gateway's answer is chunked");
        var body = await response.Content.ReadAsByteArrayAsync();
        Assert.Equal(ResponseChunk * ResponseChunks, body.Length);
        Assert.Equal(RequestSize, Interlocked.Read(ref _upstreamReceived));

        var line = await AccessLogFile.LineAsync(Path.Combine(gateway.Directory, "access.log"), AccessLogFile.RequestId(response));
        Assert.Equal(RequestSize, line.GetProperty("bytesIn").GetInt64());
        Assert.Equal(ResponseChunk * ResponseChunks, line.GetProperty("bytesOut").GetInt64());

        var store = gateway.Services.GetRequiredService<AnalyticsDatabase>();
        await Eventually.TrueAsync(() => { using var c = store.OpenConnection(); return Requests(c) == 1 && Scalar(c, "SELECT count(*) FROM samples") == 1; },
            "the request flushed", context: () => Task.FromResult(gateway.Logs.ToString()));
        using var connection = store.OpenConnection();
        Assert.Equal(RequestSize, Scalar(connection, "SELECT sum(bytes_in)::BIGINT FROM rollups WHERE route = 'upload'"));
        Assert.Equal(ResponseChunk * ResponseChunks, Scalar(connection, "SELECT sum(bytes_out)::BIGINT FROM rollups WHERE route = 'upload'"));
        Assert.Equal(RequestSize, Scalar(connection, "SELECT bytes_in FROM samples"));
        Assert.Equal(ResponseChunk * ResponseChunks, Scalar(connection, "SELECT bytes_out FROM samples"));
    }

    // A body HttpClient cannot measure: it must send it chunked.
    private sealed class UnseekableStream(byte[] content) : MemoryStream(content)
    {
        public override bool CanSeek => false;
    }
}
