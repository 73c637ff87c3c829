using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Portcullis.IntegrationTests.Sessions;

/// <summary>
/// The RSA certificate that encrypts the session key ring in Redis (identity.sessions.keyRing), made once per
/// test run with the framework's certificate API and written next to the gateway's config as one PEM file.
/// </summary>
internal static class KeyRingCertificate
{
    public const string FileName = "keyring.pem";

    /// <summary>The identity.sessions line naming the file (indentation of SessionSetup.Config's session line).</summary>
    public const string ConfigLine = "keyRing: { cert: " + FileName + " }";

    private static readonly Lazy<X509Certificate2> Shared = new(Create);

    public static X509Certificate2 Certificate => Shared.Value;

    public static void AddFiles(IDictionary<string, string> files) =>
        files[FileName] = Certificate.ExportCertificatePem() + "\n" + Certificate.GetRSAPrivateKey()!.ExportPkcs8PrivateKeyPem() + "\n";

    private static X509Certificate2 Create()
    {
        using var rsa = RSA.Create(2048);
        var request = new CertificateRequest("CN=portcullis-keyring-test", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        using var created = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddYears(1));
        // Through PKCS#12 so the private key stays usable after the RSA object above is disposed.
        return X509CertificateLoader.LoadPkcs12(created.Export(X509ContentType.Pkcs12), null, X509KeyStorageFlags.Exportable);
    }
}
