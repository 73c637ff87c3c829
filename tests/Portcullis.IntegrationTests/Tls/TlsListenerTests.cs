using System.Net;
using System.Net.Http.Json;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Portcullis.Cli;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.Tls;

// These tests talk to a gateway serving a certificate from a throwaway test CA (or self-signed); what they check
// is the gateway's side of the handshake, so the client accepts any server certificate on purpose.
#pragma warning disable CA5359
namespace Portcullis.IntegrationTests.Tls;

/// <summary>Real TLS on 127.0.0.1: SNI, live rotation under load, rejected replacements, TLS versions, `certs dev`.</summary>
public sealed class TlsListenerTests
{
    private static readonly DateTimeOffset Now = DateTimeOffset.UtcNow;

    private static (string Pem, string Key, string Fingerprint) Pair(string[] hosts, DateTimeOffset? notBefore = null, DateTimeOffset? notAfter = null, string? commonName = null)
    {
        using var certificate = DevCertificates.CreateServer(null, hosts, notBefore ?? Now.AddDays(-1), notAfter ?? Now.AddDays(60), commonName);
        return (DevCertificates.CertificatePem(certificate), DevCertificates.KeyPem(certificate), certificate.GetCertHashString(System.Security.Cryptography.HashAlgorithmName.SHA256));
    }

    private static string Config(string tls, string protocols = "http1") => """
        listeners:
          - name: public
            address: "127.0.0.1:{{PORT}}"
            protocols: PROTOCOLS
            tls:
        TLS
          - { name: admin, address: "127.0.0.1:{{ADMIN_PORT}}", admin: true }
        routes:
          - { name: all, match: { pathPrefix: / }, respond: { body: ok } }
        """.Replace("PROTOCOLS", protocols, StringComparison.Ordinal).Replace("TLS", tls.TrimEnd('\n'), StringComparison.Ordinal);

