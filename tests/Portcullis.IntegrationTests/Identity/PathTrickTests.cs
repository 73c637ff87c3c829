using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Portcullis.IntegrationTests.Infrastructure;
using Xunit.Abstractions;

namespace Portcullis.IntegrationTests.Identity;

/// <summary>
/// A protected <c>/admin</c> route beside a public catch-all, in front of an upstream that echoes the raw
/// target it received and the path it decoded from it. Shared by <see cref="PathTrickTests"/>.
/// </summary>
public sealed class PathTrickGateway : IAsyncLifetime
{
    private const string Issuer = "https://issuer.test/";

    internal TokenFactory Tokens { get; } = new(Issuer, "gateway");

    internal TestUpstream Upstream { get; private set; } = null!;

    internal TestGateway Gateway { get; private set; } = null!;

    /// <summary>A bare Kestrel (no gateway) echoing what Kestrel made of the request target.</summary>
    internal TestUpstream Bare { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Upstream = await TestUpstream.StartAsync("echo");
        Upstream.Handler = EchoAsync;
        Bare = await TestUpstream.StartAsync("bare");
        Bare.Handler = EchoAsync;
        Gateway = await TestGateway.StartAsync($$"""
            identity:
              issuers:
                - name: corp
                  jwksFile: jwks.json
                  issuer: {{Issuer}}
                  audiences: [gateway]
            routes:
              - name: admin
                match: { pathPrefix: /admin }
                auth: { issuers: [corp] }
                cluster: echo
              - name: public
                match: { pathPrefix: / }
                cluster: echo
            clusters:
              echo:
                destinations: [{{Upstream.Url}}]
            """, new Dictionary<string, string> { ["jwks.json"] = Tokens.JwksJson() });
    }

    private static Task EchoAsync(HttpContext context)
    {
        var request = context.Request;
        var seen = new Seen(
            context.Features.Get<IHttpRequestFeature>()!.RawTarget,
            request.Path.Value ?? "",
            request.QueryString.Value ?? "",
            request.Headers.Authorization.ToString(),
            request.Headers["X-Original-URL"].ToString(),
            request.Headers["X-Rewrite-URL"].ToString());
        context.Response.ContentType = "application/json";
        return context.Response.WriteAsync(JsonSerializer.Serialize(seen));
    }

    /// <summary>What the echo upstream received: the raw target and the path Kestrel decoded from it.</summary>
    internal sealed record Seen(string RawTarget, string Path, string Query, string Authorization, string OriginalUrl, string RewriteUrl);

    public async Task DisposeAsync()
    {
        await Gateway.DisposeAsync();
        await Upstream.DisposeAsync();
        await Bare.DisposeAsync();
        Tokens.Dispose();
    }
}

/// <summary>
/// Path tricks (issue 3): an auth rule on <c>/admin/**</c> beside a public route must not be bypassed by
/// alternative spellings of <c>/admin</c>. Every request goes over a raw socket, because HttpClient
/// normalises URLs before sending them. "{NUL}" in a target stands for a raw NUL byte.
/// </summary>
public sealed class PathTrickTests(PathTrickGateway fixture, ITestOutputHelper output) : IClassFixture<PathTrickGateway>
{
    private TestGateway Gateway => fixture.Gateway;

    private TestUpstream Upstream => fixture.Upstream;

