using System.Globalization;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.IdentityModel.Tokens;
using Portcullis.Configuration;

namespace Portcullis.Upstream;

/// <summary>The gateway's client certificate toward a cluster, ready for handshakes.</summary>
internal sealed class LoadedClientCertificate
{
    public required X509Certificate2 Certificate { get; init; }

    /// <summary>Certificate and intermediates, built once at load, so a handshake does no certificate work.</summary>
    public required SslStreamCertificateContext Context { get; init; }

    public required string ContentHash { get; init; }

    public required DateTimeOffset LoadedAt { get; init; }

    public DateTimeOffset NotBefore => Certificate.NotBefore.ToUniversalTime();

    public DateTimeOffset NotAfter => Certificate.NotAfter.ToUniversalTime();

    public string Fingerprint => Certificate.GetCertHashString(HashAlgorithmName.SHA256);
}

/// <summary>A loaded CA bundle.</summary>
internal sealed record TrustBundle(X509Certificate2Collection Roots, string ContentHash, DateTimeOffset LoadedAt);

/// <summary>A load failure and the config key (ca, cert, key, pfx, passwordEnv, keyFile) it is about.</summary>
internal sealed record UpstreamFileError(string Key, string Message, string Hint);

/// <summary>
/// Reads upstream TLS and credential files with the framework's loaders (X509Certificate2.CreateFromPem,
/// X509CertificateLoader, ImportFromPem): never a hand-written parser.
/// </summary>
internal static class UpstreamFiles
{
    public const int MaxFileSize = 1 << 20;
    private const string ClientAuthOid = "1.3.6.1.5.5.7.3.2";

    public static byte[]? Read(string file, string key, out UpstreamFileError? error)
    {
        error = null;
        try
        {
            var info = new FileInfo(file);
            if (!info.Exists)
            {
                error = new UpstreamFileError(key, $"cannot read '{file}': file not found", "paths are relative to the config file");
                return null;
            }

            if (info.Length > MaxFileSize)
            {
                error = new UpstreamFileError(key, $"'{file}' is larger than 1 MiB", "point at the PEM/PFX file itself");
                return null;
            }

            return File.ReadAllBytes(file);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            error = new UpstreamFileError(key, $"cannot read '{file}': {ConfigLoader.Describe(ex)}", "paths are relative to the config file");
            return null;
        }
    }

    public static TrustBundle? LoadTrust(string file, DateTimeOffset now, out UpstreamFileError? error)
    {
        var bytes = Read(file, "ca", out error);
        if (bytes is null) return null;
        var roots = new X509Certificate2Collection();
        try
        {
            roots.ImportFromPem(System.Text.Encoding.UTF8.GetString(bytes));
        }
        catch (CryptographicException ex)
        {
            error = new UpstreamFileError("ca", $"'{file}' is not a PEM certificate bundle: {ex.Message}", "the file must hold -----BEGIN CERTIFICATE----- blocks");
            return null;
        }

        if (roots.Count == 0)
        {
            error = new UpstreamFileError("ca", $"'{file}' holds no PEM certificate", "the file must hold -----BEGIN CERTIFICATE----- blocks");
            return null;
        }

        return new TrustBundle(roots, Convert.ToHexStringLower(SHA256.HashData(bytes)), now);
    }

    public static LoadedClientCertificate? LoadClient(ClientCertificateSource source, Func<string, string?> environment, DateTimeOffset now, out UpstreamFileError? error)
    {
        try
        {
            return source.PfxFile is not null ? LoadPfx(source, environment, now, out error) : LoadPem(source, now, out error);
        }
        catch (Exception ex) when (ex is CryptographicException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            error = new UpstreamFileError(source.PfxFile is not null ? "pfx" : "cert", $"cannot load the client certificate: {ex.Message}", "check the file");
            return null;
        }
    }

