using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Portcullis.Configuration;

namespace Portcullis.Files;

/// <summary>Why a certificate, key, bundle or secret file could not be loaded, and which config key (cert, key, pfx, passwordEnv, ca …) it is about.</summary>
internal sealed record CertificateFileError(string Key, string Message, string Hint);

/// <summary>What a certificate with a key is for: the extended key usage it must allow, and how messages name it.</summary>
internal sealed class CertificatePurpose
{
    /// <summary>A listener's server certificate.</summary>
    public static readonly CertificatePurpose Server = new("server", "1.3.6.1.5.5.7.3.1", "serverAuth", "certificate", "yyyy-MM-dd'T'HH:mm:ss'Z'");

    /// <summary>The gateway's client certificate toward an upstream.</summary>
    public static readonly CertificatePurpose Client = new("client", "1.3.6.1.5.5.7.3.2", "clientAuth", "client certificate", "yyyy-MM-dd HH:mm:ss 'UTC'");

    private readonly string _dateFormat;

    private CertificatePurpose(string name, string usageOid, string usageName, string label, string dateFormat)
    {
        Name = name;
        UsageOid = usageOid;
        UsageName = usageName;
        Label = label;
        _dateFormat = dateFormat;
    }

    /// <summary>"server" or "client", as in "server authentication".</summary>
    public string Name { get; }

    public string UsageOid { get; }

    public string UsageName { get; }

    /// <summary>How messages call the certificate ("certificate", "client certificate").</summary>
    public string Label { get; }

    /// <summary>Dates in this purpose's messages and logs (each keeps the format it has always logged).</summary>
    public string Format(DateTimeOffset at) => at.UtcDateTime.ToString(_dateFormat, CultureInfo.InvariantCulture);
}

/// <summary>A certificate with its private key and the intermediates that came with it, checked usable for its purpose.</summary>
internal sealed record CertificateWithKey(X509Certificate2 Certificate, X509Certificate2Collection Intermediates, string ContentHash);

/// <summary>A PEM bundle of certificates (trusted CAs) and the hash of its bytes.</summary>
internal sealed record CertificateBundle(X509Certificate2Collection Certificates, string ContentHash);

/// <summary>
/// Reads certificate, key and CA bundle files for listener TLS and upstream TLS with the framework's loaders
/// (ImportFromPem, X509Certificate2.CreateFromPem, X509CertificateLoader): one size limit, one error type,
/// the same checks and texts for both sides. Never a hand-written parser.
/// </summary>
internal static class CertificateFiles
{
    /// <summary>Files above this size are refused (a PEM chain is a few KiB).</summary>
    public const int MaxFileSize = 1 << 20;

    private const string CertificateBlocks = "the file must hold -----BEGIN CERTIFICATE----- blocks";

    /// <summary>Reads a whole file, refusing one over <see cref="MaxFileSize"/>; <paramref name="what"/> names what it should be.</summary>
    public static byte[]? Read(string file, string key, out CertificateFileError? error, string what = "a certificate or key", string hint = "point at the PEM or PFX file")
    {
        error = null;
        try
        {
            // Shared with writers and deleters: a rotation may replace the file while it is read.
            using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            if (stream.Length > MaxFileSize)
            {
                error = new CertificateFileError(key, $"'{file}' is larger than {MaxFileSize / 1024} KiB; that is not {what}", hint);
                return null;
            }

            var bytes = new byte[stream.Length];
            stream.ReadExactly(bytes);
            return bytes;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            error = new CertificateFileError(key, $"cannot read '{file}': {FileErrors.Describe(ex)}", "paths are relative to the config file");
            return null;
        }
    }

    /// <summary>Loads a certificate and its key from PEM files or one PKCS#12 file, and checks it is usable for <paramref name="purpose"/> now.</summary>
    public static CertificateWithKey? Load(string? certFile, string? keyFile, string? pfxFile, string? passwordEnv, Func<string, string?> environment, CertificatePurpose purpose, DateTimeOffset now, out CertificateFileError? error)
    {
        try
        {
            var loaded = pfxFile is not null ? LoadPfx(pfxFile, passwordEnv, environment, purpose, out error) : LoadPem(certFile!, keyFile, purpose, out error);
            if (loaded is null) return null;
            error = CheckUsable(loaded.Certificate, purpose, now, pfxFile is not null ? "pfx" : "cert");
            if (error is null) return loaded;
            loaded.Certificate.Dispose();
            return null;
        }
        catch (Exception ex) when (ex is CryptographicException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            error = new CertificateFileError(pfxFile is not null ? "pfx" : "cert", $"cannot load the {purpose.Label}: {ex.Message}", "check the file");
            return null;
        }
    }

    /// <summary>Loads a PEM bundle of CA certificates (at least one).</summary>
    public static CertificateBundle? LoadBundle(string file, string key, string blocksHint, out CertificateFileError? error)
    {
        var bytes = Read(file, key, out error, "a CA bundle", "point at a PEM file of CA certificates");
        if (bytes is null) return null;
        var certificates = new X509Certificate2Collection();
        try
        {
            certificates.ImportFromPem(Encoding.UTF8.GetString(bytes));
        }
        catch (CryptographicException ex)
        {
            error = new CertificateFileError(key, $"'{file}' is not a PEM CA bundle: {ex.Message}", blocksHint);
            return null;
        }

        if (certificates.Count == 0)
        {
            error = new CertificateFileError(key, $"'{file}' holds no PEM certificate", blocksHint);
            return null;
        }

        return new CertificateBundle(certificates, Convert.ToHexStringLower(SHA256.HashData(bytes)));
    }

