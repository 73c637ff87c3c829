using System.ComponentModel;

namespace Portcullis.Configuration;

internal enum TlsVersion
{
    /// <summary>TLS 1.2 and 1.3.</summary>
    Tls12,

    /// <summary>TLS 1.3 only.</summary>
    Tls13,
}

/// <summary>TLS on a listener: certificates chosen by SNI, reloaded when their files change.</summary>
internal sealed record ListenerTlsOptions
{
    [Description("Server certificates. The client's SNI name picks one (exact names beat wildcards); an unknown or missing name gets the default.")]
    public IReadOnlyList<CertificateOptions> Certificates { get; init; } = [];

    [Description("Name of the certificate served when SNI names none of the certificates' hosts (or is missing). Default: the first certificate.")]
    public string? Default { get; init; }

    [Description("Lowest TLS version accepted: tls12 (default; TLS 1.2 and 1.3) or tls13 (TLS 1.3 only). Older versions are always refused.")]
    public TlsVersion MinVersion { get; init; } = TlsVersion.Tls12;

    [Description("Client certificates (mTLS): none, optional or required, the trusted CA bundle and revocation checks. The certificate becomes an identity routes can require (auth.clientCertificate).")]
    public ClientCertificateOptions ClientCertificate { get; init; } = new();

    [Description("Send Strict-Transport-Security on this listener's responses. Default: not sent.")]
    public HstsOptions? Hsts { get; init; }
}

/// <summary>One server certificate: PEM certificate and key files, or a PKCS#12 (PFX) file.</summary>
internal sealed record CertificateOptions
{
    [Description("Name used by `default`, in logs and in the admin API. Default: cert1, cert2, ... by position.")]
    public string? Name { get; init; }

    [Description("PEM certificate file (the leaf first, then any intermediates). Relative to the config file. Reloaded when it changes.")]
    [FilePath]
    public string? Cert { get; init; }

    [Description("PEM private key file (PKCS#8, PKCS#1 or SEC1; unencrypted). Default: the key is read from the `cert` file.")]
    [FilePath]
    public string? Key { get; init; }

    [Description("PKCS#12 (PFX) file holding the certificate, its key and any intermediates, instead of `cert` and `key`. Reloaded when it changes.")]
    [FilePath]
    public string? Pfx { get; init; }

    [Description("Environment variable holding the PFX password. Default: no password.")]
    public string? PasswordEnv { get; init; }

    [Description("SNI host names this certificate serves, e.g. [api.example.com, \"*.example.com\"]. Default: the DNS names in the certificate's subject alternative names.")]
    public IReadOnlyList<string> Hosts { get; init; } = [];
}

internal enum ClientCertificateMode
{
    /// <summary>No client certificate is asked for.</summary>
    None,

    /// <summary>A client certificate is asked for; without one the handshake succeeds, a presented one must be trusted.</summary>
    Optional,

    /// <summary>A trusted client certificate is required; without one the handshake is refused.</summary>
    Required,
}

internal enum RevocationCheck
{
    /// <summary>No revocation check.</summary>
    None,

    /// <summary>Check against CRLs already cached on this machine (no network on the handshake path).</summary>
    Offline,

    /// <summary>Fetch CRLs / OCSP answers from the network during the handshake when not cached.</summary>
    Online,
}

/// <summary>Client certificates (mTLS) on a listener: trusted CAs, revocation and how the certificate becomes an identity.</summary>
internal sealed record ClientCertificateOptions
{
    [Description("none (default: no client certificate asked for), optional (asked for; a presented one must be trusted) or required (no trusted certificate, no handshake).")]
    public ClientCertificateMode Mode { get; init; } = ClientCertificateMode.None;

    [Description("PEM bundle of the CAs that issue client certificates (the only trust anchors; system roots are not used). Required unless mode is none. Reloaded when it changes.")]
    [FilePath]
    public string? Ca { get; init; }

    [Description("Revocation check of client certificates: none (default), offline (CRLs cached on this machine) or online (CRL/OCSP fetched during the handshake).")]
    public RevocationCheck Revocation { get; init; } = RevocationCheck.None;

    [Description("Extended key usages a client certificate with an extended key usage extension must have one of: clientAuth, serverAuth or a dotted OID. Default [clientAuth].")]
    public IReadOnlyList<string> AllowedUsages { get; init; } = ["clientAuth"];

    [Description("Certificate claims tried in order for the consumer id: cert.uri, cert.dns, cert.cn, cert.subject, cert.fingerprint. Default [cert.uri, cert.cn].")]
    public IReadOnlyList<string> Consumer { get; init; } = ["cert.uri", "cert.cn"];
}

/// <summary>HTTP Strict Transport Security on a TLS listener's responses.</summary>
internal sealed record HstsOptions
{
    [Description("max-age: how long browsers remember to use HTTPS only. Default 180d.")]
    public TimeSpan MaxAge { get; init; } = TimeSpan.FromDays(180);

    [Description("Add includeSubDomains. Default false.")]
    public bool IncludeSubDomains { get; init; }

    [Description("Add preload (for the browsers' preload lists; needs includeSubDomains and maxAge of at least 1 year). Default false.")]
    public bool Preload { get; init; }
}

/// <summary>A cleartext listener that answers every request with a redirect to HTTPS.</summary>
internal sealed record RedirectToHttpsOptions
{
    [Description("Port of the HTTPS URL redirected to; 443 is left out of the URL. Default 443.")]
    public int Port { get; init; } = 443;

    [Description("Redirect status: 308 (default; keeps the method and body) or 301.")]
    public int Status { get; init; } = 308;
}