    /// <summary>Each trick is refused by the gateway (400 problem+json), by Kestrel itself (400 before any app code),
    /// or lands on the protected route (401). Without a token, nothing reaches the upstream.</summary>
    [Theory]
    // Kestrel already canonicalises these to /admin... (dot segments, %2e, unreserved escapes): the admin route's auth applies.
    [InlineData("/admin/x", Outcome.Protected)]
    [InlineData("/admin", Outcome.Protected)]
    [InlineData("/./admin/x", Outcome.Protected)]
    [InlineData("/x/../admin/x", Outcome.Protected)]
    [InlineData("/public/../admin/x", Outcome.Protected)]
    [InlineData("/../admin/x", Outcome.Protected)]
    [InlineData("/%C3%A9/../admin", Outcome.Protected)]
    [InlineData("/%2e/admin/x", Outcome.Protected)]
    [InlineData("/%2e%2e/admin/x", Outcome.Protected)]
    [InlineData("/x/%2e%2e/admin/x", Outcome.Protected)]
    [InlineData("/x/%2E%2E/admin/x", Outcome.Protected)]
    [InlineData("/x/.%2e/admin/x", Outcome.Protected)]
    [InlineData("/%61dmin/x", Outcome.Protected)]
    [InlineData("/%61%64%6d%69%6e", Outcome.Protected)]
    [InlineData("/%41DMIN/x", Outcome.Protected)]
    [InlineData("http://127.0.0.1/x/../admin/x", Outcome.Protected)]
    // Case variants: routes match case-insensitively.
    [InlineData("/ADMIN/x", Outcome.Protected)]
    [InlineData("/Admin", Outcome.Protected)]
    [InlineData("/aDmIn/x", Outcome.Protected)]
    // Empty segments: collapsed by the gateway (Kestrel keeps them; routing alone would send //admin to the public route).
    [InlineData("//admin/x", Outcome.Protected)]
    [InlineData("///admin", Outcome.Protected)]
    [InlineData("/admin//x", Outcome.Protected)]
    [InlineData("//ADMIN//x", Outcome.Protected)]
    [InlineData("http://127.0.0.1//admin/x", Outcome.Protected)]
    // Encoded slash / backslash (Kestrel keeps %2F as text; YARP would re-encode it as %252F).
    [InlineData("/%2fadmin/x", Outcome.Ambiguous)]
    [InlineData("/admin%2fx", Outcome.Ambiguous)]
    [InlineData("/admin%2Fx", Outcome.Ambiguous)]
    [InlineData("/x/..%2fadmin/x", Outcome.Ambiguous)]
    [InlineData("/x/%2e%2e%2fadmin", Outcome.Ambiguous)]
    [InlineData("/%5cadmin", Outcome.Ambiguous)]
    [InlineData("/x/..%5Cadmin", Outcome.Ambiguous)]
    [InlineData("/x\\..\\admin", Outcome.Ambiguous)]
    [InlineData("/\\admin", Outcome.Ambiguous)]
    // Path parameters: Tomcat / Spring strip ;... so /x/..;/admin is /admin to them.
    [InlineData("/admin;param/x", Outcome.Ambiguous)]
    [InlineData("/admin;/x", Outcome.Ambiguous)]
    [InlineData("/;/admin/x", Outcome.Ambiguous)]
    [InlineData("/x/..;/admin/x", Outcome.Ambiguous)]
    [InlineData("/public/..;/admin/x", Outcome.Ambiguous)]
    [InlineData("/admin%3bx", Outcome.Ambiguous)]
    // Escapes left after Kestrel's single decode: double encoding, undecodable (overlong UTF-8) bytes.
    [InlineData("/x/%252e%252e/admin/x", Outcome.Ambiguous)]
    [InlineData("/%252e%252e/admin", Outcome.Ambiguous)]
    [InlineData("/x/..%252fadmin", Outcome.Ambiguous)]
    [InlineData("/%2561dmin/x", Outcome.Ambiguous)]
    [InlineData("/x/%c0%ae%c0%ae/admin", Outcome.Ambiguous)]
    // Trailing dot / space on a segment (Windows servers drop them: /admin. is /admin there).
    [InlineData("/admin.", Outcome.Ambiguous)]
    [InlineData("/admin./x", Outcome.Ambiguous)]
    [InlineData("/admin..", Outcome.Ambiguous)]
    [InlineData("/admin%2e", Outcome.Ambiguous)]
    [InlineData("/admin%2E/x", Outcome.Ambiguous)]
    [InlineData("/admin%20", Outcome.Ambiguous)]
    // Control characters and fragments.
    [InlineData("/admin%0a", Outcome.Ambiguous)]
    [InlineData("/admin%09/x", Outcome.Ambiguous)]
    [InlineData("/admin%7f", Outcome.Ambiguous)]
    [InlineData("/admin#frag", Outcome.Ambiguous)]
    // NUL: Kestrel refuses these itself, before the gateway runs (plain 400, no body).
    [InlineData("/admin%00/x", Outcome.RefusedByKestrel)]
    [InlineData("/%00/admin", Outcome.RefusedByKestrel)]
    [InlineData("/admin%00", Outcome.RefusedByKestrel)]
    [InlineData("/admin{NUL}x", Outcome.RefusedByKestrel)]
    public async Task Trick_WithoutToken_NeverReachesTheUpstream(string target, Outcome expected)
    {
        var before = Upstream.Requests;
        var response = await RawHttp.GetAsync(Gateway.Port, target);
        output.WriteLine($"{target} -> {response.Status} {response.Body}");

        switch (expected)
        {
            case Outcome.Protected:
                Assert.Equal(401, response.Status);
                Assert.Equal("application/problem+json", response.ContentType);
                Assert.Contains("\"reason\":\"auth.missing\"", response.Body, StringComparison.Ordinal);
                Assert.StartsWith("Bearer", response.Header("WWW-Authenticate"), StringComparison.Ordinal);
                break;
            case Outcome.Ambiguous:
                Assert.Equal(400, response.Status);
                Assert.Equal("application/problem+json", response.ContentType);
                Assert.Contains("\"reason\":\"request.path-ambiguous\"", response.Body, StringComparison.Ordinal);
                break;
            case Outcome.RefusedByKestrel:
                Assert.Equal(400, response.Status);
                break;
        }

        Assert.Equal(before, Upstream.Requests);
    }