    private static CertificateWithKey? LoadPem(string certFile, string? keyFile, CertificatePurpose purpose, out CertificateFileError? error)
    {
        var certBytes = Read(certFile, "cert", out error);
        if (certBytes is null) return null;
        var keyBytes = certBytes;
        if (keyFile is not null && (keyBytes = Read(keyFile, "key", out error)) is null) return null;

        var certText = Encoding.UTF8.GetString(certBytes);
        var keyText = Encoding.UTF8.GetString(keyBytes);
        var keyKey = keyFile is null ? "cert" : "key";
        var chainHint = $"{CertificateBlocks}, the {purpose.Name} certificate first";
        var chain = new X509Certificate2Collection();
        try
        {
            chain.ImportFromPem(certText);
        }
        catch (CryptographicException ex)
        {
            error = new CertificateFileError("cert", $"'{certFile}' is not a PEM certificate: {ex.Message}", chainHint);
            return null;
        }

        if (chain.Count == 0)
        {
            error = new CertificateFileError("cert", $"'{certFile}' holds no PEM certificate", chainHint);
            return null;
        }

        if (!keyText.Contains("PRIVATE KEY-----", StringComparison.Ordinal))
        {
            error = keyFile is null
                ? new CertificateFileError("cert", $"'{certFile}' holds no private key and no `key` file is given", "add key: PATH (the PEM private key)")
                : new CertificateFileError("key", $"'{keyFile}' holds no PEM private key", "the file must hold a -----BEGIN PRIVATE KEY----- block");
            return null;
        }

        if (keyText.Contains("ENCRYPTED PRIVATE KEY-----", StringComparison.Ordinal))
        {
            error = new CertificateFileError(keyKey, "the private key is encrypted; encrypted PEM keys are not supported", "decrypt it (openssl pkey -in key.pem -out key.pem) or use a PFX file with passwordEnv");
            return null;
        }

        X509Certificate2 certificate;
        try
        {
            certificate = X509Certificate2.CreateFromPem(certText, keyText);
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            error = new CertificateFileError(keyKey, $"the private key does not match the certificate or is malformed ({ex.Message})", "use the key the certificate was issued for");
            return null;
        }

        if (OperatingSystem.IsWindows())
        {
            // SChannel cannot use an ephemeral key (as CreateFromPem gives); a PKCS#12 round trip persists it for the process.
            using var ephemeral = certificate;
            certificate = X509CertificateLoader.LoadPkcs12(ephemeral.Export(X509ContentType.Pkcs12), null);
        }

        var intermediates = new X509Certificate2Collection();
        for (var i = 1; i < chain.Count; i++) intermediates.Add(chain[i]);
        return new CertificateWithKey(certificate, intermediates, Hash(certBytes, keyFile is null ? null : keyBytes));
    }

    private static CertificateWithKey? LoadPfx(string pfxFile, string? passwordEnv, Func<string, string?> environment, CertificatePurpose purpose, out CertificateFileError? error)
    {
        string? password = null;
        if (passwordEnv is not null && (password = environment(passwordEnv)) is null)
        {
            error = new CertificateFileError("passwordEnv", $"environment variable '{passwordEnv}' is not set", "set it to the PFX password, or remove passwordEnv for a PFX without one");
            return null;
        }

        var bytes = Read(pfxFile, "pfx", out error);
        if (bytes is null) return null;
        X509Certificate2Collection all;
        try
        {
            all = X509CertificateLoader.LoadPkcs12Collection(bytes, password, X509KeyStorageFlags.DefaultKeySet);
        }
        catch (CryptographicException ex)
        {
            error = new CertificateFileError("pfx", $"'{pfxFile}' cannot be read as PKCS#12 ({ex.Message})", "check the file and the password in passwordEnv");
            return null;
        }

        var leaf = all.FirstOrDefault(c => c.HasPrivateKey);
        if (leaf is null)
        {
            error = new CertificateFileError("pfx", $"'{pfxFile}' holds no certificate with a private key", "export the certificate together with its key");
            return null;
        }

        var intermediates = new X509Certificate2Collection();
        foreach (var c in all)
        {
            if (!ReferenceEquals(c, leaf)) intermediates.Add(c);
        }

        return new CertificateWithKey(leaf, intermediates, Hash(bytes, null));
    }

    /// <summary>Valid now, and its extended key usage (when it has one) allows the purpose.</summary>
    private static CertificateFileError? CheckUsable(X509Certificate2 certificate, CertificatePurpose purpose, DateTimeOffset now, string key)
    {
        var notBefore = certificate.NotBefore.ToUniversalTime();
        var notAfter = certificate.NotAfter.ToUniversalTime();
        if (now < notBefore)
        {
            return new CertificateFileError(key, $"{purpose.Label} '{certificate.Subject}' is not valid yet (not before {purpose.Format(notBefore)})", "check the issuing system's clock, or wait");
        }

        if (now >= notAfter)
        {
            return new CertificateFileError(key, $"{purpose.Label} '{certificate.Subject}' expired on {purpose.Format(notAfter)}", "renew it");
        }

        foreach (var extension in certificate.Extensions)
        {
            if (extension.Oid?.Value != "2.5.29.37") continue;
            var usage = extension as X509EnhancedKeyUsageExtension ?? new X509EnhancedKeyUsageExtension(extension, extension.Critical);
            if (!usage.EnhancedKeyUsages.Cast<Oid>().Any(o => o.Value == purpose.UsageOid))
            {
                return new CertificateFileError(key, $"certificate '{certificate.Subject}' is not for {purpose.Name} authentication (its extended key usage lacks {purpose.UsageName})", $"issue a {purpose.Name} certificate");
            }
        }

        return null;
    }

    private static string Hash(byte[] first, byte[]? second)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(first);
        if (second is not null) hash.AppendData(second);
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }
}
