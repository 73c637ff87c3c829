using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Portcullis.Tls;

/// <summary>
/// Local development certificates made with <see cref="CertificateRequest"/> (ECDSA P-256): a CA, a server
/// certificate for some host names and IP addresses, and a client certificate, all issued by the CA.
/// </summary>
internal static class DevCertificates
{
    public const string ClientName = "dev-client";
    public const string ClientUri = "spiffe://portcullis.dev/dev-client";

    private const string ServerAuth = "1.3.6.1.5.5.7.3.1";
    private const string ClientAuth = "1.3.6.1.5.5.7.3.2";

    /// <summary>The files `portcullis certs dev` writes, in order.</summary>
    public static readonly string[] FileNames = ["ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key"];

    public static X509Certificate2 CreateCa(string name, DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName("CN=" + name), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        return request.CreateSelfSigned(notBefore, notAfter);
    }

    /// <summary>A server certificate for DNS names and IP addresses; self-signed when <paramref name="issuer"/> is null.</summary>
    public static X509Certificate2 CreateServer(X509Certificate2? issuer, IEnumerable<string> hosts, DateTimeOffset notBefore, DateTimeOffset notAfter, string? commonName = null)
    {
        var list = hosts.ToList();
        var san = new SubjectAlternativeNameBuilder();
        foreach (var host in list)
        {
            if (IPAddress.TryParse(host, out var ip)) san.AddIpAddress(ip);
            else san.AddDnsName(host);
        }

        return Issue(issuer, "CN=" + (commonName ?? list.FirstOrDefault() ?? "localhost"), san, ServerAuth, notBefore, notAfter);
    }

    public static X509Certificate2 CreateClient(X509Certificate2 issuer, string name, string? uri, DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        var san = new SubjectAlternativeNameBuilder();
        if (uri is not null) san.AddUri(new Uri(uri));
        return Issue(issuer, "CN=" + name, san, ClientAuth, notBefore, notAfter);
    }

    private static X509Certificate2 Issue(X509Certificate2? issuer, string subject, SubjectAlternativeNameBuilder san, string usage, DateTimeOffset notBefore, DateTimeOffset notAfter)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(new X500DistinguishedName(subject), key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(usage)], false));
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        if (issuer is null) return request.CreateSelfSigned(notBefore, notAfter);

        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(issuer, true, false));
        // An issued certificate may not outlive its issuer.
        var end = notAfter < issuer.NotAfter ? notAfter : new DateTimeOffset(issuer.NotAfter.ToUniversalTime());
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7F;
        using var issued = request.Create(issuer, notBefore, end, serial);
        return issued.CopyWithPrivateKey(key);
    }

    public static string CertificatePem(X509Certificate2 certificate) => certificate.ExportCertificatePem() + "\n";

    public static string KeyPem(X509Certificate2 certificate) =>
        (certificate.GetECDsaPrivateKey() ?? throw new InvalidOperationException("the certificate has no ECDSA private key")).ExportPkcs8PrivateKeyPem() + "\n";

    /// <summary>Writes ca, server and client certificates and keys (keys readable by the owner only on Unix).</summary>
    public static void Write(string directory, IReadOnlyList<string> hosts, DateTimeOffset now)
    {
        Directory.CreateDirectory(directory);
        var notBefore = now.AddMinutes(-5);
        using var ca = CreateCa("Portcullis development CA", notBefore, now.AddYears(5));
        using var server = CreateServer(ca, hosts, notBefore, now.AddYears(1));
        using var client = CreateClient(ca, ClientName, ClientUri, notBefore, now.AddYears(1));
        WriteFile(directory, "ca.pem", CertificatePem(ca), secret: false);
        WriteFile(directory, "ca.key", KeyPem(ca), secret: true);
        WriteFile(directory, "server.pem", CertificatePem(server), secret: false);
        WriteFile(directory, "server.key", KeyPem(server), secret: true);
        WriteFile(directory, "client.pem", CertificatePem(client), secret: false);
        WriteFile(directory, "client.key", KeyPem(client), secret: true);
    }

    private static void WriteFile(string directory, string name, string text, bool secret)
    {
        var target = Path.Combine(directory, name);
        var temporary = target + ".tmp-" + Guid.NewGuid().ToString("N");
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (secret && !OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using (var writer = new StreamWriter(temporary, System.Text.Encoding.ASCII, options)) writer.Write(text);
        File.Move(temporary, target, overwrite: true);
    }
}