    /// <summary>With a valid token the same spellings reach the upstream, which receives exactly the canonical
    /// path that was routed and authorized: no dot segments, no empty segments, letter case as sent.</summary>
    [Theory]
    [InlineData("/admin/x", "/admin/x")]
    [InlineData("/admin", "/admin")]
    [InlineData("//admin//x", "/admin/x")]
    [InlineData("///admin/", "/admin/")]
    [InlineData("/x/../admin/x", "/admin/x")]
    [InlineData("/x/%2e%2e/admin/x", "/admin/x")]
    [InlineData("/%61dmin/x", "/admin/x")]
    [InlineData("/ADMIN/x", "/ADMIN/x")]
    [InlineData("/%41DMIN/x", "/ADMIN/x")]
    [InlineData("http://127.0.0.1//admin/x", "/admin/x")]
    [InlineData("/admin/a%20b/%C3%A9", "/admin/a b/\u00e9")]
    public async Task Trick_WithToken_UpstreamSeesTheRoutedPath(string target, string routed)
    {
        var response = await RawHttp.GetAsync(Gateway.Port, target, $"Authorization: Bearer {fixture.Tokens.Create()}\r\n");
        Assert.Equal(200, response.Status);
        var seen = response.Seen();
        Assert.Equal(routed, seen.Path);
        Assert.Empty(seen.Authorization); // credentials stripped: proof the admin route (with auth) was the one matched
        // What went on the wire upstream: no empty or dot segments the upstream could resolve differently.
        Assert.DoesNotContain("//", seen.RawTarget, StringComparison.Ordinal);
        Assert.DoesNotContain("/.", seen.RawTarget, StringComparison.Ordinal);
        Assert.DoesNotContain("%25", seen.RawTarget, StringComparison.Ordinal);
    }

    /// <summary>The public route beside it keeps working, and the upstream decodes exactly the path the gateway routed.</summary>
    [Theory]
    [InlineData("/public/x", "/public/x", "")]
    [InlineData("/", "/", "")]
    [InlineData("/public//x//", "/public/x/", "")]
    [InlineData("/administrator", "/administrator", "")]
    [InlineData("/.well-known/jwks.json", "/.well-known/jwks.json", "")]
    [InlineData("/files/report.v2.json", "/files/report.v2.json", "")]
    [InlineData("/a%20b/%C3%A9", "/a b/\u00e9", "")]
    [InlineData("/x/100%25", "/x/100%", "")]
    [InlineData("/x/a%3Fb", "/x/a?b", "")]
    [InlineData("/x/a%23b", "/x/a#b", "")]
    [InlineData("/x//../admin", "/x/admin", "")] // Kestrel resolves .. first (/x/admin); collapsing cannot resurrect /admin
    [InlineData("/public/x?next=/../admin;x%2f", "/public/x", "?next=/../admin;x%2f")] // the query is not a path
    public async Task PublicRoute_Works_AndUpstreamSeesTheRoutedPath(string target, string routed, string query)
    {
        var response = await RawHttp.GetAsync(Gateway.Port, target);
        Assert.Equal(200, response.Status);
        var seen = response.Seen();
        Assert.Equal(routed, seen.Path);
        Assert.Equal(query, seen.Query);
    }

    [Fact]
    public async Task RewriteHeadersFromClients_AreStripped_AndDoNotChangeRouting()
    {
        const string headers = "X-Original-URL: /admin/x\r\nX-Rewrite-URL: /admin/x\r\n";
        var toPublic = await RawHttp.GetAsync(Gateway.Port, "/public/x", headers);
        Assert.Equal(200, toPublic.Status);
        var seen = toPublic.Seen();
        Assert.Equal("/public/x", seen.Path);
        Assert.Empty(seen.OriginalUrl);
        Assert.Empty(seen.RewriteUrl);

        var before = Upstream.Requests;
        var toAdmin = await RawHttp.GetAsync(Gateway.Port, "/admin/x", "X-Original-URL: /public/x\r\nX-Rewrite-URL: /public/x\r\n");
        Assert.Equal(401, toAdmin.Status);
        Assert.Equal(before, Upstream.Requests);

        var withToken = await RawHttp.GetAsync(Gateway.Port, "/admin/x", $"Authorization: Bearer {fixture.Tokens.Create()}\r\n{headers}");
        Assert.Equal(200, withToken.Status);
        Assert.Empty(withToken.Seen().OriginalUrl);
        Assert.Empty(withToken.Seen().RewriteUrl);
    }