    /// <summary>One TLS handshake; returns the served certificate's SHA-256 fingerprint and the negotiated protocol.</summary>
    private static async Task<(string Fingerprint, SslProtocols Protocol, SslApplicationProtocol Alpn)> HandshakeAsync(int port, string? serverName, SslProtocols protocols = SslProtocols.None, List<SslApplicationProtocol>? alpn = null)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, port);
        await using var ssl = new SslStream(tcp.GetStream());
        await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = serverName ?? "",
            EnabledSslProtocols = protocols,
            ApplicationProtocols = alpn,
            RemoteCertificateValidationCallback = (_, _, _, _) => true,
        });
        using var served = X509CertificateLoader.LoadCertificate(ssl.RemoteCertificate!.GetRawCertData());
        return (served.GetCertHashString(System.Security.Cryptography.HashAlgorithmName.SHA256), ssl.SslProtocol, ssl.NegotiatedApplicationProtocol);
    }

    private static Dictionary<string, string> Files(params (string Name, string Content)[] files) => files.ToDictionary(f => f.Name, f => f.Content);

    private static async Task<JsonElement> CertificatesAsync(TestGateway gateway)
    {
        var body = await gateway.Admin.GetFromJsonAsync<JsonElement>("/admin/certificates");
        return body.GetProperty("certificates");
    }

    /// <summary>Replaces key and certificate as deploy tools do: each written to a temporary file and renamed over.</summary>
    private static async Task RotateAsync(TestGateway gateway, string name, (string Pem, string Key, string Fingerprint) pair)
    {
        await gateway.WriteFileAsync(name + ".key", pair.Key);
        await gateway.WriteFileAsync(name + ".pem", pair.Pem);
    }

    [Fact]
    public async Task Sni_picks_each_certificate_and_unknown_or_missing_names_get_the_default()
    {
        var fallback = Pair(["default.test"]);
        var api = Pair(["api.example.test"]);
        var wildcard = Pair(["*.example.test"]);
        await using var gateway = await TestGateway.StartAsync(Config("""
                  certificates:
                    - { name: fallback, cert: d.pem, key: d.key }
                    - { name: wildcard, cert: w.pem, key: w.key }
                    - { name: api, cert: a.pem, key: a.key }
            """, "http1AndHttp2"), Files(("d.pem", fallback.Pem), ("d.key", fallback.Key), ("w.pem", wildcard.Pem), ("w.key", wildcard.Key), ("a.pem", api.Pem), ("a.key", api.Key)));

        Assert.Equal(api.Fingerprint, (await HandshakeAsync(gateway.Port, "api.example.test")).Fingerprint);
        Assert.Equal(wildcard.Fingerprint, (await HandshakeAsync(gateway.Port, "www.example.test")).Fingerprint);
        Assert.Equal(fallback.Fingerprint, (await HandshakeAsync(gateway.Port, "deep.www.example.test")).Fingerprint);
        Assert.Equal(fallback.Fingerprint, (await HandshakeAsync(gateway.Port, "unknown.test")).Fingerprint);
        Assert.Equal(fallback.Fingerprint, (await HandshakeAsync(gateway.Port, null)).Fingerprint);
        Assert.Equal(fallback.Fingerprint, (await HandshakeAsync(gateway.Port, "default.test")).Fingerprint);

        // ALPN: h2 when offered, http/1.1 otherwise.
        Assert.Equal(SslApplicationProtocol.Http2, (await HandshakeAsync(gateway.Port, "api.example.test", alpn: [SslApplicationProtocol.Http2, SslApplicationProtocol.Http11])).Alpn);
        Assert.Equal(SslApplicationProtocol.Http11, (await HandshakeAsync(gateway.Port, "api.example.test", alpn: [SslApplicationProtocol.Http11])).Alpn);

        var certificates = await CertificatesAsync(gateway);
        Assert.Equal(3, certificates.GetArrayLength());
        var first = certificates[0];
        Assert.Equal("fallback", first.GetProperty("name").GetString());
        Assert.True(first.GetProperty("default").GetBoolean());
        Assert.Equal("ok", first.GetProperty("state").GetString());
        Assert.InRange(first.GetProperty("daysToExpiry").GetInt32(), 58, 60);
        Assert.Equal("default.test", first.GetProperty("dnsNames")[0].GetString());
        Assert.EndsWith("d.pem", first.GetProperty("files")[0].GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Rotation_under_load_fails_no_request_serves_new_handshakes_the_new_certificate_and_keeps_open_connections()
    {
        var initial = Pair(["api.test"]);
        await using var gateway = await TestGateway.StartAsync(Config("""
                  certificates: [{ cert: api.pem, key: api.key }]
            """), Files(("api.pem", initial.Pem), ("api.key", initial.Key)));
        var url = $"https://api.test:{gateway.Port}/";

        HttpClient Client(Action<string>? seen, bool keepAlive) => new(new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                await socket.ConnectAsync(IPAddress.Loopback, gateway.Port, ct);
                return new NetworkStream(socket, ownsSocket: true);
            },
            SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, certificate, _, _) =>
                {
                    seen?.Invoke(certificate!.GetCertHashString(System.Security.Cryptography.HashAlgorithmName.SHA256));
                    return true;
                },
            },
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
            MaxConnectionsPerServer = 1,
        })
        { Timeout = TimeSpan.FromSeconds(10) };

        // One keep-alive connection opened before any rotation.
        var keptAliveSeen = new List<string>();
        using var keptAlive = Client(f => { lock (keptAliveSeen) keptAliveSeen.Add(f); }, keepAlive: true);
        Assert.Equal("ok", await keptAlive.GetStringAsync(url));

        using var stop = new CancellationTokenSource();
        var failures = 0;
        var successes = 0;
        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        async Task Loop(bool newConnectionEachTime)
        {
            using var client = Client(null, keepAlive: !newConnectionEachTime);
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    using var request = new HttpRequestMessage(HttpMethod.Get, url);
                    if (newConnectionEachTime) request.Headers.ConnectionClose = true;
                    using var response = await client.SendAsync(request);
                    if (response.StatusCode == HttpStatusCode.OK) Interlocked.Increment(ref successes);
                    else
                    {
                        Interlocked.Increment(ref failures);
                        errors.Enqueue(response.StatusCode.ToString());
                    }
                }
                catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
                {
                    if (stop.IsCancellationRequested) break;
                    Interlocked.Increment(ref failures);
                    errors.Enqueue(ex.ToString());
                }
            }
        }

        var loops = new[] { Loop(true), Loop(true), Loop(false), Loop(false) };
        for (var i = 0; i < 4; i++)
        {
            var next = Pair(["api.test"], commonName: "api.test rotation " + i);
            await RotateAsync(gateway, "api", next);
            await Eventually.TrueAsync(async () => (await HandshakeAsync(gateway.Port, "api.test")).Fingerprint == next.Fingerprint, $"rotation {i} not served", context: gateway.LogDump());
            await Task.Delay(200);
        }

        stop.Cancel();
        await Task.WhenAll(loops);
        Assert.True(failures == 0, $"{failures} failed requests of {failures + successes}:\n{string.Join("\n", errors.Take(5))}");
        Assert.True(successes > 20, $"only {successes} requests");

        // The connection made before the rotations is still the same one (one handshake) and still works.
        Assert.Equal("ok", await keptAlive.GetStringAsync(url));
        Assert.Equal([initial.Fingerprint], keptAliveSeen);
        Assert.Contains(gateway.Logs.Lines, l => l.Contains("reloaded", StringComparison.Ordinal) && l.Contains("Certificate cert1", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Garbage_mismatched_key_and_expired_replacements_keep_the_old_certificate_and_are_reported()
    {
        var good = Pair(["api.test"]);
        await using var gateway = await TestGateway.StartAsync(Config("""
                  certificates: [{ name: api, cert: api.pem, key: api.key }]
            """), Files(("api.pem", good.Pem), ("api.key", good.Key)));

        async Task ExpectRejected(string expected)
        {
            await Eventually.TrueAsync(async () => (await CertificatesAsync(gateway))[0].GetProperty("lastError").GetString()?.Contains(expected, StringComparison.Ordinal) == true, $"admin does not report '{expected}'", context: gateway.LogDump());
            var status = (await CertificatesAsync(gateway))[0];
            Assert.Equal("error", status.GetProperty("state").GetString());
            Assert.Equal(good.Fingerprint, status.GetProperty("fingerprintSha256").GetString());
            Assert.Equal(good.Fingerprint, (await HandshakeAsync(gateway.Port, "api.test")).Fingerprint);
        }

        await gateway.WriteFileAsync("api.pem", "not a certificate\n");
        await ExpectRejected("holds no PEM certificate");

        var other = Pair(["api.test"]);
        await gateway.WriteFileAsync("api.pem", other.Pem); // with the old key: mismatched
        await ExpectRejected("does not match");

        await RotateAsync(gateway, "api", Pair(["api.test"], Now.AddDays(-30), Now.AddDays(-1)));
        await ExpectRejected("expired on");

        Assert.Single(gateway.Logs.Lines, l => l.Contains("was not replaced", StringComparison.Ordinal) && l.Contains("expired on", StringComparison.Ordinal));

        var renewed = Pair(["api.test"]);
        await RotateAsync(gateway, "api", renewed);
        await Eventually.TrueAsync(async () => (await HandshakeAsync(gateway.Port, "api.test")).Fingerprint == renewed.Fingerprint, "renewed certificate not served", context: gateway.LogDump());
        var final = (await CertificatesAsync(gateway))[0];
        Assert.Equal("ok", final.GetProperty("state").GetString());
        Assert.Equal(JsonValueKind.Null, final.GetProperty("lastError").ValueKind);
    }

    [Fact]
    public async Task Only_tls12_and_tls13_are_accepted_and_minVersion_tls13_refuses_a_tls12_client()
    {
        var pair = Pair(["api.test"]);
        var files = Files(("api.pem", pair.Pem), ("api.key", pair.Key));
        await using (var gateway = await TestGateway.StartAsync(Config("""
                  certificates: [{ cert: api.pem, key: api.key }]
            """), files))
        {
            Assert.Equal(SslProtocols.Tls12, (await HandshakeAsync(gateway.Port, "api.test", SslProtocols.Tls12)).Protocol);
            Assert.Equal(SslProtocols.Tls13, (await HandshakeAsync(gateway.Port, "api.test", SslProtocols.Tls13)).Protocol);
#pragma warning disable SYSLIB0039, CA5397 // TLS 1.0/1.1 are obsolete: that is what is being refused.
            await Assert.ThrowsAnyAsync<Exception>(() => HandshakeAsync(gateway.Port, "api.test", SslProtocols.Tls11));
            await Assert.ThrowsAnyAsync<Exception>(() => HandshakeAsync(gateway.Port, "api.test", SslProtocols.Tls));
#pragma warning restore SYSLIB0039, CA5397
            // A refused handshake leaves the listener serving.
            Assert.Equal(pair.Fingerprint, (await HandshakeAsync(gateway.Port, "api.test")).Fingerprint);
        }

        await using (var gateway = await TestGateway.StartAsync(Config("""
                  certificates: [{ cert: api.pem, key: api.key }]
                  minVersion: tls13
            """), files))
        {
            await Assert.ThrowsAnyAsync<Exception>(() => HandshakeAsync(gateway.Port, "api.test", SslProtocols.Tls12));
            Assert.Equal(SslProtocols.Tls13, (await HandshakeAsync(gateway.Port, "api.test")).Protocol);
        }
    }

    [Fact]
    public async Task Validate_reports_a_bad_certificate_path_with_line_and_column()
    {
        var directory = Directory.CreateTempSubdirectory("portcullis-tls-cli-").FullName;
        try
        {
            var path = Path.Combine(directory, "portcullis.yaml");
            await File.WriteAllTextAsync(path, """
                listeners:
                  - name: public
                    address: 127.0.0.1:18443
                    tls:
                      certificates:
                        - cert: certs/nowhere.pem
                          key: certs/nowhere.key
                routes:
                  - { name: all, match: { pathPrefix: / }, respond: { body: ok } }
                """);
            var stdout = new StringWriter();
            var stderr = new StringWriter();

            var code = await PortcullisCli.RunAsync(["validate", "-c", path], stdout, stderr);

            Assert.Equal(PortcullisCli.Invalid, code);
            Assert.Contains($"{path}:6:17: error: cannot read '{Path.Combine(directory, "certs", "nowhere.pem")}'", stderr.ToString(), StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task Certs_dev_output_serves_as_a_listener_certificate_that_chains_to_its_ca()
    {
        var directory = Directory.CreateTempSubdirectory("portcullis-certs-dev-").FullName;
        try
        {
            var certs = Path.Combine(directory, "certs");
            var stdout = new StringWriter();
            var stderr = new StringWriter();
            Assert.Equal(PortcullisCli.Ok, await PortcullisCli.RunAsync(["certs", "dev", "--out", certs, "--hosts", "localhost,127.0.0.1"], stdout, stderr));
            Assert.All(DevCertificates.FileNames, f => Assert.True(File.Exists(Path.Combine(certs, f)), f));
            if (!OperatingSystem.IsWindows())
            {
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(certs, "server.key")));
            }

            // Again without --force: refused, files kept. Bad hosts: usage error.
            Assert.Equal(PortcullisCli.Invalid, await PortcullisCli.RunAsync(["certs", "dev", "--out", certs], stdout, stderr));
            Assert.Equal(PortcullisCli.Usage, await PortcullisCli.RunAsync(["certs", "dev", "--out", certs, "--force", "--hosts", "bad host!"], stdout, stderr));

            using var ca = X509CertificateLoader.LoadCertificateFromFile(Path.Combine(certs, "ca.pem"));
            using var client = X509Certificate2.CreateFromPemFile(Path.Combine(certs, "client.pem"), Path.Combine(certs, "client.key"));
            Assert.True(client.HasPrivateKey);
            Assert.True(Chains(client, ca));

            await using var gateway = await TestGateway.StartAsync(Config($$"""
                      certificates: [{ cert: {{Path.Combine(certs, "server.pem")}}, key: {{Path.Combine(certs, "server.key")}} }]
                """));
            using var handler = new SocketsHttpHandler();
            handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
                errors == SslPolicyErrors.RemoteCertificateChainErrors && Chains(X509CertificateLoader.LoadCertificate(certificate!.GetRawCertData()), ca);
            using var http = new HttpClient(handler);
            Assert.Equal("ok", await http.GetStringAsync($"https://localhost:{gateway.Port}/"));
            Assert.Equal("ok", await http.GetStringAsync($"https://127.0.0.1:{gateway.Port}/"));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>Whether the certificate chains to exactly this CA (custom trust, no system roots).</summary>
    private static bool Chains(X509Certificate2 certificate, X509Certificate2 ca)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(ca);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return chain.Build(certificate);
    }
}