    private static LoadedClientCertificate? LoadPem(ClientCertificateSource source, DateTimeOffset now, out UpstreamFileError? error)
    {
        var certBytes = Read(source.CertFile!, "cert", out error);
        if (certBytes is null) return null;
        var keyBytes = certBytes;
        if (source.KeyFile is not null && (keyBytes = Read(source.KeyFile, "key", out error)) is null) return null;
        var keyKey = source.KeyFile is null ? "cert" : "key";
        var certText = System.Text.Encoding.UTF8.GetString(certBytes);
        var keyText = System.Text.Encoding.UTF8.GetString(keyBytes);
        var chain = new X509Certificate2Collection();
        try
        {
            chain.ImportFromPem(certText);
        }
        catch (CryptographicException ex)
        {
            error = new UpstreamFileError("cert", $"'{source.CertFile}' is not a PEM certificate: {ex.Message}", "the file must hold -----BEGIN CERTIFICATE----- blocks, the client certificate first");
            return null;
        }

        if (chain.Count == 0)
        {
            error = new UpstreamFileError("cert", $"'{source.CertFile}' holds no PEM certificate", "the file must hold -----BEGIN CERTIFICATE----- blocks, the client certificate first");
            return null;
        }

        X509Certificate2 certificate;
        try
        {
            certificate = X509Certificate2.CreateFromPem(certText, keyText);
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            error = new UpstreamFileError(keyKey, $"no unencrypted private key matching the certificate ({ex.Message})", "use the key the certificate was issued for, as unencrypted PEM");
            return null;
        }

        if (OperatingSystem.IsWindows())
        {
            // SChannel cannot use an ephemeral PEM key for a client certificate; a PKCS#12 round trip gives it one.
            using var ephemeral = certificate;
            certificate = X509CertificateLoader.LoadPkcs12(ephemeral.Export(X509ContentType.Pkcs12), null);
        }

        var intermediates = new X509Certificate2Collection();
        for (var i = 1; i < chain.Count; i++) intermediates.Add(chain[i]);
        var hash = Convert.ToHexStringLower(SHA256.HashData([.. certBytes, .. source.KeyFile is null ? [] : keyBytes]));
        return Finish(certificate, intermediates, hash, now, "cert", out error);
    }

    private static LoadedClientCertificate? LoadPfx(ClientCertificateSource source, Func<string, string?> environment, DateTimeOffset now, out UpstreamFileError? error)
    {
        string? password = null;
        if (source.PasswordEnv is not null && (password = environment(source.PasswordEnv)) is null)
        {
            error = new UpstreamFileError("passwordEnv", $"environment variable '{source.PasswordEnv}' is not set", "set it to the PFX password, or remove passwordEnv");
            return null;
        }

        var bytes = Read(source.PfxFile!, "pfx", out error);
        if (bytes is null) return null;
        X509Certificate2Collection all;
        try
        {
            all = X509CertificateLoader.LoadPkcs12Collection(bytes, password);
        }
        catch (CryptographicException ex)
        {
            error = new UpstreamFileError("pfx", $"'{source.PfxFile}' cannot be read as PKCS#12 ({ex.Message})", "check the file and the password in passwordEnv");
            return null;
        }

        var leaf = all.FirstOrDefault(c => c.HasPrivateKey);
        if (leaf is null)
        {
            error = new UpstreamFileError("pfx", $"'{source.PfxFile}' holds no certificate with a private key", "export the certificate together with its key");
            return null;
        }

        var intermediates = new X509Certificate2Collection();
        foreach (var c in all)
        {
            if (!ReferenceEquals(c, leaf)) intermediates.Add(c);
        }

        return Finish(leaf, intermediates, Convert.ToHexStringLower(SHA256.HashData(bytes)), now, "pfx", out error);
    }