    /// <summary>What the gateway relies on Kestrel for; fails loudly if a Kestrel update changes it.</summary>
    [Theory]
    [InlineData("/x/../admin", "/admin")]           // dot segments removed
    [InlineData("/x/%2e%2e/admin", "/admin")]       // ... after percent-decoding
    [InlineData("/%61dmin", "/admin")]              // unreserved escapes decoded
    [InlineData("/a%2Fb", "/a%2Fb")]                // %2F kept as text (never decoded)
    [InlineData("//admin", "//admin")]              // empty segments kept: the gateway collapses them
    [InlineData("/admin;x", "/admin;x")]            // path parameters kept: the gateway refuses them
    [InlineData("/a\\b", "/a\\b")]                  // backslash kept: the gateway refuses it
    [InlineData("/x/%252e%252e/a", "/x/%2e%2e/a")]  // decoded exactly once
    [InlineData("/admin.", "/admin.")]              // trailing dot kept
    public async Task KestrelBaseline(string target, string decoded)
    {
        var response = await RawHttp.GetAsync(fixture.Bare.Port, target);
        Assert.Equal(200, response.Status);
        Assert.Equal(decoded, response.Seen().Path);
    }

    [Fact]
    public async Task KestrelBaseline_RefusesEncodedNul()
    {
        var response = await RawHttp.GetAsync(fixture.Bare.Port, "/admin%00");
        Assert.Equal(400, response.Status);
    }

    public enum Outcome
    {
        /// <summary>401 from the admin route: the trick resolved to /admin and met its auth.</summary>
        Protected,

        /// <summary>400 problem+json request.path-ambiguous from the gateway.</summary>
        Ambiguous,

        /// <summary>400 from Kestrel's parser, before any gateway code.</summary>
        RefusedByKestrel,
    }

    private sealed record RawResponse(int Status, IReadOnlyList<KeyValuePair<string, string>> Headers, string Body)
    {
        public string? Header(string name) => Headers.FirstOrDefault(h => string.Equals(h.Key, name, StringComparison.OrdinalIgnoreCase)).Value;

        public string? ContentType => Header("Content-Type")?.Split(';')[0].Trim();

        public PathTrickGateway.Seen Seen() => JsonSerializer.Deserialize<PathTrickGateway.Seen>(Body) ?? throw new InvalidDataException($"not an upstream echo: {Body}");
    }

    /// <summary>One GET over a fresh TCP connection, with the request target written byte for byte.</summary>
    private static class RawHttp
    {
        public static async Task<RawResponse> GetAsync(int port, string target, string extraHeaders = "")
        {
            using var client = new TcpClient { NoDelay = true };
            await client.ConnectAsync(IPAddress.Loopback, port);
            var stream = client.GetStream();
            var request = $"GET {target.Replace("{NUL}", "\0", StringComparison.Ordinal)} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{extraHeaders}\r\n";
            await stream.WriteAsync(Encoding.Latin1.GetBytes(request));

            using var received = new MemoryStream();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            try
            {
                await stream.CopyToAsync(received, timeout.Token);
            }
            catch (IOException) when (received.Length > 0)
            {
                // reset after the answer
            }

            var bytes = received.ToArray();
            var end = IndexOf(bytes, "\r\n\r\n"u8);
            if (end < 0) throw new InvalidDataException($"no complete response: {Encoding.Latin1.GetString(bytes)}");
            var lines = Encoding.Latin1.GetString(bytes, 0, end).Split("\r\n");
            var status = int.Parse(lines[0].Split(' ', 3)[1]);
            var headers = lines.Skip(1).Select(l => l.Split(':', 2)).Select(p => new KeyValuePair<string, string>(p[0].Trim(), p[1].Trim())).ToList();
            var body = bytes.AsSpan(end + 4);
            var chunked = headers.Any(h => h.Key.Equals("Transfer-Encoding", StringComparison.OrdinalIgnoreCase) && h.Value.Contains("chunked", StringComparison.OrdinalIgnoreCase));
            return new RawResponse(status, headers, Encoding.UTF8.GetString(chunked ? Dechunk(body) : body));
        }

        private static byte[] Dechunk(ReadOnlySpan<byte> body)
        {
            var result = new List<byte>();
            while (true)
            {
                var line = IndexOf(body, "\r\n"u8);
                var size = Convert.ToInt32(Encoding.Latin1.GetString(body[..line]).Split(';')[0].Trim(), 16);
                if (size == 0) return [.. result];
                result.AddRange(body.Slice(line + 2, size));
                body = body[(line + 2 + size + 2)..];
            }
        }

        private static int IndexOf(ReadOnlySpan<byte> haystack, ReadOnlySpan<byte> needle) => haystack.IndexOf(needle);
    }
}
