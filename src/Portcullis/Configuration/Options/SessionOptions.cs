using System.Collections.ObjectModel;
using System.ComponentModel;

namespace Portcullis.Configuration;

/// <summary>Browser sign-in through OIDC providers, with sessions kept server-side (identity.sessions).</summary>
internal sealed record SessionsOptions
{
    [Description("OIDC providers browsers sign in with (authorization code + PKCE); routes name one in auth.session.")]
    public IReadOnlyList<SessionProviderOptions> Providers { get; init; } = [];

    [Description("The session cookie: the browser holds only a small protected session id, the session itself stays on the gateway.")]
    public SessionCookieOptions Cookie { get; init; } = new();

    [Description("Where sessions live: local (in-process, bounded by maxSessions) or redis (stores.redis, Redis 6.2+, shared by every instance; the Data Protection key ring is kept there too, encrypted with keyRing). Default local.")]
    public SessionStoreKind Store { get; init; } = SessionStoreKind.Local;

    [Description("With store: redis, the certificate that encrypts the Data Protection key ring at rest in Redis (without it, read access to Redis is enough to decrypt sessions and forge cookies). Required with store: redis unless unprotected: true.")]
    public SessionKeyRingOptions? KeyRing { get; init; }

    [Description("Most sessions the local store keeps; when full, the session closest to expiry is dropped. Default 100000.")]
    public int MaxSessions { get; init; } = 100_000;

    [Description("Path that ends the session: a POST from this origin (Origin or Sec-Fetch-Site checked) ends it, then redirects through the provider's end_session_endpoint when it has one; a GET shows a confirmation page. Default /.portcullis/logout.")]
    public string LogoutPath { get; init; } = "/.portcullis/logout";

    [Description("Sign-ins one client address may start per minute (a burst of this many, then evenly spread); more get 429 with Retry-After. 0 turns the limit off. Default 30.")]
    public int SignInsPerMinute { get; init; } = 30;

    [Description("Access tokens are refreshed with the refresh token when they expire within this time. Default 1m.")]
    public TimeSpan RefreshBefore { get; init; } = TimeSpan.FromMinutes(1);
}

internal sealed record SessionProviderOptions
{
    [Description("Provider name used by routes' auth.session.")]
    public string Name { get; init; } = "";

    [Description("OIDC authority: discovery at {authority}/.well-known/openid-configuration gives the endpoints and keys.")]
    public string Authority { get; init; } = "";

    [Description("The gateway's client id at the provider (a client allowed the authorization code flow; confidential unless publicClient is true).")]
    public string ClientId { get; init; } = "";

    [Description("The client is a public client at the provider: no client secret, PKCE alone binds the code to this sign-in. Default false (a confidential client with clientSecretEnv or clientSecretFile).")]
    public bool PublicClient { get; init; }

    [Description("Environment variable holding the client secret (never written in the file).")]
    [Secret]
    public string? ClientSecretEnv { get; init; }

    [Description("File holding the client secret (trailing newline ignored), relative to the config file.")]
    [FilePath]
    public string? ClientSecretFile { get; init; }

    [Description("Scopes requested at sign-in; must include openid. Add offline_access for refresh tokens. Default [openid, profile, email].")]
    public IReadOnlyList<string> Scopes { get; init; } = ["openid", "profile", "email"];

    [Description("Extra parameters sent with every authorization request to this provider, e.g. { prompt: consent, acr_values: mfa }. The flow's own parameters (client_id, redirect_uri, scope, state, nonce, code_challenge ...) cannot be set here.")]
    public IReadOnlyDictionary<string, string> AuthorizationParameters { get; init; } = ReadOnlyDictionary<string, string>.Empty;

    [Description("Gateway path the provider redirects back to (register it as a redirect URI). Default /.portcullis/callback/{name}.")]
    public string? CallbackPath { get; init; }

    [Description("Which ID-token claims carry the subject, consumer, consumer group, groups and scopes.")]
    public ClaimMappingOptions Claims { get; init; } = new();
}

internal sealed record SessionCookieOptions
{
    [Description("Cookie name prefix; each provider's cookie is NAME-PROVIDER. A __Host- name is always Secure, Path=/ and has no domain (HTTPS listeners only). Default __Host-portcullis.")]
    public string Name { get; init; } = "__Host-portcullis";

    [Description("Cookie domain, to share the session with subdomains (not with a __Host- name). Default: the request host only.")]
    public string? Domain { get; init; }

    [Description("A session unused this long ends; every request restarts the window. Default 1h.")]
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromHours(1);

    [Description("A session ends this long after sign-in, however active. Default 12h.")]
    public TimeSpan AbsoluteTimeout { get; init; } = TimeSpan.FromHours(12);
}

/// <summary>The certificate (with its RSA private key) that encrypts the session key ring stored in Redis.</summary>
internal sealed record SessionKeyRingOptions
{
    [Description("PEM certificate file (RSA), relative to the config file. Its private key is in the same file or in `key`.")]
    [FilePath]
    public string? Cert { get; init; }

    [Description("PEM private key file (unencrypted PKCS#8 or PKCS#1). Default: the key is read from the `cert` file.")]
    [FilePath]
    public string? Key { get; init; }

    [Description("PKCS#12 (PFX) file holding the certificate and its private key, instead of `cert` and `key`.")]
    [FilePath]
    public string? Pfx { get; init; }

    [Description("Environment variable holding the PFX password. Default: no password.")]
    public string? PasswordEnv { get; init; }

    [Description("Keep the key ring in Redis unencrypted (anyone who can read Redis can then decrypt every session and forge cookies). Default false.")]
    public bool Unprotected { get; init; }
}

internal enum SessionStoreKind
{
    Local,
    Redis,
}
