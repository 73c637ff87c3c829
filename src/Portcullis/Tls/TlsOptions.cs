using System.ComponentModel;

namespace Portcullis.Configuration;

public enum TlsVersion
{
    /// <summary>TLS 1.2 and 1.3.</summary>
    Tls12,

    /// <summary>TLS 1.3 only.</summary>
    Tls13,
}

/// <summary>TLS on a listener: certificates chosen by SNI, reloaded when their files change.</summary>
public sealed record ListenerTlsOptions
{
    [Description("Server certificates. The client's SNI name picks one (exact names beat wildcards); an unknown or missing name gets the default.")]
    public IReadOnlyList<CertificateOptions> Certificates { get; init; } = [];

    [Description("Name of the certificate served when SNI names none of the certificates' hosts (or is missing). Default: the first certificate.")]
    public string? Default { get; init; }

    [Description("Lowest TLS version accepted: tls12 (default; TLS 1.2 and 1.3) or tls13 (TLS 1.3 only). Older versions are always refused.")]
    public TlsVersion MinVersion { get; init; } = TlsVersion.Tls12;
}

/// <summary>One server certificate: PEM certificate and key files, or a PKCS#12 (PFX) file.</summary>
public sealed record CertificateOptions
{
    [Description("Name used by `default`, in logs and in the admin API. Default: cert1, cert2, ... by position.")]
    public string? Name { get; init; }

    [Description("PEM certificate file (the leaf first, then any intermediates). Relative to the config file. Reloaded when it changes.")]
    public string? Cert { get; init; }

    [Description("PEM private key file (PKCS#8, PKCS#1 or SEC1; unencrypted). Default: the key is read from the `cert` file.")]
    public string? Key { get; init; }

    [Description("PKCS#12 (PFX) file holding the certificate, its key and any intermediates, instead of `cert` and `key`. Reloaded when it changes.")]
    public string? Pfx { get; init; }

    [Description("Environment variable holding the PFX password. Default: no password.")]
    public string? PasswordEnv { get; init; }

    [Description("SNI host names this certificate serves, e.g. [api.example.com, \"*.example.com\"]. Default: the DNS names in the certificate's subject alternative names.")]
    public IReadOnlyList<string> Hosts { get; init; } = [];
}
