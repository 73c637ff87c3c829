using System.Security.Authentication;
using Portcullis.Configuration;

namespace Portcullis.Tls;

/// <summary>A listener's validated TLS settings. Equal when every setting and file is the same (a change needs a restart).</summary>
internal sealed record ListenerTls(TlsVersion MinVersion, IReadOnlyList<CertificateSource> Certificates, int DefaultIndex, ClientCertificatePolicy? ClientCertificate = null, string? Hsts = null)
{
    /// <summary>The protocols offered: never below TLS 1.2.</summary>
    public SslProtocols Protocols => MinVersion == TlsVersion.Tls13 ? SslProtocols.Tls13 : SslProtocols.Tls12 | SslProtocols.Tls13;

    public bool Equals(ListenerTls? other) =>
        other is not null && MinVersion == other.MinVersion && DefaultIndex == other.DefaultIndex && Certificates.SequenceEqual(other.Certificates)
        && Equals(ClientCertificate, other.ClientCertificate) && Hsts == other.Hsts;

    public override int GetHashCode() => HashCode.Combine(MinVersion, DefaultIndex, Certificates.Count);
}

/// <summary>
/// Where one certificate comes from: absolute file paths, the PFX password's environment variable (its
/// value is read when loading, never kept here) and the configured SNI hosts (empty: the certificate's SANs).
/// </summary>
internal sealed record CertificateSource(
    string Name,
    string ConfigPath,
    string? CertFile,
    string? KeyFile,
    string? PfxFile,
    string? PasswordEnv,
    IReadOnlyList<string> Hosts)
{
    /// <summary>The files read for this certificate (watched for changes).</summary>
    public IEnumerable<string> Files => new[] { CertFile, KeyFile, PfxFile }.OfType<string>().Distinct(StringComparer.Ordinal);

    /// <summary>The file that identifies the certificate: the PFX or the PEM certificate.</summary>
    public string MainFile => PfxFile ?? CertFile ?? "";

    public bool Equals(CertificateSource? other) =>
        other is not null && Name == other.Name && ConfigPath == other.ConfigPath && CertFile == other.CertFile && KeyFile == other.KeyFile
        && PfxFile == other.PfxFile && PasswordEnv == other.PasswordEnv && Hosts.SequenceEqual(other.Hosts, StringComparer.Ordinal);

    public override int GetHashCode() => HashCode.Combine(Name, CertFile, KeyFile, PfxFile);
}

/// <summary>
/// A listener's validated client-certificate (mTLS) settings: mode, the CA bundle file (absolute), revocation
/// checking, the extended key usages accepted (OIDs) and the claims tried for the consumer id.
/// </summary>
internal sealed record ClientCertificatePolicy(
    ClientCertificateMode Mode,
    string CaFile,
    string ConfigPath,
    RevocationCheck Revocation,
    IReadOnlyList<string> AllowedUsages,
    IReadOnlyList<string> Consumer)
{
    public bool Equals(ClientCertificatePolicy? other) =>
        other is not null && Mode == other.Mode && CaFile == other.CaFile && ConfigPath == other.ConfigPath && Revocation == other.Revocation
        && AllowedUsages.SequenceEqual(other.AllowedUsages, StringComparer.Ordinal) && Consumer.SequenceEqual(other.Consumer, StringComparer.Ordinal);

    public override int GetHashCode() => HashCode.Combine(Mode, CaFile, Revocation);
}
