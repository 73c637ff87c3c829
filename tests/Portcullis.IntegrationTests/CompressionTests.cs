using System.IO.Compression;
using System.Net;
using System.Text;
using Microsoft.AspNetCore.Http;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests;

/// <summary>
/// routes[].compression end to end on real sockets: gzip and Brotli answers decode to the upstream's bytes, with
/// Vary: Accept-Encoding; small answers, images and answers the upstream already encoded pass untouched; a route
/// without the section never compresses; the encodings offered follow the route's list and the client's q-values.
/// </summary>
public sealed class CompressionTests : IAsyncLifetime
{
    private static readonly string Text = string.Concat(Enumerable.Repeat("Portcullis compresses what the upstream says. ", 100)); // 4.6 KB
    private static readonly byte[] Png = [.. Enumerable.Range(0, 4096).Select(i => (byte)(i * 7919 % 251))];

    private TestUpstream _upstream = null!;
    private TestGateway _gateway = null!;
    private HttpClient _client = null!;

    public async Task InitializeAsync()
    {
        _upstream = await TestUpstream.StartAsync("api");
        _upstream.Handler = async context =>
        {
            var path = context.Request.Path.Value ?? "";
            if (path.EndsWith("/text", StringComparison.Ordinal))
            {
                context.Response.ContentType = "text/plain; charset=utf-8";
                await context.Response.WriteAsync(Text);
            }
            else if (path.EndsWith("/json", StringComparison.Ordinal))
            {
                context.Response.ContentType = "application/json";
                await context.Response.WriteAsync("[" + string.Join(',', Enumerable.Repeat("{\"sku\":\"A-17\",\"qty\":1}", 200)) + "]");
            }
            else if (path.EndsWith("/tiny", StringComparison.Ordinal))
            {
                context.Response.ContentType = "text/plain";
                context.Response.ContentLength = 100;
                await context.Response.WriteAsync(new string('x', 100));
            }
            else if (path.EndsWith("/png", StringComparison.Ordinal))
            {
                context.Response.ContentType = "image/png";
                await context.Response.Body.WriteAsync(Png);
            }
            else if (path.EndsWith("/pre", StringComparison.Ordinal))
            {
                context.Response.ContentType = "text/plain";
                context.Response.Headers.ContentEncoding = "gzip";
                await context.Response.Body.WriteAsync(Gzip(Text));
            }
        };
        _gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: compressed, match: { pathPrefix: /c/ }, compression: {}, cluster: api }
              - { name: gzip-only, match: { pathPrefix: /g/ }, compression: { algorithms: [gzip], minSize: 2KiB }, cluster: api }
              - { name: plain, match: { pathPrefix: /o/ }, cluster: api }
            clusters:
              api: { destinations: [{{_upstream.Url}}] }
            """);
        _client = new HttpClient(new SocketsHttpHandler { AutomaticDecompression = DecompressionMethods.None }) { BaseAddress = new Uri(_gateway.Url) };
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _gateway.DisposeAsync();
        await _upstream.DisposeAsync();
    }

    private static byte[] Gzip(string text)
    {
        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Fastest)) gzip.Write(Encoding.UTF8.GetBytes(text));
        return output.ToArray();
    }

    private async Task<(HttpResponseMessage Response, byte[] Body)> GetAsync(string path, string? acceptEncoding)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (acceptEncoding is not null) request.Headers.TryAddWithoutValidation("Accept-Encoding", acceptEncoding);
        var response = await _client.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return (response, await response.Content.ReadAsByteArrayAsync());
    }

    private static byte[] Decode(string encoding, byte[] body)
    {
        using var input = new MemoryStream(body);
        using Stream decoder = encoding == "br" ? new BrotliStream(input, CompressionMode.Decompress) : new GZipStream(input, CompressionMode.Decompress);
        using var output = new MemoryStream();
        decoder.CopyTo(output);
        return output.ToArray();
    }

    [Theory]
    [InlineData("gzip", "gzip")]
    [InlineData("br", "br")]
    [InlineData("gzip, deflate, br", "br")]          // equal quality: the route's order (br first)
    [InlineData("br;q=0.5, gzip;q=0.9", "gzip")]     // the client's preference wins
    public async Task Text_answers_are_compressed_as_the_client_accepts_and_decode_to_the_original(string accept, string expected)
    {
        var (response, body) = await GetAsync("/c/text", accept);
        using (response)
        {
            Assert.Equal([expected], response.Content.Headers.ContentEncoding);
            Assert.Contains("Accept-Encoding", response.Headers.Vary);
            Assert.True(body.Length < Text.Length / 5, $"{body.Length} bytes for {Text.Length}");
            Assert.Equal(Text, Encoding.UTF8.GetString(Decode(expected, body)));
        }
    }

    [Fact]
    public async Task Json_is_compressed_and_a_client_without_accept_encoding_gets_it_as_it_was()
    {
        var (compressed, body) = await GetAsync("/c/json", "gzip");
        using (compressed) Assert.Equal(["gzip"], compressed.Content.Headers.ContentEncoding);
        var (identity, plain) = await GetAsync("/c/json", null);
        using (identity) Assert.Empty(identity.Content.Headers.ContentEncoding);
        Assert.Equal(plain, Decode("gzip", body));
    }

    [Theory]
    [InlineData("/c/tiny")]   // below minSize
    [InlineData("/c/png")]    // already compressed
    [InlineData("/o/text")]   // a route without compression
    [InlineData("/g/tiny")]
    public async Task Small_answers_images_and_routes_without_compression_pass_untouched(string path)
    {
        var (response, body) = await GetAsync(path, "gzip, br");
        using (response)
        {
            Assert.Empty(response.Content.Headers.ContentEncoding);
            var expected = path.EndsWith("/png", StringComparison.Ordinal) ? Png : path.EndsWith("/tiny", StringComparison.Ordinal) ? Encoding.UTF8.GetBytes(new string('x', 100)) : Encoding.UTF8.GetBytes(Text);
            Assert.Equal(expected, body);
        }
    }

    [Fact]
    public async Task An_answer_the_upstream_already_encoded_is_not_encoded_again()
    {
        var (response, body) = await GetAsync("/c/pre", "gzip, br");
        using (response)
        {
            Assert.Equal(["gzip"], response.Content.Headers.ContentEncoding);
            Assert.Equal(Text, Encoding.UTF8.GetString(Decode("gzip", body)));
        }
    }

    [Fact]
    public async Task A_route_offering_only_gzip_never_answers_brotli()
    {
        var (brOnly, body) = await GetAsync("/g/text", "br");
        using (brOnly) Assert.Empty(brOnly.Content.Headers.ContentEncoding);
        Assert.Equal(Text, Encoding.UTF8.GetString(body));
        var (both, gz) = await GetAsync("/g/text", "br, gzip");
        using (both) Assert.Equal(["gzip"], both.Content.Headers.ContentEncoding);
        Assert.Equal(Text, Encoding.UTF8.GetString(Decode("gzip", gz)));
    }
}
