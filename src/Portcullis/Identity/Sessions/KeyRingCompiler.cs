using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Portcullis.Configuration;

namespace Portcullis.Identity.Sessions;

/// <summary>identity.sessions.keyRing: the certificate that encrypts the session key ring kept in Redis.</summary>
internal static class KeyRingCompiler
{
    private const string KeyRingPath = "identity.sessions.keyRing";

    /// <summary>
    /// The key ring certificate for store: redis, loaded and checked once per snapshot; null for the local
    /// store (its key ring never leaves the process) or when the operator chose unprotected: true.
    /// </summary>
    internal static X509Certificate2? Compile(CompileContext context, SessionsOptions options)
    {
        var keyRing = options.KeyRing;
        if (options.Store != SessionStoreKind.Redis)
        {
            if (keyRing is not null && (keyRing.Cert ?? keyRing.Pfx) is not null) context.Warning(KeyRingPath, "keyRing is used only with store: redis (the local store's key ring never leaves the process)", "remove keyRing, or use store: redis");
            return null;
        }

        // No Redis configured is reported at the store already: one error is enough.
        if (string.IsNullOrWhiteSpace(context.Config.Stores.Redis?.Connection)) return null;
        if (keyRing is null || (keyRing.Cert is null && keyRing.Pfx is null))
        {
            if (keyRing?.Unprotected == true)
            {
                context.Warning(KeyRingPath + ".unprotected", "the session key ring is stored unencrypted in Redis: anyone who can read Redis can decrypt every session (with its tokens) and forge a session cookie for any user", "set keyRing: { cert: keyring.pem } to encrypt it at rest");
                return null;
            }

            context.Error(keyRing is null ? "identity.sessions.store" : KeyRingPath,
                "store: redis keeps the sessions' Data Protection key ring in Redis, and no keyRing certificate encrypts it: read access to Redis would be enough to decrypt sessions and forge cookies",
                "add keyRing: { cert: keyring.pem } (an RSA certificate with its private key; see docs/browser-access.md), or keyRing: { unprotected: true } to accept the risk");
            return null;
        }

        if (keyRing.Unprotected) context.Warning(KeyRingPath + ".unprotected", "unprotected: true is ignored: a certificate is given, so the key ring is encrypted");
        if (keyRing.Cert is not null && keyRing.Pfx is not null)
        {
            context.Error(KeyRingPath + ".pfx", "keyRing has both cert and pfx", "keep one");
            return null;
        }

        var at = KeyRingPath + (keyRing.Pfx is not null ? ".pfx" : ".cert");
        X509Certificate2 certificate;
        try
        {
            if (keyRing.Pfx is not null)
            {
                string? password = null;
                if (keyRing.PasswordEnv is not null && (password = context.Environment(keyRing.PasswordEnv)) is null)
                {
                    context.Error(KeyRingPath + ".passwordEnv", $"environment variable '{keyRing.PasswordEnv}' is not set", "set it to the PFX password, or remove passwordEnv for a PFX without one");
                    return null;
                }

                var pfx = context.Loaded.Resolve(keyRing.Pfx);
                context.Files.Add(pfx);
                certificate = X509CertificateLoader.LoadPkcs12FromFile(pfx, password, X509KeyStorageFlags.DefaultKeySet);
            }
            else
            {
                var cert = context.Loaded.Resolve(keyRing.Cert!);
                var key = keyRing.Key is null ? null : context.Loaded.Resolve(keyRing.Key);
                context.Files.Add(cert);
                if (key is not null) context.Files.Add(key);
                certificate = X509Certificate2.CreateFromPemFile(cert, key);
            }
        }
        catch (Exception ex) when (ex is CryptographicException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            context.Error(at, $"cannot load the key ring certificate: {ex.Message}", "an RSA certificate with its private key: PEM cert (and key), or a PFX with passwordEnv; paths are relative to the config file");
            return null;
        }

        using var rsa = certificate.GetRSAPrivateKey();
        if (rsa is null)
        {
            context.Error(at, "the key ring certificate has no RSA private key", "Data Protection encrypts the key ring with RSA: use an RSA certificate together with its private key");
            certificate.Dispose();
            return null;
        }

        context.FileContents.Add("keyring:" + certificate.GetCertHashString(HashAlgorithmName.SHA256));
        return certificate;
    }
}
