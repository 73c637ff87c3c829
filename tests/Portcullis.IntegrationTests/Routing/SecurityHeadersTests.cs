using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using Microsoft.AspNetCore.Http;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.Tls;

// The gateway serves a throwaway certificate made by the test; what is checked is the answer's headers, so the
// client accepts any server certificate on purpose.
#pragma warning disable CA5359

namespace Portcullis.IntegrationTests.Routing;

/// <summary>
/// transforms.securityHeaders: default (issue 19, item 7) on real sockets, over HTTPS and plain HTTP: the preset's
/// headers are added where the upstream's answer lacks them, HSTS only over HTTPS, the upstream's own values and
/// its CSP pass through, the route's response.set wins, and a route without the preset gets none of them.
/// </summary>
public sealed class SecurityHeadersTests
{
    private static readonly DateTimeOffset Now = DateTimeOffset.UtcNow;

    [Fact]
    public async Task The_preset_fills_in_missing_headers_hsts_only_over_https_and_upstream_values_win()
    {
        await using var plain = await TestUpstream.StartAsync("plain");
        plain.Handler = context => context.Response.WriteAsync("ok");
        await using var own = await TestUpstream.StartAsync("own");
        own.Handler = context =>
        {
            context.Response.Headers["Referrer-Policy"] = "no-referrer";
            context.Response.Headers.ContentSecurityPolicy = "default-src 'self'; frame-ancestors 'none'";
            context.Response.Headers.StrictTransportSecurity = "max-age=60";
            return context.Response.WriteAsync("ok");
        };

        using var server = DevCertificates.CreateServer(null, ["api.test"], Now.AddDays(-1), Now.AddDays(30));
        var securePort = Ports.GetFree();
        await using var gateway = await TestGateway.StartAsync($$$"""
            listeners:
              - { name: public, address: "127.0.0.1:{{PORT}}" }
              - name: secure
                address: "127.0.0.1:SECURE_PORT"
                tls: { certificates: [{ cert: server.pem, key: server.key }] }
              - { name: admin, address: "127.0.0.1:{{ADMIN_PORT}}", admin: true }
            routes:
              - { name: preset, match: { pathPrefix: /preset }, cluster: plain, transforms: { securityHeaders: default } }
              - { name: own, match: { pathPrefix: /own }, cluster: own, transforms: { securityHeaders: default } }
              - name: operator
                match: { pathPrefix: /operator }
                cluster: plain
                transforms:
                  securityHeaders: default
                  response: { set: { Referrer-Policy: same-origin }, remove: [X-Frame-Options] }
              - { name: bare, match: { pathPrefix: /bare }, cluster: plain }
            clusters:
              plain: { destinations: ["{{{plain.Url}}}"] }
              own: { destinations: ["{{{own.Url}}}"] }
            """.Replace("SECURE_PORT", securePort.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal),
            new Dictionary<string, string> { ["server.pem"] = DevCertificates.CertificatePem(server), ["server.key"] = DevCertificates.KeyPem(server) });
        using var https = HttpsClient(securePort);

        // Over HTTPS: all four.
        using (var response = await https.GetAsync("/preset"))
        {
            Assert.Equal("nosniff", Header(response, "X-Content-Type-Options"));
            Assert.Equal("strict-origin-when-cross-origin", Header(response, "Referrer-Policy"));
            Assert.Equal("SAMEORIGIN", Header(response, "X-Frame-Options"));
            Assert.Equal("max-age=31536000; includeSubDomains", Header(response, "Strict-Transport-Security"));
            Assert.Null(Header(response, "Content-Security-Policy"));
        }

        // Over plain HTTP: no HSTS (RFC 6797 §7.2), the rest the same.
        using (var response = await gateway.Client.GetAsync("/preset"))
        {
            Assert.Equal("nosniff", Header(response, "X-Content-Type-Options"));
            Assert.Equal("SAMEORIGIN", Header(response, "X-Frame-Options"));
            Assert.Null(Header(response, "Strict-Transport-Security"));
        }

        // The upstream's own values pass through; its CSP's frame-ancestors makes X-Frame-Options unnecessary.
        using (var response = await https.GetAsync("/own"))
        {
            Assert.Equal("no-referrer", Header(response, "Referrer-Policy"));
            Assert.Equal("default-src 'self'; frame-ancestors 'none'", Header(response, "Content-Security-Policy"));
            Assert.Equal("max-age=60", Header(response, "Strict-Transport-Security"));
            Assert.Null(Header(response, "X-Frame-Options"));
            Assert.Equal("nosniff", Header(response, "X-Content-Type-Options"));
        }

        // The route's own set and remove win over the preset.
        using (var response = await https.GetAsync("/operator"))
        {
            Assert.Equal("same-origin", Header(response, "Referrer-Policy"));
            Assert.Null(Header(response, "X-Frame-Options"));
            Assert.Equal("nosniff", Header(response, "X-Content-Type-Options"));
        }

        // Without the preset: none of them.
        using (var response = await https.GetAsync("/bare"))
        {
            foreach (var name in new[] { "X-Content-Type-Options", "Referrer-Policy", "X-Frame-Options", "Strict-Transport-Security" })
            {
                Assert.Null(Header(response, name));
            }
        }
    }

    private static string? Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) || response.Content.Headers.TryGetValues(name, out values) ? string.Join(", ", values) : null;

    private static HttpClient HttpsClient(int port) => new(new SocketsHttpHandler
    {
        ConnectCallback = async (_, ct) =>
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            await socket.ConnectAsync(IPAddress.Loopback, port, ct);
            return new NetworkStream(socket, ownsSocket: true);
        },
        SslOptions = new SslClientAuthenticationOptions { RemoteCertificateValidationCallback = (_, _, _, _) => true },
    })
    { BaseAddress = new Uri($"https://api.test:{port}"), Timeout = TimeSpan.FromSeconds(10) };
}
