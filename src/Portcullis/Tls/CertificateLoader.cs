using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Portcullis.Files;

namespace Portcullis.Tls;

/// <summary>A server certificate ready for handshakes: the certificate, its chain context and the SNI names it serves.</summary>
internal sealed class LoadedCertificate
{
    public required CertificateSource Source { get; init; }

    public required X509Certificate2 Certificate { get; init; }

    /// <summary>Built once at load (chain included), so a handshake does no certificate work.</summary>
    public required SslStreamCertificateContext Context { get; init; }

    /// <summary>SNI names served, lower case; `*.example.com` for wildcards.</summary>
    public required string[] Hosts { get; init; }

    public required string[] DnsNames { get; init; }

    public required string[] IpAddresses { get; init; }

    public required string ContentHash { get; init; }

    public required DateTimeOffset LoadedAt { get; init; }

    public DateTimeOffset NotBefore => Certificate.NotBefore.ToUniversalTime();

    public DateTimeOffset NotAfter => Certificate.NotAfter.ToUniversalTime();

    public string Subject => Certificate.Subject;

    public string Fingerprint => Certificate.GetCertHashString(HashAlgorithmName.SHA256);
}

/// <summary>
/// Loads a listener's server certificate with <see cref="CertificateFiles"/> (the same loading and checks as
/// upstream client certificates: a matching private key, valid now, usable for server authentication) and
/// prepares it for handshakes.
/// </summary>
internal static class CertificateLoader
{
    public static bool TryLoad(CertificateSource source, Func<string, string?> environment, DateTimeOffset now, out LoadedCertificate? certificate, out CertificateFileError? error)
    {
        certificate = null;
        var loaded = CertificateFiles.Load(source.CertFile, source.KeyFile, source.PfxFile, source.PasswordEnv, environment, CertificatePurpose.Server, now, out error);
        if (loaded is null) return false;
        var (dns, ips) = SubjectAlternativeNames(loaded.Certificate);
        var hosts = source.Hosts.Count > 0 ? [.. source.Hosts] : dns.Select(Normalize).Distinct(StringComparer.Ordinal).ToArray();
        certificate = new LoadedCertificate
        {
            Source = source,
            Certificate = loaded.Certificate,
            Context = SslStreamCertificateContext.Create(loaded.Certificate, loaded.Intermediates, offline: true),
            Hosts = hosts,
            DnsNames = dns,
            IpAddresses = ips,
            ContentHash = loaded.ContentHash,
            LoadedAt = now,
        };
        return true;
    }

    internal static (string[] Dns, string[] Ips) SubjectAlternativeNames(X509Certificate2 certificate)
    {
        var dns = new List<string>();
        var ips = new List<string>();
        foreach (var extension in certificate.Extensions)
        {
            if (extension.Oid?.Value != "2.5.29.17") continue;
            var san = extension as X509SubjectAlternativeNameExtension ?? new X509SubjectAlternativeNameExtension(extension.RawData, extension.Critical);
            try
            {
                dns.AddRange(san.EnumerateDnsNames());
                ips.AddRange(san.EnumerateIPAddresses().Select(ip => ip.ToString()));
            }
            catch (CryptographicException)
            {
                // A malformed SAN extension: serve by configured hosts or as the default only.
            }
        }

        return ([.. dns], [.. ips]);
    }

    /// <summary>Lower case without a trailing dot: how SNI names are compared.</summary>
    internal static string Normalize(string host) => host.Trim().TrimEnd('.').ToLowerInvariant();

    internal static string Format(DateTimeOffset at) => CertificatePurpose.Server.Format(at);
}
