using System.Security.Cryptography;
using System.Text;
using Portcullis.Configuration;

namespace Portcullis.Upstream;

/// <summary>Where the gateway's client certificate toward a cluster comes from (absolute paths; the password's variable name only).</summary>
internal sealed record ClientCertificateSource(string ConfigPath, string? CertFile, string? KeyFile, string? PfxFile, string? PasswordEnv)
{
    public IEnumerable<string> Files => new[] { CertFile, KeyFile, PfxFile }.OfType<string>().Distinct(StringComparer.Ordinal);
}

/// <summary>A cluster's validated upstream TLS settings. <see cref="Fingerprint"/> identifies them (files by path, not content).</summary>
internal sealed record UpstreamTlsSettings(
    string Cluster,
    string? CaFile,
    string? ServerName,
    IReadOnlyList<string> Pins,
    ClientCertificateSource? ClientCertificate,
    bool InsecureSkipVerify)
{
    public string Fingerprint { get; } = Hash(
        Cluster, CaFile, ServerName, string.Join(',', Pins), ClientCertificate?.CertFile, ClientCertificate?.KeyFile,
        ClientCertificate?.PfxFile, ClientCertificate?.PasswordEnv, InsecureSkipVerify ? "insecure" : "verify");

    /// <summary>The files watched for changes: the CA bundle and the client certificate.</summary>
    public IEnumerable<string> Files => new[] { CaFile }.OfType<string>().Concat(ClientCertificate?.Files ?? []);

    internal static string Hash(params string?[] parts) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(string.Join("\n", parts.Select(p => p ?? "\u0001")))))[..32];
}

/// <summary>How the gateway authenticates at the token endpoint.</summary>
internal enum ClientAuthentication
{
    SecretFile,
    SecretEnv,
    PrivateKeyJwt,
}

/// <summary>A cluster's validated client-credentials settings (secrets are referenced, never held).</summary>
internal sealed record ClientCredentialsSettings(
    string Cluster,
    Uri TokenUrl,
    string ClientId,
    ClientAuthentication Authentication,
    string? SecretFile,
    string? SecretEnv,
    string? KeyFile,
    string? Kid,
    ClientAssertionAlgorithm Algorithm,
    string? AssertionAudience,
    string? Scope,
    string? Audience,
    double RefreshAt,
    string Header,
    TimeSpan Timeout)
{
    public string Fingerprint { get; } = UpstreamTlsSettings.Hash(
        Cluster, TokenUrl.AbsoluteUri, ClientId, Authentication.ToString(), SecretFile, SecretEnv, KeyFile, Kid, Algorithm.ToString(), AssertionAudience, Scope, Audience,
        RefreshAt.ToString("R", System.Globalization.CultureInfo.InvariantCulture), Header, Timeout.Ticks.ToString(System.Globalization.CultureInfo.InvariantCulture));
}
