using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Portcullis.Configuration;
using Portcullis.Tls;

namespace Portcullis.Tests.Tls;

/// <summary>Listener TLS settings and certificate files are checked at build time, with the position of the offending key.</summary>
public sealed class TlsConfigTests() : ConfigBuildTestBase("portcullis-tls-")
{
    private static readonly DateTimeOffset Now = DateTimeOffset.UtcNow;

    private void WriteCertificate(string name, IEnumerable<string> hosts, DateTimeOffset? notBefore = null, DateTimeOffset? notAfter = null)
    {
        using var certificate = DevCertificates.CreateServer(null, hosts, notBefore ?? Now.AddDays(-1), notAfter ?? Now.AddDays(90));
        WriteFile(name + ".pem", DevCertificates.CertificatePem(certificate));
        WriteFile(name + ".key", DevCertificates.KeyPem(certificate));
    }

    private static string Config(string certificates, string extra = "") => $$"""
        listeners:
          - name: public
            address: 127.0.0.1:8443
            tls:
              certificates:
        {{certificates}}
        {{extra}}
        routes:
          - { name: all, match: { pathPrefix: / }, respond: { body: ok } }
        """;

    /// <summary>The diagnostic points at the value <paramref name="text"/> on that line of the config file.</summary>
    private void AssertAtText(ConfigDiagnostic diagnostic, int line, string text)
    {
        var column = File.ReadAllLines(ConfigPath)[line - 1].IndexOf(text, StringComparison.Ordinal) + 1;
        Assert.True(column > 0, $"'{text}' is not on line {line}");
        AssertAt(diagnostic, line, column);
    }

    [Fact]
    public void Valid_certificates_compile_with_hosts_from_the_SANs_and_a_named_default()
    {
        WriteCertificate("a", ["a.test", "www.a.test"]);
        WriteCertificate("w", ["*.wild.test"]);
        var result = Build(Config("""
                    - { cert: a.pem, key: a.key }
                    - { name: wild, cert: w.pem, key: w.key, hosts: ["*.wild.test", Other.Test.] }
            """, "      default: wild\n      minVersion: tls13"));

        Assert.True(result.Succeeded, Dump(result));
        var tls = result.Snapshot!.Listeners[0].Tls!;
        Assert.Equal(["cert1", "wild"], tls.Certificates.Select(c => c.Name));
        Assert.Equal(1, tls.DefaultIndex);
        Assert.Equal(TlsVersion.Tls13, tls.MinVersion);
        Assert.Equal(System.Security.Authentication.SslProtocols.Tls13, tls.Protocols);
        Assert.Equal(["*.wild.test", "other.test"], tls.Certificates[1].Hosts);
        Assert.Equal(Path.Combine(_directory.FullName, "a.pem"), tls.Certificates[0].CertFile);
    }

    [Fact]
    public void Missing_certificate_file_is_reported_at_the_cert_key()
    {
        var result = Build(Config("""
                    - { cert: missing.pem, key: missing.key }
            """));
        var error = SingleError(result);
        Assert.Contains("missing.pem", error.Message, StringComparison.Ordinal);
        AssertAtText(error, 6, "missing.pem");
    }

    [Fact]
    public void Garbage_mismatched_key_expired_and_not_yet_valid_are_errors()
    {
        WriteCertificate("good", ["a.test"]);
        WriteCertificate("other", ["b.test"]);
        WriteFile("garbage.pem", "this is not a certificate\n");
        WriteCertificate("expired", ["old.test"], Now.AddDays(-30), Now.AddDays(-1));
        WriteCertificate("future", ["new.test"], Now.AddDays(2), Now.AddDays(30));
        var result = Build(Config("""
                    - { cert: garbage.pem, key: good.key }
                    - { cert: good.pem, key: other.key }
                    - { cert: expired.pem, key: expired.key }
                    - { cert: future.pem, key: future.key }
            """));

        Assert.False(result.Succeeded);
        AssertAtText(ErrorContaining(result, "holds no PEM certificate"), 6, "garbage.pem");
        AssertAtText(ErrorContaining(result, "does not match"), 7, "other.key");
        AssertAtText(ErrorContaining(result, "expired on"), 8, "expired.pem");
        AssertAtText(ErrorContaining(result, "not valid yet"), 9, "future.pem");
    }

