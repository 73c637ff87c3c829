using Portcullis.Files;
using Portcullis.Tls;
using Portcullis.Upstream;

namespace Portcullis.Tests.Files;

/// <summary>
/// Listener TLS and upstream TLS load certificate files through one <see cref="CertificateFiles"/> (issue 15,
/// item 5): the same size limit, the same checks and the same error (key, message, hint) on both sides; only
/// the purpose (serverAuth or clientAuth) differs.
/// </summary>
public sealed class CertificateFilesTests : IDisposable
{
    private static readonly DateTimeOffset Now = DateTimeOffset.UtcNow;
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("portcullis-certfiles-");

    public void Dispose() => _directory.Delete(recursive: true);

    private string Write(string name, string text)
    {
        var path = Path.Combine(_directory.FullName, name);
        File.WriteAllText(path, text);
        return path;
    }

    private static CertificateFileError ListenerError(string cert, string? key)
    {
        Assert.False(CertificateLoader.TryLoad(new CertificateSource("c", "listeners[0].tls.certificates[0]", cert, key, null, null, []), _ => null, Now, out _, out var error));
        return error!;
    }

    private static CertificateFileError UpstreamError(string cert, string? key)
    {
        Assert.Null(UpstreamFiles.LoadClient(new ClientCertificateSource("clusters.api.tls.clientCertificate", cert, key, null, null), _ => null, Now, out var error));
        return error!;
    }

    [Fact]
    public void An_oversized_file_is_refused_alike_for_listener_and_upstream_certificates_and_ca_bundles()
    {
        var big = Write("big.pem", new string('A', CertificateFiles.MaxFileSize + 1));

        var listener = ListenerError(big, null);
        Assert.Equal(listener, UpstreamError(big, null));
        Assert.Equal("cert", listener.Key);
        Assert.Contains("is larger than 1024 KiB", listener.Message, StringComparison.Ordinal);

        Assert.False(ClientCaLoader.TryLoad(big, Now, out _, out var caError, out _));
        Assert.Null(UpstreamFiles.LoadTrust(big, Now, out var trustError));
        Assert.Equal(caError, trustError!.Message);
        Assert.Contains("that is not a CA bundle", caError, StringComparison.Ordinal);
    }

    [Fact]
    public void A_key_that_does_not_match_is_the_same_error_on_both_sides()
    {
        using var a = DevCertificates.CreateServer(null, ["a.test"], Now.AddDays(-1), Now.AddDays(30));
        using var b = DevCertificates.CreateServer(null, ["b.test"], Now.AddDays(-1), Now.AddDays(30));
        var cert = Write("a.pem", DevCertificates.CertificatePem(a));
        var wrongKey = Write("b.key", DevCertificates.KeyPem(b));

        var listener = ListenerError(cert, wrongKey);
        Assert.Equal(listener, UpstreamError(cert, wrongKey));
        Assert.Equal("key", listener.Key);
        Assert.Contains("does not match the certificate", listener.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_purpose_decides_the_extended_key_usage_a_certificate_must_allow()
    {
        using var ca = DevCertificates.CreateCa("Test CA", Now.AddDays(-1), Now.AddDays(30));
        using var server = DevCertificates.CreateServer(ca, ["a.test"], Now.AddDays(-1), Now.AddDays(30));
        using var client = DevCertificates.CreateClient(ca, "gateway", null, Now.AddDays(-1), Now.AddDays(30));
        var serverCert = Write("server.pem", DevCertificates.CertificatePem(server));
        var serverKey = Write("server.key", DevCertificates.KeyPem(server));
        var clientCert = Write("client.pem", DevCertificates.CertificatePem(client));
        var clientKey = Write("client.key", DevCertificates.KeyPem(client));

        Assert.True(CertificateLoader.TryLoad(new CertificateSource("l", "c", serverCert, serverKey, null, null, []), _ => null, Now, out var loaded, out _));
        loaded!.Certificate.Dispose();
        using var gateway = UpstreamFiles.LoadClient(new ClientCertificateSource("u", clientCert, clientKey, null, null), _ => null, Now, out _)?.Certificate;
        Assert.NotNull(gateway);

        Assert.Contains("not for client authentication (its extended key usage lacks clientAuth)", UpstreamError(serverCert, serverKey).Message, StringComparison.Ordinal);
        Assert.Contains("not for server authentication (its extended key usage lacks serverAuth)", ListenerError(clientCert, clientKey).Message, StringComparison.Ordinal);
    }
}
