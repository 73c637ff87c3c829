using System.Net;
using System.Net.Http.Json;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Microsoft.IdentityModel.JsonWebTokens;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.Tls;

// These tests talk to a gateway serving a certificate from a throwaway test CA (or self-signed); what they check
// is the gateway's side of the handshake, so the client accepts any server certificate on purpose.
#pragma warning disable CA5359
namespace Portcullis.IntegrationTests.Tls;

/// <summary>
/// Real mTLS on 127.0.0.1 with certificates made by the test: required and optional client certificates,
/// route rules on the URI SAN, identity headers upstream, CA bundle rotation, HSTS, the HTTPS redirect and
/// bad handshakes that are refused, logged without a storm and harmless to other clients.
/// </summary>
public sealed class ClientCertificateTests : IDisposable
{
    private static readonly DateTimeOffset Now = DateTimeOffset.UtcNow;

    private readonly X509Certificate2 _ca = DevCertificates.CreateCa("Clients CA", Now.AddDays(-1), Now.AddDays(365));
    private readonly X509Certificate2 _otherCa = DevCertificates.CreateCa("Other CA", Now.AddDays(-1), Now.AddDays(365));
    private readonly X509Certificate2 _server = DevCertificates.CreateServer(null, ["api.test"], Now.AddDays(-1), Now.AddDays(60));
    private readonly X509Certificate2 _billing;
    private readonly X509Certificate2 _reports;
    private readonly X509Certificate2 _stranger;

    public ClientCertificateTests()
    {
        _billing = DevCertificates.CreateClient(_ca, "billing", "spiffe://corp/billing", Now.AddDays(-1), Now.AddDays(30));
        _reports = DevCertificates.CreateClient(_ca, "reports", "spiffe://corp/reports", Now.AddDays(-1), Now.AddDays(30));
        _stranger = DevCertificates.CreateClient(_otherCa, "billing", "spiffe://corp/billing", Now.AddDays(-1), Now.AddDays(30));
    }

    public void Dispose()
    {
        foreach (var certificate in new[] { _ca, _otherCa, _server, _billing, _reports, _stranger }) certificate.Dispose();
    }

    private Dictionary<string, string> Files(X509Certificate2? ca = null) => new()
    {
        ["server.pem"] = DevCertificates.CertificatePem(_server),
        ["server.key"] = DevCertificates.KeyPem(_server),
        ["ca.pem"] = DevCertificates.CertificatePem(ca ?? _ca),
    };

    private static string Config(string mode, string upstream = "http://127.0.0.1:9") => """
        listeners:
          - name: public
            address: "127.0.0.1:{{PORT}}"
            tls:
              certificates: [{ cert: server.pem, key: server.key }]
              clientCertificate: { mode: MODE, ca: ca.pem }
          - { name: admin, address: "127.0.0.1:{{ADMIN_PORT}}", admin: true }
        identity:
          assertion: { lifetime: 30s }
        routes:
          - name: billing
            match: { pathPrefix: /billing }
            auth: { clientCertificate: true, claims: [{ claim: cert.uri, is: "spiffe://corp/billing" }] }
            cluster: backend
          - name: forward
            match: { pathPrefix: /forward }
            auth: { clientCertificate: true, forwardCertificate: X-Client-Cert }
            cluster: backend
          - { name: open, match: { pathPrefix: / }, respond: { body: ok } }
        clusters:
          backend: { destinations: [UPSTREAM] }
        """.Replace("MODE", mode, StringComparison.Ordinal).Replace("UPSTREAM", upstream, StringComparison.Ordinal);

