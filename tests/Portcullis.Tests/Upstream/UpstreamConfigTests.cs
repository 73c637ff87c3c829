using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Portcullis.Configuration;
using Portcullis.Tls;
using Portcullis.Upstream;

namespace Portcullis.Tests.Upstream;

/// <summary>clusters.NAME.tls and clusters.NAME.credentials are checked at build time, with positions.</summary>
public sealed class UpstreamConfigTests() : ConfigBuildTestBase("portcullis-upstream-")
{
    private static readonly DateTimeOffset Now = DateTimeOffset.UtcNow;

    private static string Config(string cluster) => $$"""
        listeners: [{ name: public, address: 127.0.0.1:8080 }]
        routes: [{ name: all, match: { pathPrefix: / }, cluster: orders }]
        clusters:
          orders:
            destinations: [https://10.0.0.5:8443]
        {{cluster}}
        """;

    private void WritePki(DateTimeOffset? clientNotAfter = null)
    {
        using var ca = DevCertificates.CreateCa("Upstream CA", Now.AddDays(-1), Now.AddDays(365));
        WriteFile("ca.pem", DevCertificates.CertificatePem(ca));
        using var client = DevCertificates.CreateClient(ca, "gateway", null, Now.AddDays(-1), clientNotAfter ?? Now.AddDays(90));
        WriteFile("gw.pem", DevCertificates.CertificatePem(client));
        WriteFile("gw.key", DevCertificates.KeyPem(client));
        using var server = DevCertificates.CreateServer(ca, ["orders.test"], Now.AddDays(-1), Now.AddDays(90));
        WriteFile("server.pem", DevCertificates.CertificatePem(server));
        WriteFile("server.key", DevCertificates.KeyPem(server));
    }

    [Fact]
    public void A_full_tls_section_compiles_into_settings_and_yarp_metadata()
    {
        WritePki();
        var pin = Convert.ToBase64String(new byte[32]);
        var result = Build(Config($$"""
                tls:
                  ca: ca.pem
                  serverName: Orders.Internal.Test
                  pin: ["{{pin}}"]
                  clientCertificate: { cert: gw.pem, key: gw.key }
            """));

        Assert.True(result.Succeeded, Dump(result));
        var tls = result.Snapshot!.Clusters["orders"].Tls!;
        Assert.Equal(Path.Combine(_directory.FullName, "ca.pem"), tls.CaFile);
        Assert.Equal("orders.internal.test", tls.ServerName);
        Assert.Equal([pin], tls.Pins);
        Assert.Equal(Path.Combine(_directory.FullName, "gw.key"), tls.ClientCertificate!.KeyFile);
        Assert.Equal(tls.Fingerprint, result.Snapshot.ProxyClusters.Single().Metadata![UpstreamMetadata.Tls]);
        Assert.DoesNotContain(result.Diagnostics, d => d.Severity == DiagnosticSeverity.Warning);
    }

    [Theory]
    [InlineData("tls: { ca: missing.pem }", "file not found", 6, "missing.pem")]
    [InlineData("tls: { ca: gw.key }", "holds no PEM certificate", 6, "gw.key")]
    [InlineData("tls: { serverName: \"*.example.com\" }", "a wildcard cannot be sent", 6, "\"*.")]
    [InlineData("tls: { serverName: 10.0.0.5 }", "SNI carries DNS names only", 6, "10.0.0.5")]
    [InlineData("tls: { pin: [not-a-hash] }", "not a base64 SHA-256 hash", 6, "not-a-hash")]
    [InlineData("tls: { clientCertificate: { cert: gw.pem, pfx: gw.pfx } }", "either `cert` (PEM) or `pfx`", 6, "gw.pfx")]
    [InlineData("tls: { clientCertificate: { cert: gw.pem, key: server.key } }", "private key does not match the certificate", 6, "server.key")]
    [InlineData("tls: { clientCertificate: { cert: server.pem, key: server.key } }", "not for client authentication", 6, "server.pem")]
    [InlineData("tls: { clientCertificate: { key: gw.key } }", "neither `cert` nor `pfx`", 6, "{ key")]
    public void Bad_tls_settings_are_errors_at_their_value(string tls, string message, int line, string at)
    {
        WritePki();
        var result = Build(Config("    " + tls));
        var error = ErrorContaining(result, message);
        var column = File.ReadAllLines(ConfigPath)[line - 1].IndexOf(at, StringComparison.Ordinal) + 1;
        AssertAt(error, line, column);
    }

    [Fact]
    public void Insecure_skip_verify_and_an_expiring_client_certificate_are_warnings()
    {
        WritePki(clientNotAfter: Now.AddDays(3));
        var result = Build(Config("    tls: { insecureSkipVerify: true, clientCertificate: { cert: gw.pem, key: gw.key } }"));

        Assert.True(result.Succeeded, Dump(result));
        Assert.Contains(result.Diagnostics, d => d.Severity == DiagnosticSeverity.Warning && d.Message.StartsWith("INSECURE", StringComparison.Ordinal));
        Assert.Contains(result.Diagnostics, d => d.Severity == DiagnosticSeverity.Warning && d.Message.Contains("expires in", StringComparison.Ordinal));
    }