    [Fact]
    public void Structural_mistakes_are_errors()
    {
        WriteCertificate("good", ["a.test"]);
        var result = Build(Config("""
                    - { cert: good.pem, key: good.key, pfx: good.pfx }
                    - { key: good.key }
                    - { cert: good.pem, key: good.key, hosts: [10.0.0.1, "*", "a..b"] }
                    - { name: cert1, cert: good.pem, key: good.key, passwordEnv: X }
            """, "      default: nope"));

        Assert.False(result.Succeeded);
        ErrorContaining(result, "either `cert` (PEM) or `pfx`");
        ErrorContaining(result, "neither `cert` nor `pfx`");
        ErrorContaining(result, "SNI carries DNS names only");
        ErrorContaining(result, "'*' is not an SNI host name");
        ErrorContaining(result, "'a..b' is not an SNI host name");
        ErrorContaining(result, "duplicate certificate name 'cert1'");
        ErrorContaining(result, "`passwordEnv` is for a PFX");
        ErrorContaining(result, "no certificate is named 'nope'");
    }

    [Fact]
    public void No_certificates_is_an_error_and_an_expiring_one_a_warning()
    {
        Assert.Contains("no certificates", SingleError(Build(Config("        []"))).Message, StringComparison.Ordinal);

        WriteCertificate("soon", ["a.test"], Now.AddDays(-80), Now.AddDays(5));
        var result = Build(Config("""
                    - { cert: soon.pem, key: soon.key }
            """));
        Assert.True(result.Succeeded, Dump(result));
        Assert.Contains(result.Diagnostics, d => d.Severity == DiagnosticSeverity.Warning && d.Message.Contains("expires in 4 day(s)", StringComparison.Ordinal));
    }

    [Fact]
    public void Pfx_with_password_from_the_environment_loads()
    {
        using var certificate = DevCertificates.CreateServer(null, ["pfx.test"], Now.AddDays(-1), Now.AddDays(30));
        File.WriteAllBytes(Path.Combine(_directory.FullName, "server.pfx"), certificate.Export(X509ContentType.Pkcs12, "s3cret"));
        _environment["PFX_PASSWORD"] = "s3cret";
        var ok = Build(Config("""
                    - { pfx: server.pfx, passwordEnv: PFX_PASSWORD }
            """));
        Assert.True(ok.Succeeded, Dump(ok));

        _environment["PFX_PASSWORD"] = "wrong";
        ErrorContaining(Build(Config("""
                    - { pfx: server.pfx, passwordEnv: PFX_PASSWORD }
            """)), "cannot be read as PKCS#12");
    }

    [Fact]
    public void A_changed_tls_setting_makes_the_listener_binding_differ()
    {
        WriteCertificate("a", ["a.test"]);
        var first = Build(Config("        - { cert: a.pem, key: a.key }")).Snapshot!.Listeners[0];
        var same = Build(Config("        - { cert: a.pem, key: a.key }")).Snapshot!.Listeners[0];
        var other = Build(Config("        - { cert: a.pem, key: a.key, hosts: [x.test] }")).Snapshot!.Listeners[0];
        Assert.Equal(first, same);
        Assert.NotEqual(first, other);
    }

    [Fact]
    public void Store_keeps_the_working_certificate_when_a_replacement_fails_and_swaps_a_good_one()
    {
        WriteCertificate("a", ["a.test"]);
        var snapshot = Build(Config("        - { cert: a.pem, key: a.key }")).Snapshot!;
        var time = new FakeTimeProvider(Now);
        using var store = new CertificateStore(snapshot.Listeners, _ => null, time, NullLogger<CertificateStore>.Instance, watch: false);
        var listener = store.For("public")!;
        var original = listener.Table.Select("a.test").Fingerprint;

        WriteFile("a.pem", "garbage\n");
        store.Refresh();
        Assert.Equal(original, listener.Table.Select("a.test").Fingerprint);
        Assert.Contains("holds no PEM certificate", listener.Slots[0].State.LastError, StringComparison.Ordinal);

        WriteCertificate("a", ["a.test"]);
        store.Refresh();
        Assert.NotEqual(original, listener.Table.Select("a.test").Fingerprint);
        Assert.Null(listener.Slots[0].State.LastError);
    }
}
