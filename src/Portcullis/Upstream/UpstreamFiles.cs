using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.IdentityModel.Tokens;
using Portcullis.Configuration;
using Portcullis.Files;

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

/// <summary>
/// Reads upstream TLS and credential files with <see cref="CertificateFiles"/> (shared with listener TLS: one
/// size limit, one error type) and the framework's key loaders: never a hand-written parser.
/// </summary>
internal static class UpstreamFiles
{
    public static byte[]? Read(string file, string key, out CertificateFileError? error) =>
        CertificateFiles.Read(file, key, out error, "a secret or key", "point at the file itself");

    public static TrustBundle? LoadTrust(string file, DateTimeOffset now, out CertificateFileError? error)
    {
        var bundle = CertificateFiles.LoadBundle(file, "ca", "the file must hold -----BEGIN CERTIFICATE----- blocks", out error);
        return bundle is null ? null : new TrustBundle(bundle.Certificates, bundle.ContentHash, now);
    }

    public static LoadedClientCertificate? LoadClient(ClientCertificateSource source, Func<string, string?> environment, DateTimeOffset now, out CertificateFileError? error)
    {
        var loaded = CertificateFiles.Load(source.CertFile, source.KeyFile, source.PfxFile, source.PasswordEnv, environment, CertificatePurpose.Client, now, out error);
        if (loaded is null) return null;
        return new LoadedClientCertificate
        {
            Certificate = loaded.Certificate,
            Context = SslStreamCertificateContext.Create(loaded.Certificate, loaded.Intermediates, offline: true),
            ContentHash = loaded.ContentHash,
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

    public static string Format(DateTimeOffset value) => CertificatePurpose.Client.Format(value);
}
