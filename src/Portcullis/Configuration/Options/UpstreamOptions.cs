using System.ComponentModel;

namespace Portcullis.Configuration;

/// <summary>TLS toward a cluster's https:// destinations: whom to trust, which name to verify, and the gateway's own client certificate.</summary>
internal sealed record UpstreamTlsOptions
{
    [Description("PEM file of CA certificates trusted for this cluster's destinations (only these; the system store is not used). Relative to the config file; reloaded when it changes. Default: the system trust store.")]
    [FilePath]
    public string? Ca { get; init; }

    [Description("Host name sent as SNI and verified against the destination's certificate, instead of the destination's host (e.g. when destinations are IP addresses).")]
    public string? ServerName { get; init; }

    [Description("SHA-256 hashes (base64) of the SubjectPublicKeyInfo of accepted destination certificates; when given, the destination's certificate must match one (in addition to the chain check).")]
    public IReadOnlyList<string> Pin { get; init; } = [];

    [Description("Client certificate the gateway presents to destinations that ask for one (upstream mTLS). Reloaded when its files change; new connections use the new one.")]
    public UpstreamClientCertificateOptions? ClientCertificate { get; init; }

    [Description("Accept any destination certificate (no chain or name check; pins still apply). For development only: `validate` warns.")]
    public bool InsecureSkipVerify { get; init; }
}

/// <summary>The gateway's client certificate toward a cluster: PEM certificate and key, or a PKCS#12 (PFX) file.</summary>
internal sealed record UpstreamClientCertificateOptions
{
    [Description("PEM certificate file (the client certificate first, then any intermediates). Relative to the config file.")]
    [FilePath]
    public string? Cert { get; init; }

    [Description("PEM private key file (PKCS#8, PKCS#1 or SEC1; unencrypted). Default: the key is read from the `cert` file.")]
    [FilePath]
    public string? Key { get; init; }

    [Description("PKCS#12 (PFX) file with the certificate and its key, instead of `cert` and `key`.")]
    [FilePath]
    public string? Pfx { get; init; }

    [Description("Environment variable holding the PFX password. Default: no password.")]
    public string? PasswordEnv { get; init; }
}

/// <summary>Credentials the gateway obtains for itself and sends to a cluster's destinations.</summary>
internal sealed record UpstreamCredentialsOptions
{
    [Description("OAuth 2.0 client credentials grant: a token fetched, cached and refreshed in the background, sent as a Bearer token.")]
    public ClientCredentialsOptions? ClientCredentials { get; init; }
}

internal enum ClientAssertionAlgorithm
{
    Rs256,
    Es256,
}

/// <summary>An OAuth 2.0 client_credentials token for upstream requests.</summary>
internal sealed record ClientCredentialsOptions
{
    [Description("The provider's token endpoint, an absolute http(s) URL.")]
    public string TokenUrl { get; init; } = "";

    [Description("The gateway's client id at the provider.")]
    public string ClientId { get; init; } = "";

    [Description("Not accepted: secrets are never written in the file. Use clientSecretFile or clientSecretEnv.")]
    [Secret]
    public string? ClientSecret { get; init; }

    [Description("File holding the client secret (trailing newline ignored), relative to the config file; read at every token request, so a rotated secret is used without a reload.")]
    [FilePath]
    public string? ClientSecretFile { get; init; }

    [Description("Environment variable holding the client secret.")]
    public string? ClientSecretEnv { get; init; }

    [Description("Authenticate with a signed JWT (private_key_jwt, RFC 7523) instead of a client secret.")]
    public PrivateKeyJwtOptions? PrivateKeyJwt { get; init; }

    [Description("Space-separated scopes requested. Default: none (the provider's default).")]
    public string? Scope { get; init; }

    [Description("`audience` parameter sent with the token request (some providers pick the API by it). Default: not sent.")]
    public string? Audience { get; init; }

    [Description("Fraction of a token's lifetime after which it is refreshed in the background, between 0.1 and 0.95. Default 0.8.")]
    public double RefreshAt { get; init; } = 0.8;

    [Description("Request header carrying the token to the upstream, as `Bearer TOKEN`. Default Authorization. The client's own Authorization header is never forwarded to such a cluster.")]
    public string Header { get; init; } = "Authorization";

    [Description("Timeout of one token request. Default 10s.")]
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(10);
}

/// <summary>Client authentication with a private key (RFC 7523 client assertion).</summary>
internal sealed record PrivateKeyJwtOptions
{
    [Description("PEM private key (RSA for rs256, P-256 EC for es256) that signs the client assertion; its public key is registered at the provider. Relative to the config file; read at every token request.")]
    [FilePath]
    public string? KeyFile { get; init; }

    [Description("`kid` header of the client assertion. Default: none.")]
    public string? Kid { get; init; }

    [Description("Signature algorithm: rs256 (default) or es256.")]
    public ClientAssertionAlgorithm Algorithm { get; init; } = ClientAssertionAlgorithm.Rs256;

    [Description("`aud` of the client assertion. Default: the tokenUrl (RFC 7523). Providers following draft-ietf-oauth-rfc7523bis (e.g. OpenIddict 7) want their issuer identifier here.")]
    public string? Audience { get; init; }
}
