using System.ComponentModel;

namespace Portcullis.Configuration;

/// <summary>The admin API (served on the listener with `admin: true`).</summary>
internal sealed record AdminOptions
{
    [Description("Who may use the admin API: bearer tokens and/or client certificates, each with a scope. Without it the admin API is open, which validate allows only on a loopback admin listener.")]
    public AdminAuthOptions? Auth { get; init; }
}

/// <summary>What a credential may do on the admin API.</summary>
internal enum AdminScope
{
    /// <summary>GET and HEAD: health, config, clusters, traffic, metrics.</summary>
    Read,

    /// <summary>Everything: reads, reload, drain and undrain.</summary>
    Admin,
}

internal sealed record AdminAuthOptions
{
    [Description("Bearer tokens (Authorization: Bearer TOKEN), each read from an environment variable or a file; list several to rotate without downtime.")]
    public IReadOnlyList<AdminTokenOptions> Tokens { get; init; } = [];

    [Description("Client certificates (the admin listener's tls.clientCertificate) allowed by claim rules on cert.subject, cert.cn, cert.dns, cert.uri, cert.email, cert.fingerprint, cert.issuer or cert.serial.")]
    public IReadOnlyList<AdminCertificateOptions> ClientCertificates { get; init; } = [];

    [Description("Paths anyone may GET without credentials: any of /healthz, /readyz and the metrics path. Default [/healthz, /readyz]; [] closes them too.")]
    public IReadOnlyList<string> Open { get; init; } = ["/healthz", "/readyz"];
}

internal sealed record AdminTokenOptions
{
    [Description("Name of the token's holder, written to the audit log as the actor (never the token).")]
    public string Name { get; init; } = "";

    [Description("read (GET and HEAD only) or admin (also reload, drain, undrain). Default read.")]
    public AdminScope Scope { get; init; } = AdminScope.Read;

    [Description("Environment variable holding the token (at least 16 characters). Exclusive with `file`.")]
    public string? Env { get; init; }

    [Description("File holding the token (trailing newline ignored), relative to the config file; watched, so replacing it reloads. Exclusive with `env`.")]
    [FilePath]
    public string? File { get; init; }
}

internal sealed record AdminCertificateOptions
{
    [Description("Name of the allowed certificate holder(s), written to the audit log as the actor with the certificate's subject.")]
    public string Name { get; init; } = "";

    [Description("read (GET and HEAD only) or admin (also reload, drain, undrain). Default read.")]
    public AdminScope Scope { get; init; } = AdminScope.Read;

    [Description("Claim rules on the certificate (all must hold), as in a route's auth.claims, e.g. { claim: cert.cn, is: ops }.")]
    public IReadOnlyList<ClaimRuleOptions> Claims { get; init; } = [];
}