    private static LoadedClientCertificate? Finish(X509Certificate2 certificate, X509Certificate2Collection intermediates, string hash, DateTimeOffset now, string key, out UpstreamFileError? error)
    {
        error = null;
        if (now < certificate.NotBefore.ToUniversalTime())
        {
            error = new UpstreamFileError(key, $"client certificate '{certificate.Subject}' is not valid yet (not before {Format(certificate.NotBefore)})", "check the issuing system's clock, or wait");
        }
        else if (now >= certificate.NotAfter.ToUniversalTime())
        {
            error = new UpstreamFileError(key, $"client certificate '{certificate.Subject}' expired on {Format(certificate.NotAfter)}", "renew it");
        }
        else if (certificate.Extensions.OfType<X509EnhancedKeyUsageExtension>().FirstOrDefault() is { } usage
            && !usage.EnhancedKeyUsages.Cast<Oid>().Any(o => o.Value == ClientAuthOid))
        {
            error = new UpstreamFileError(key, $"certificate '{certificate.Subject}' is not for client authentication (its extended key usage lacks clientAuth)", "issue a client certificate");
        }

        if (error is not null)
        {
            certificate.Dispose();
            return null;
        }

        return new LoadedClientCertificate
        {
            Certificate = certificate,
            Context = SslStreamCertificateContext.Create(certificate, intermediates, offline: true),
            ContentHash = hash,
            LoadedAt = now,
        };
    }

    /// <summary>The base64 SHA-256 of a certificate's SubjectPublicKeyInfo (what `pin` lists).</summary>
    public static string SpkiHash(X509Certificate2 certificate) => Convert.ToBase64String(SHA256.HashData(certificate.PublicKey.ExportSubjectPublicKeyInfo()));

    /// <summary>Reads a client secret from its file (trailing newline dropped) or environment variable.</summary>
    public static string? ReadSecret(string? file, string? variable, Func<string, string?> environment, out string? error)
    {
        error = null;
        if (variable is not null)
        {
            var value = environment(variable);
            if (string.IsNullOrEmpty(value)) error = $"environment variable '{variable}' is not set";
            return string.IsNullOrEmpty(value) ? null : value;
        }

        var bytes = Read(file!, "clientSecretFile", out var fileError);
        if (bytes is null)
        {
            error = fileError!.Message;
            return null;
        }

        var secret = System.Text.Encoding.UTF8.GetString(bytes).TrimEnd('\r', '\n');
        if (secret.Length == 0) error = $"client secret file '{file}' is empty";
        return secret.Length == 0 ? null : secret;
    }

    /// <summary>Loads the client-assertion key with the framework's PEM import; the caller disposes the key.</summary>
    public static SigningCredentials? LoadSigningKey(string file, string? kid, ClientAssertionAlgorithm algorithm, out string? error)
    {
        var bytes = Read(file, "keyFile", out var fileError);
        if (bytes is null)
        {
            error = fileError!.Message;
            return null;
        }

        var text = System.Text.Encoding.UTF8.GetString(bytes);
        error = null;
        try
        {
            if (algorithm == ClientAssertionAlgorithm.Rs256)
            {
                var rsa = RSA.Create();
                rsa.ImportFromPem(text);
                if (rsa.KeySize < 2048)
                {
                    error = $"the RSA key in '{file}' has {rsa.KeySize} bits; at least 2048 are required";
                    rsa.Dispose();
                    return null;
                }

                return new SigningCredentials(new RsaSecurityKey(rsa) { KeyId = kid }, SecurityAlgorithms.RsaSha256);
            }

            var ecdsa = ECDsa.Create();
            ecdsa.ImportFromPem(text);
            if (ecdsa.KeySize != 256)
            {
                ecdsa.Dispose();
                error = $"the EC key in '{file}' is not a P-256 key, which es256 needs";
                return null;
            }

            return new SigningCredentials(new ECDsaSecurityKey(ecdsa) { KeyId = kid }, SecurityAlgorithms.EcdsaSha256);
        }
        catch (Exception ex) when (ex is CryptographicException or ArgumentException)
        {
            error = $"'{file}' holds no unencrypted {(algorithm == ClientAssertionAlgorithm.Rs256 ? "RSA" : "EC")} private key in PEM ({ex.Message})";
            return null;
        }
    }

    public static string Format(DateTime value) => value.ToUniversalTime().ToString("yyyy-MM-dd HH:mm:ss 'UTC'", CultureInfo.InvariantCulture);

    public static string Format(DateTimeOffset value) => value.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss 'UTC'", CultureInfo.InvariantCulture);
}
