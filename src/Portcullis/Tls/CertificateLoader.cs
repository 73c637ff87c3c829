using System.Globalization;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

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

/// <summary>Why a certificate could not be loaded, and which config key (cert, key, pfx, passwordEnv) it is about.</summary>
internal sealed record CertificateError(string Key, string Message, string Hint);

/// <summary>
/// Loads a certificate with the framework's PEM and PKCS#12 loaders and checks it can serve: it has a
/// matching private key, is valid now, and may be used for server authentication.
/// </summary>
internal static class CertificateLoader
{
    /// <summary>Certificate files above this size are refused (a PEM chain is a few KiB).</summary>
    public const int MaxFileSize = 1 << 20;

    private const string ServerAuthOid = "1.3.6.1.5.5.7.3.1";

    public static bool TryLoad(CertificateSource source, Func<string, string?> environment, DateTimeOffset now, out LoadedCertificate? certificate, out CertificateError? error)
    {
        try
        {
            certificate = source.PfxFile is not null ? LoadPfx(source, environment, now, out error) : LoadPem(source, now, out error);
        }
        catch (Exception ex) when (ex is CryptographicException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            certificate = null;
            error = new CertificateError(source.PfxFile is not null ? "pfx" : "cert", $"cannot load the certificate: {ex.Message}", "check the file");
        }

        if (error is not null) certificate = null;
        return certificate is not null;
    }

    private static LoadedCertificate? LoadPem(CertificateSource source, DateTimeOffset now, out CertificateError? error)
    {
        var certBytes = Read(source.CertFile!, "cert", out error);
        if (certBytes is null) return null;
        var keyBytes = certBytes;
        if (source.KeyFile is not null)
        {
            keyBytes = Read(source.KeyFile, "key", out error);
            if (keyBytes is null) return null;
        }

        var certText = Encoding.UTF8.GetString(certBytes);
        var keyText = Encoding.UTF8.GetString(keyBytes);
        var keyKey = source.KeyFile is null ? "cert" : "key";
        var chain = new X509Certificate2Collection();
        try
        {
            chain.ImportFromPem(certText);
        }
        catch (CryptographicException ex)
        {
            error = new CertificateError("cert", $"'{source.CertFile}' is not a PEM certificate: {ex.Message}", "the file must hold -----BEGIN CERTIFICATE----- blocks, the server certificate first");
            return null;
        }

        if (chain.Count == 0)
        {
            error = new CertificateError("cert", $"'{source.CertFile}' holds no PEM certificate", "the file must hold -----BEGIN CERTIFICATE----- blocks, the server certificate first");
            return null;
        }

        if (!keyText.Contains("PRIVATE KEY-----", StringComparison.Ordinal))
        {
            error = source.KeyFile is null
                ? new CertificateError("cert", $"'{source.CertFile}' holds no private key and no `key` file is given", "add key: PATH (the PEM private key)")
                : new CertificateError("key", $"'{source.KeyFile}' holds no PEM private key", "the file must hold a -----BEGIN PRIVATE KEY----- block");
            return null;
        }

        if (keyText.Contains("ENCRYPTED PRIVATE KEY-----", StringComparison.Ordinal))
        {
            error = new CertificateError(keyKey, "the private key is encrypted; encrypted PEM keys are not supported", "decrypt it (openssl pkey -in key.pem -out key.pem) or use a PFX file with passwordEnv");
            return null;
        }

        X509Certificate2 certificate;
        try
        {
            certificate = X509Certificate2.CreateFromPem(certText, keyText);
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            error = new CertificateError(keyKey, $"the private key does not match the certificate or is malformed ({ex.Message})", "use the key the certificate was issued for");
            return null;
        }

        var intermediates = new X509Certificate2Collection();
        for (var i = 1; i < chain.Count; i++) intermediates.Add(chain[i]);
        return Finish(source, certificate, intermediates, Hash(certBytes, source.KeyFile is null ? null : keyBytes), now, "cert", out error);
    }

