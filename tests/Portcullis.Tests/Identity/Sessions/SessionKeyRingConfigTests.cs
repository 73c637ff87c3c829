using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Portcullis.Configuration;

namespace Portcullis.Tests.Identity.Sessions;

/// <summary>
/// identity.sessions.keyRing (issue 13, point 2): store: redis refuses to keep the key ring in Redis
/// unencrypted unless told to, and the certificate that encrypts it is loaded and checked at validate time.
/// </summary>
public sealed class SessionKeyRingConfigTests : ConfigBuildTestBase
{
    public SessionKeyRingConfigTests()
        : base("portcullis-keyring-")
    {
        _environment["OIDC_SECRET"] = "s3cret-value";
    }

    // identity.sessions.store is on line 13, keyRing (when given) on line 14.
    private static string Config(string keyRing = "") => $$"""
        listeners:
          - { name: public, address: "127.0.0.1:8080" }
        clusters:
          app: { destinations: ["http://127.0.0.1:5001"] }
        routes:
          - { name: wiki, match: { pathPrefix: /wiki }, auth: { session: corp }, cluster: app }
        stores:
          redis: { connection: "127.0.0.1:6379" }
        identity:
          sessions:
            providers:
              - { name: corp, authority: "https://login.example.test/", clientId: gateway, clientSecretEnv: OIDC_SECRET }
            store: redis
            {{keyRing}}
        """;

    private static string RsaPem(out X509Certificate2 certificate)
    {
        using var rsa = RSA.Create(2048);
        certificate = new CertificateRequest("CN=keyring", rsa, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1)
            .CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        return certificate.ExportCertificatePem() + "\n" + rsa.ExportPkcs8PrivateKeyPem() + "\n";
    }

    [Fact]
    public void RedisStore_WithoutKeyRing_IsAnErrorAtTheStore()
    {
        var error = SingleError(Build(Config()));
        Assert.Contains("no keyRing certificate encrypts it", error.Message, StringComparison.Ordinal);
        Assert.Contains("keyRing: { cert: keyring.pem }", error.Hint, StringComparison.Ordinal);
        AssertAt(error, 13, 12);
    }

    [Fact]
    public void RedisStore_Unprotected_IsAllowedWithAWarning()
    {
        var result = Build(Config("keyRing: { unprotected: true }"));
        Assert.True(result.Succeeded, Dump(result));
        Assert.Null(result.Snapshot!.Sessions!.KeyRingCertificate);
        var warning = Assert.Single(result.Diagnostics, d => d.Message.Contains("stored unencrypted in Redis", StringComparison.Ordinal));
        AssertAt(warning, 14, 29);
    }

    [Fact]
    public void RedisStore_WithAnRsaCertificate_CompilesIt()
    {
        WriteFile("keys/keyring.pem", RsaPem(out var expected));
        var result = Build(Config("keyRing: { cert: keys/keyring.pem }"));
        Assert.True(result.Succeeded, Dump(result));
        var loaded = result.Snapshot!.Sessions!.KeyRingCertificate!;
        Assert.Equal(expected.Thumbprint, loaded.Thumbprint);
        Assert.True(loaded.HasPrivateKey);
    }

    [Fact]
    public void KeyRing_MissingFile_OrNoPrivateKey_OrNotRsa_AreErrorsAtTheFile()
    {
        var missing = SingleError(Build(Config("keyRing: { cert: nope.pem }")));
        Assert.StartsWith("cannot load the key ring certificate", missing.Message, StringComparison.Ordinal);
        AssertAt(missing, 14, 22);

        RsaPem(out var certificate);
        WriteFile("public-only.pem", certificate.ExportCertificatePem());
        var noKey = SingleError(Build(Config("keyRing: { cert: public-only.pem }")));
        AssertAt(noKey, 14, 22);

        using var ecdsa = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var ec = new CertificateRequest("CN=ec", ecdsa, HashAlgorithmName.SHA256).CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        WriteFile("ec.pem", ec.ExportCertificatePem() + "\n" + ecdsa.ExportPkcs8PrivateKeyPem() + "\n");
        var notRsa = SingleError(Build(Config("keyRing: { cert: ec.pem }")));
        Assert.Equal("the key ring certificate has no RSA private key", notRsa.Message);
        AssertAt(notRsa, 14, 22);
    }
}