    [Fact]
    public void Client_credentials_compile_with_a_secret_file_and_never_keep_the_secret()
    {
        WriteFile("secret", "s3cr3t\n");
        var result = Build(Config("""
                credentials:
                  clientCredentials: { tokenUrl: "https://login.example.com/token", clientId: gw, clientSecretFile: secret, scope: orders.read, refreshAt: 0.5 }
            """));

        Assert.True(result.Succeeded, Dump(result));
        var settings = result.Snapshot!.Clusters["orders"].Credentials!;
        Assert.Equal(ClientAuthentication.SecretFile, settings.Authentication);
        Assert.Equal(0.5, settings.RefreshAt);
        Assert.Equal("Authorization", settings.Header);
        Assert.DoesNotContain("s3cr3t", settings.ToString(), StringComparison.Ordinal);
        Assert.Equal(settings.Fingerprint, result.Snapshot.ProxyClusters.Single().Metadata![UpstreamMetadata.Credentials]);
    }

    [Fact]
    public void An_inline_client_secret_is_an_error_at_its_key()
    {
        var result = Build(Config("""
                credentials:
                  clientCredentials:
                    tokenUrl: https://login.example.com/token
                    clientId: gw
                    clientSecret: hunter2
            """));

        var error = SingleError(result);
        Assert.Contains("never written in the configuration file", error.Message, StringComparison.Ordinal);
        AssertAt(error, 10, 23); // the value: it is the secret that must go
        Assert.Contains("clientSecretFile", error.Hint, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{ tokenUrl: \"ftp://x/token\", clientId: gw, clientSecretEnv: S }", "not an absolute http(s) URL")]
    [InlineData("{ tokenUrl: \"https://x/token\", clientSecretEnv: S }", "has no clientId")]
    [InlineData("{ tokenUrl: \"https://x/token\", clientId: gw }", "has no client authentication")]
    [InlineData("{ tokenUrl: \"https://x/token\", clientId: gw, clientSecretEnv: S, clientSecretFile: secret }", "exactly one of")]
    [InlineData("{ tokenUrl: \"https://x/token\", clientId: gw, clientSecretEnv: UNSET }", "'UNSET' is not set")]
    [InlineData("{ tokenUrl: \"https://x/token\", clientId: gw, clientSecretFile: empty }", "is empty")]
    [InlineData("{ tokenUrl: \"https://x/token\", clientId: gw, clientSecretEnv: S, refreshAt: 1.2 }", "outside 0.1 .. 0.95")]
    [InlineData("{ tokenUrl: \"https://x/token\", clientId: gw, clientSecretEnv: S, header: Host }", "cannot be sent in 'Host'")]
    [InlineData("{ tokenUrl: \"https://x/token\", clientId: gw, privateKeyJwt: { keyFile: ec.key } }", "no unencrypted RSA private key")]
    [InlineData("{ tokenUrl: \"https://x/token\", clientId: gw, privateKeyJwt: { keyFile: rsa.key, algorithm: es256 } }", "no unencrypted EC private key")]
    [InlineData("{ tokenUrl: \"https://x/token\", clientId: gw, privateKeyJwt: { keyFile: small.key } }", "at least 2048")]
    public void Bad_client_credentials_are_errors(string settings, string message)
    {
        _environment["S"] = "secret";
        WriteFile("secret", "x");
        WriteFile("empty", "\n");
        using (var ec = ECDsa.Create(ECCurve.NamedCurves.nistP256)) WriteFile("ec.key", ec.ExportPkcs8PrivateKeyPem());
        using (var rsa = RSA.Create(2048)) WriteFile("rsa.key", rsa.ExportPkcs8PrivateKeyPem());
        using (var small = RSA.Create(1024)) WriteFile("small.key", small.ExportPkcs8PrivateKeyPem());
        var result = Build(Config("    credentials: { clientCredentials: " + settings + " }"));
        ErrorContaining(result, message);
    }

    [Fact]
    public void Private_key_jwt_with_an_es256_key_compiles()
    {
        using (var ec = ECDsa.Create(ECCurve.NamedCurves.nistP256)) WriteFile("ec.key", ec.ExportPkcs8PrivateKeyPem());
        var result = Build(Config("    credentials: { clientCredentials: { tokenUrl: \"https://x/token\", clientId: gw, privateKeyJwt: { keyFile: ec.key, algorithm: ES256, kid: k1 } } }"));

        Assert.True(result.Succeeded, Dump(result));
        var settings = result.Snapshot!.Clusters["orders"].Credentials!;
        Assert.Equal(ClientAuthentication.PrivateKeyJwt, settings.Authentication);
        Assert.Equal(ClientAssertionAlgorithm.Es256, settings.Algorithm);
        Assert.Equal("k1", settings.Kid);
    }

    [Fact]
    public void Tokens_over_plain_http_to_a_remote_destination_are_a_warning()
    {
        _environment["S2"] = "x";
        var result = Build("""
            listeners: [{ name: public, address: 127.0.0.1:8080 }]
            routes: [{ name: all, match: { pathPrefix: / }, cluster: orders }]
            clusters:
              orders:
                destinations: [http://10.0.0.5:8080]
                credentials: { clientCredentials: { tokenUrl: "http://login.example.com/token", clientId: gw, clientSecretEnv: S2 } }
            """);

        Assert.True(result.Succeeded, Dump(result));
        Assert.Contains(result.Diagnostics, d => d.Severity == DiagnosticSeverity.Warning && d.Message.Contains("sends its upstream token over plain http", StringComparison.Ordinal));
        Assert.Contains(result.Diagnostics, d => d.Severity == DiagnosticSeverity.Warning && d.Message.Contains("sends its client credentials over plain http", StringComparison.Ordinal));
    }
}