    /// <summary>A client that presents <paramref name="certificate"/> (or none) and trusts any server certificate.</summary>
    private static HttpClient Client(int port, X509Certificate2? certificate, bool newConnectionEachTime = false)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                await socket.ConnectAsync(IPAddress.Loopback, port, ct);
                return new NetworkStream(socket, ownsSocket: true);
            },
            SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, _, _, _) => true,
                LocalCertificateSelectionCallback = certificate is null ? null : (_, _, _, _, _) => certificate,
            },
            PooledConnectionLifetime = newConnectionEachTime ? TimeSpan.Zero : Timeout.InfiniteTimeSpan,
            AllowAutoRedirect = false,
        };
        return new HttpClient(handler) { BaseAddress = new Uri($"https://api.test:{port}"), Timeout = TimeSpan.FromSeconds(10) };
    }

    private static async Task<HttpResponseMessage> GetAsync(int port, X509Certificate2? certificate, string path)
    {
        using var client = Client(port, certificate);
        return await client.GetAsync(path);
    }

    /// <summary>The request fails because the server refused the handshake (TLS 1.3 may report it at the first read).</summary>
    private static async Task AssertRefusedAsync(int port, X509Certificate2? certificate)
    {
        using var client = Client(port, certificate);
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => client.GetAsync("/"));
    }

    [Fact]
    public async Task Required_refuses_no_and_untrusted_certificates_and_a_rule_on_the_uri_san_allows_one_client_and_denies_another()
    {
        await using var upstream = await TestUpstream.StartAsync("backend");
        await using var gateway = await TestGateway.StartAsync(Config("required", upstream.Url), Files());

        await AssertRefusedAsync(gateway.Port, null);
        await AssertRefusedAsync(gateway.Port, _stranger);

        using (var allowed = await GetAsync(gateway.Port, _billing, "/billing/invoices"))
        {
            var seen = await UpstreamAnswer.ReadAsync(allowed);
            Assert.Equal("spiffe://corp/billing", seen.Header("X-Consumer-Id"));
            Assert.Equal("CN=billing", seen.Header("X-Subject"));
            var assertion = new JsonWebToken(seen.Header("X-Portcullis-Assertion"));
            Assert.Equal("cert:public", assertion.GetClaim("src").Value);
            Assert.Equal("spiffe://corp/billing", assertion.GetClaim("consumer").Value);
            // The raw certificate never travels upstream.
            Assert.DoesNotContain(seen.Headers.Keys, k => k.Contains("cert", StringComparison.OrdinalIgnoreCase));
        }

        using var denied = await GetAsync(gateway.Port, _reports, "/billing/invoices");
        Assert.Equal(HttpStatusCode.Forbidden, denied.StatusCode);
        Assert.Equal("application/problem+json", denied.Content.Headers.ContentType?.MediaType);
        Assert.Equal("authz.claims", (await denied.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("reason").GetString());
        Assert.Equal(1, upstream.Requests);

        // Trusted but not for billing: other routes are open to it.
        using var open = await GetAsync(gateway.Port, _reports, "/");
        Assert.Equal("ok", await open.Content.ReadAsStringAsync());

        // A client cannot assert an identity by sending the headers itself.
        using var client = Client(gateway.Port, _billing);
        using var request = new HttpRequestMessage(HttpMethod.Get, "/billing/x");
        request.Headers.Add("X-Consumer-Id", "spiffe://corp/admin");
        var forged = await UpstreamAnswer.ReadAsync(await client.SendAsync(request));
        Assert.Equal("spiffe://corp/billing", forged.Header("X-Consumer-Id"));

        // forwardCertificate: the validated certificate as URL-encoded PEM; a client's own copy is replaced.
        using var forwardRequest = new HttpRequestMessage(HttpMethod.Get, "/forward/x");
        forwardRequest.Headers.Add("X-Client-Cert", "forged");
        var forwarded = await UpstreamAnswer.ReadAsync(await client.SendAsync(forwardRequest));
        using var sent = X509Certificate2.CreateFromPem(Uri.UnescapeDataString(forwarded.Header("X-Client-Cert")!));
        Assert.Equal(_billing.Thumbprint, sent.Thumbprint);
    }

    [Fact]
    public async Task Client_certificate_identity_works_over_http2()
    {
        await using var gateway = await TestGateway.StartAsync(Config("required").Replace("    tls:", "    protocols: http1AndHttp2\n    tls:", StringComparison.Ordinal), Files());
        using var client = Client(gateway.Port, _billing);
        using var request = new HttpRequestMessage(HttpMethod.Get, "/") { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
        using var open = await client.SendAsync(request);
        Assert.Equal(HttpVersion.Version20, open.Version);
        using var denied = await client.SendAsync(new HttpRequestMessage(HttpMethod.Get, "/billing/x") { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact });
        // The cluster is unreachable (port 9): an authorized request gets past identity to a 502/503, never a 401.
        Assert.True(denied.StatusCode is HttpStatusCode.BadGateway or HttpStatusCode.ServiceUnavailable, denied.StatusCode.ToString());
        using var reports = Client(gateway.Port, _reports);
        using var forbidden = await reports.SendAsync(new HttpRequestMessage(HttpMethod.Get, "/billing/x") { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact });
        Assert.Equal(HttpStatusCode.Forbidden, forbidden.StatusCode);
    }

    [Fact]
    public async Task Optional_lets_clients_without_a_certificate_in_and_answers_401_on_certificate_routes()
    {
        await using var upstream = await TestUpstream.StartAsync("backend");
        await using var gateway = await TestGateway.StartAsync(Config("optional", upstream.Url), Files());

        using (var open = await GetAsync(gateway.Port, null, "/"))
        {
            Assert.Equal("ok", await open.Content.ReadAsStringAsync());
        }

        using (var missing = await GetAsync(gateway.Port, null, "/billing/invoices"))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, missing.StatusCode);
            Assert.Equal("application/problem+json", missing.Content.Headers.ContentType?.MediaType);
            Assert.Equal("cert.missing", (await missing.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("reason").GetString());
        }

        using (var wrong = await GetAsync(gateway.Port, _reports, "/billing/invoices"))
        {
            Assert.Equal(HttpStatusCode.Forbidden, wrong.StatusCode);
        }

        using (var allowed = await GetAsync(gateway.Port, _billing, "/billing/invoices"))
        {
            Assert.Equal(HttpStatusCode.OK, allowed.StatusCode);
        }

        // Optional still refuses a certificate it does not trust.
        await AssertRefusedAsync(gateway.Port, _stranger);
        Assert.Equal(1, upstream.Requests);
    }

    [Fact]
    public async Task Ca_bundle_rotation_trusts_the_new_ca_on_new_connections_and_a_bad_bundle_keeps_the_old_one()
    {
        await using var gateway = await TestGateway.StartAsync(Config("required"), Files());
        using (var first = await GetAsync(gateway.Port, _billing, "/"))
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        }

        // A connection made before the rotation keeps working.
        using var keptAlive = Client(gateway.Port, _billing);
        Assert.Equal("ok", await keptAlive.GetStringAsync("/"));

        await gateway.WriteFileAsync("ca.pem", DevCertificates.CertificatePem(_otherCa));
        await Eventually.TrueAsync(async () =>
        {
            try
            {
                using var response = await GetAsync(gateway.Port, _stranger, "/");
                return response.StatusCode == HttpStatusCode.OK;
            }
            catch (HttpRequestException)
            {
                return false;
            }
        }, "the new CA is not trusted", context: gateway.LogDump());
        await AssertRefusedAsync(gateway.Port, _billing);
        Assert.Equal("ok", await keptAlive.GetStringAsync("/"));
        // Logged right after the swap, which handshakes may see first.
        await Eventually.TrueAsync(() => Task.FromResult(gateway.Logs.Lines.Any(l => l.Contains("Client CA bundle of listener public reloaded", StringComparison.Ordinal))), "no reload logged", context: gateway.LogDump());

        await gateway.WriteFileAsync("ca.pem", "garbage\n");
        await Eventually.TrueAsync(async () =>
        {
            var status = (await gateway.Admin.GetFromJsonAsync<JsonElement>("/admin/certificates")).GetProperty("clientCertificateAuthorities")[0];
            return status.GetProperty("state").GetString() == "error";
        }, "admin does not report the bad bundle", context: gateway.LogDump());
        var authority = (await gateway.Admin.GetFromJsonAsync<JsonElement>("/admin/certificates")).GetProperty("clientCertificateAuthorities")[0];
        Assert.Contains("holds no PEM certificate", authority.GetProperty("lastError").GetString(), StringComparison.Ordinal);
        Assert.Equal("CN=Other CA", authority.GetProperty("certificates")[0].GetProperty("subject").GetString());
        Assert.Equal("required", authority.GetProperty("mode").GetString());
        using (var still = await GetAsync(gateway.Port, _stranger, "/"))
        {
            Assert.Equal(HttpStatusCode.OK, still.StatusCode);
        }

        await Eventually.TrueAsync(() => Task.FromResult(gateway.Logs.Lines.Any(l => l.Contains("was not replaced", StringComparison.Ordinal) && l.Contains("Client CA bundle", StringComparison.Ordinal))), "no rejection logged", context: gateway.LogDump());
    }

    [Fact]
    public async Task Hsts_is_sent_on_https_only_and_a_cleartext_listener_redirects_with_308()
    {
        var securePort = Ports.GetFree();
        var redirectPort = Ports.GetFree();
        var yaml = """
            listeners:
              - { name: plain, address: "127.0.0.1:{{PORT}}" }
              - name: secure
                address: "127.0.0.1:SECURE_PORT"
                tls:
                  certificates: [{ cert: server.pem, key: server.key }]
                  hsts: { maxAge: 180d, includeSubDomains: true }
              - { name: redirect, address: "127.0.0.1:REDIRECT_PORT", redirectToHttps: { port: SECURE_PORT } }
              - { name: admin, address: "127.0.0.1:{{ADMIN_PORT}}", admin: true }
            routes:
              - { name: open, match: { pathPrefix: / }, respond: { body: ok } }
            """.Replace("SECURE_PORT", securePort.ToString(), StringComparison.Ordinal).Replace("REDIRECT_PORT", redirectPort.ToString(), StringComparison.Ordinal);
        await using var gateway = await TestGateway.StartAsync(yaml, Files());

        using (var secure = await GetAsync(securePort, null, "/"))
        {
            Assert.Equal("max-age=15552000; includeSubDomains", secure.Headers.GetValues("Strict-Transport-Security").Single());
        }

        using (var missing = await GetAsync(securePort, null, "/nothing-here"))
        {
            Assert.True(missing.Headers.Contains("Strict-Transport-Security"));
        }

        using (var plain = await gateway.Client.GetAsync("/"))
        {
            Assert.Equal("ok", await plain.Content.ReadAsStringAsync());
            Assert.False(plain.Headers.Contains("Strict-Transport-Security"));
        }

        using var http = new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = false });
        using var request = new HttpRequestMessage(HttpMethod.Post, $"http://127.0.0.1:{redirectPort}/orders/7?expand=items&x=%2F");
        request.Headers.Host = "shop.example.test:" + redirectPort;
        using var redirected = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.PermanentRedirect, redirected.StatusCode);
        Assert.Equal($"https://shop.example.test:{securePort}/orders/7?expand=items&x=%2F", redirected.Headers.Location!.OriginalString);
        Assert.False(redirected.Headers.Contains("Strict-Transport-Security"));
    }

    [Fact]
    public async Task Bad_handshakes_are_refused_logged_without_a_storm_and_do_not_disturb_a_good_client()
    {
        await using var gateway = await TestGateway.StartAsync(Config("required"), Files());
        using var stop = new CancellationTokenSource();
        var failures = 0;
        var successes = 0;
        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();

        async Task Good(bool newConnectionEachTime)
        {
            using var client = Client(gateway.Port, _billing, newConnectionEachTime);
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    using var response = await client.GetAsync("/");
                    if (response.StatusCode == HttpStatusCode.OK) Interlocked.Increment(ref successes);
                    else
                    {
                        Interlocked.Increment(ref failures);
                        errors.Enqueue(response.StatusCode.ToString());
                    }
                }
                catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
                {
                    Interlocked.Increment(ref failures);
                    errors.Enqueue(ex.ToString());
                }
            }
        }

        var refused = 0;
        async Task Bad(int kind)
        {
            for (var i = 0; i < 15; i++)
            {
                try
                {
                    switch (kind)
                    {
#pragma warning disable SYSLIB0039, CA5397 // obsolete TLS versions: what is being refused
                        case 0: await HandshakeAndRequestAsync(gateway.Port, _billing, SslProtocols.Tls, null); break;
                        case 1: await HandshakeAndRequestAsync(gateway.Port, _billing, SslProtocols.Tls11, null); break;
#pragma warning restore SYSLIB0039, CA5397
                        case 2: await HandshakeAndRequestAsync(gateway.Port, null, SslProtocols.None, null); break;
                        case 3: await HandshakeAndRequestAsync(gateway.Port, _stranger, SslProtocols.None, null); break;
                        case 4: await HandshakeAndRequestAsync(gateway.Port, _billing, SslProtocols.None, [new SslApplicationProtocol("bogus/9")]); continue;
                        case 5: await GarbageAsync(gateway.Port); break;
                    }
                }
                catch (Exception ex) when (ex is AuthenticationException or IOException or SocketException)
                {
                    Interlocked.Increment(ref refused);
                    continue;
                }

                if (kind != 5) errors.Enqueue($"bad handshake kind {kind} was accepted");
            }
        }

        var started = System.Diagnostics.Stopwatch.StartNew();
        var good = new[] { Good(true), Good(false) };
        await Task.WhenAll(Enumerable.Range(0, 6).Select(Bad));
        stop.Cancel();
        await Task.WhenAll(good);

        Assert.True(failures == 0 && errors.IsEmpty, $"{failures} good requests failed of {failures + successes}:\n{string.Join("\n", errors.Take(5))}");
        Assert.True(successes > 10, $"only {successes} good requests");
        Assert.True(refused >= 60, $"only {refused} bad handshakes refused");

        // Refusals are summarised (at most one Information line per listener per 10 s), naming a reason.
        var lines = gateway.Logs.Lines.Where(l => l.Contains("Refused", StringComparison.Ordinal) && l.Contains("TLS handshake", StringComparison.Ordinal)).ToList();
        Assert.InRange(lines.Count, 1, 1 + (int)(started.Elapsed / TimeSpan.FromSeconds(10)));
        Assert.True(lines.All(l => l.Contains("listener public", StringComparison.Ordinal)), string.Join("\n", lines));

        // And the listener still serves.
        using var after = await GetAsync(gateway.Port, _billing, "/");
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
    }

    [Fact]
    public async Task A_handshake_without_sni_gets_the_default_certificate_and_a_refusal_reason_is_logged()
    {
        await using var gateway = await TestGateway.StartAsync(Config("required"), Files());
        // No SNI (connecting by IP address) is fine: the default certificate serves.
        var response = await HandshakeAndRequestAsync(gateway.Port, _billing, SslProtocols.None, null, serverName: "");
        Assert.Equal("HTTP/1.1 200 OK", response);

        await Assert.ThrowsAnyAsync<Exception>(() => HandshakeAndRequestAsync(gateway.Port, null, SslProtocols.None, null));
        await Eventually.TrueAsync(() => Task.FromResult(gateway.Logs.Lines.Any(l => l.Contains("Refused 1 TLS handshake", StringComparison.Ordinal) && l.Contains("no client certificate", StringComparison.Ordinal))), "no refusal logged", context: gateway.LogDump());
    }

    /// <summary>Raw TLS: handshake with the given settings, then one HTTP/1.1 request; returns the status line.</summary>
    private static async Task<string> HandshakeAndRequestAsync(int port, X509Certificate2? certificate, SslProtocols protocols, List<SslApplicationProtocol>? alpn, string serverName = "api.test")
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, port);
        await using var ssl = new SslStream(tcp.GetStream());
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = serverName,
            EnabledSslProtocols = protocols,
            ApplicationProtocols = alpn,
            RemoteCertificateValidationCallback = (_, _, _, _) => true,
            LocalCertificateSelectionCallback = certificate is null ? null : (_, _, _, _, _) => certificate,
        }, timeout.Token);
        await ssl.WriteAsync("GET / HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n"u8.ToArray(), timeout.Token);
        using var reader = new StreamReader(ssl);
        var line = await reader.ReadLineAsync(timeout.Token);
        return line ?? throw new IOException("connection closed without an answer");
    }

    private static async Task GarbageAsync(int port)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, port);
        var stream = tcp.GetStream();
        await stream.WriteAsync("GET / HTTP/1.1\r\nHost: api.test\r\n\r\n"u8.ToArray());
        var buffer = new byte[256];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (await stream.ReadAsync(buffer, timeout.Token) > 0)
        {
        }

        throw new IOException("closed");
    }
}