    private static LoadedCertificate? LoadPfx(CertificateSource source, Func<string, string?> environment, DateTimeOffset now, out CertificateError? error)
    {
        string? password = null;
        if (source.PasswordEnv is not null && (password = environment(source.PasswordEnv)) is null)
        {
            error = new CertificateError("passwordEnv", $"environment variable '{source.PasswordEnv}' is not set", "set it to the PFX password, or remove passwordEnv for a PFX without one");
            return null;
        }

        var bytes = Read(source.PfxFile!, "pfx", out error);
        if (bytes is null) return null;
        X509Certificate2Collection all;
        try
        {
            all = X509CertificateLoader.LoadPkcs12Collection(bytes, password, X509KeyStorageFlags.DefaultKeySet);
        }
        catch (CryptographicException ex)
        {
            error = new CertificateError("pfx", $"'{source.PfxFile}' cannot be read as PKCS#12 ({ex.Message})", "check the file and the password in passwordEnv");
            return null;
        }

        var leaf = all.FirstOrDefault(c => c.HasPrivateKey);
        if (leaf is null)
        {
            error = new CertificateError("pfx", $"'{source.PfxFile}' holds no certificate with a private key", "export the certificate together with its key");
            return null;
        }

        var intermediates = new X509Certificate2Collection();
        foreach (var c in all)
        {
            if (!ReferenceEquals(c, leaf)) intermediates.Add(c);
        }

        return Finish(source, leaf, intermediates, Hash(bytes, null), now, "pfx", out error);
    }

    private static LoadedCertificate? Finish(CertificateSource source, X509Certificate2 certificate, X509Certificate2Collection intermediates, string hash, DateTimeOffset now, string key, out CertificateError? error)
    {
        error = null;
        var notBefore = certificate.NotBefore.ToUniversalTime();
        var notAfter = certificate.NotAfter.ToUniversalTime();
        if (now < notBefore)
        {
            error = new CertificateError(key, $"certificate '{certificate.Subject}' is not valid yet (not before {Format(notBefore)})", "check the issuing system's clock, or wait");
            return null;
        }

        if (now >= notAfter)
        {
            error = new CertificateError(key, $"certificate '{certificate.Subject}' expired on {Format(notAfter)}", "renew it");
            return null;
        }

        foreach (var extension in certificate.Extensions)
        {
            if (extension.Oid?.Value != "2.5.29.37") continue;
            var usage = extension as X509EnhancedKeyUsageExtension ?? new X509EnhancedKeyUsageExtension(extension, extension.Critical);
            if (!usage.EnhancedKeyUsages.Cast<System.Security.Cryptography.Oid>().Any(o => o.Value == ServerAuthOid))
            {
                error = new CertificateError(key, $"certificate '{certificate.Subject}' is not for server authentication (its extended key usage lacks serverAuth)", "issue a server certificate");
                return null;
            }
        }

        var (dns, ips) = SubjectAlternativeNames(certificate);
        var hosts = source.Hosts.Count > 0 ? [.. source.Hosts] : dns.Select(Normalize).Distinct(StringComparer.Ordinal).ToArray();
        if (OperatingSystem.IsWindows())
        {
            // SChannel cannot use an ephemeral key (as CreateFromPem gives); a PKCS#12 round trip persists it for the process.
            certificate = X509CertificateLoader.LoadPkcs12(certificate.Export(X509ContentType.Pkcs12), null);
        }

        return new LoadedCertificate
        {
            Source = source,
            Certificate = certificate,
            Context = SslStreamCertificateContext.Create(certificate, intermediates, offline: true),
            Hosts = hosts,
            DnsNames = dns,
            IpAddresses = ips,
            ContentHash = hash,
            LoadedAt = now,
        };
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

    private static byte[]? Read(string file, string key, out CertificateError? error)
    {
        error = null;
        try
        {
            using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            if (stream.Length > MaxFileSize)
            {
                error = new CertificateError(key, $"'{file}' is larger than {MaxFileSize / 1024} KiB; that is not a certificate or key", "point at the PEM or PFX file");
                return null;
            }

            var bytes = new byte[stream.Length];
            stream.ReadExactly(bytes);
            return bytes;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            error = new CertificateError(key, $"cannot read '{file}': {Configuration.ConfigLoader.Describe(ex)}", "paths are relative to the config file");
            return null;
        }
    }

    private static string Hash(byte[] first, byte[]? second)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(first);
        if (second is not null) hash.AppendData(second);
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    internal static string Format(DateTimeOffset at) => at.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
}
