using System.ComponentModel;

namespace Portcullis.Configuration;

/// <summary>Who may call: token issuers, API keys, and what the upstream is told about the caller.</summary>
internal sealed record IdentityOptions
{
    [Description("Trusted JWT issuers (OIDC providers or local key files).")]
    public IReadOnlyList<IssuerOptions> Issuers { get; init; } = [];

    [Description("OAuth 2.0 token introspection endpoints (RFC 7662) for opaque access tokens.")]
    public IReadOnlyList<IntrospectionOptions> Introspection { get; init; } = [];

    [Description("API keys: where clients send them and where the gateway keeps their hashes.")]
    public ApiKeyOptions? ApiKeys { get; init; }

    [Description("Request headers the upstream receives about the caller. Inbound copies are always removed.")]
    public IdentityHeadersOptions Headers { get; init; } = new();

    [Description("Largest bearer token accepted; larger ones are refused before any parsing. Default 16KiB.")]
    public ByteSize MaxTokenSize { get; init; } = ByteSize.FromKiB(16);

    [Description("A gateway-signed, short-lived JWT telling upstreams who called (ES256, with kid); its public keys are served as a JWKS.")]
    public AssertionOptions? Assertion { get; init; }

    [Description("Validated tokens remembered (by hash) so a repeat skips the signature check; entries expire no later than the token. Default 10000.")]
    public int TokenCacheSize { get; init; } = 10_000;

    [Description("Browser sign-in: OIDC providers, the session cookie and where sessions are kept; routes use it with auth.session.")]
    public SessionsOptions? Sessions { get; init; }
}

internal sealed record IssuerOptions
{
    [Description("Issuer name used by routes' auth rules.")]
    public string Name { get; init; } = "";

    [Description("OIDC authority: discovery at {authority}/.well-known/openid-configuration gives the issuer and JWKS URI.")]
    public string? Authority { get; init; }

    [Description("JWKS URI, when there is no discovery document.")]
    public string? JwksUri { get; init; }

    [Description("Local JWKS file (reloaded when it changes), instead of fetching keys.")]
    [FilePath]
    public string? JwksFile { get; init; }

    [Description("Expected `iss` claim, compared exactly (a trailing `/` counts). Default: the discovery document's issuer, else the authority.")]
    public string? Issuer { get; init; }

    [Description("Accepted `aud` values; a token must carry one of them.")]
    public IReadOnlyList<string> Audiences { get; init; } = [];

    [Description("Accepted signature algorithms. Default RS256, PS256, ES256. `none` is never accepted; HS* only with sharedSecret.")]
    public IReadOnlyList<string> Algorithms { get; init; } = ["RS256", "PS256", "ES256"];

    [Description("Environment variable holding a shared secret for HS256/384/512 (never written in the file).")]
    [Secret]
    public string? SharedSecretEnv { get; init; }

    [Description("Allowed clock difference for exp/nbf. Default 30s.")]
    public TimeSpan ClockSkew { get; init; } = TimeSpan.FromSeconds(30);

    [Description("Claims a token must carry. Default [exp].")]
    public IReadOnlyList<string> RequiredClaims { get; init; } = ["exp"];

    [Description("Require RFC 9068 access tokens (typ at+jwt), so ID tokens are refused. Default false.")]
    public bool RequireAccessTokenType { get; init; }

    [Description("Which claims carry the subject, consumer, consumer group, groups and scopes.")]
    public ClaimMappingOptions Claims { get; init; } = new();

    [Description("How keys are fetched and how long stale keys may serve.")]
    public KeyRefreshOptions Keys { get; init; } = new();
}

internal sealed record IntrospectionOptions
{
    [Description("Introspector name used by routes' auth rules (auth.introspection).")]
    public string Name { get; init; } = "";

    [Description("The provider's introspection endpoint (RFC 7662), an absolute http(s) URL.")]
    public string Endpoint { get; init; } = "";

    [Description("Client id the gateway authenticates with at the endpoint (HTTP Basic).")]
    public string ClientId { get; init; } = "";

    [Description("Environment variable holding the client secret (never written in the file).")]
    [Secret]
    public string? ClientSecretEnv { get; init; }

    [Description("File holding the client secret (trailing newline ignored), relative to the config file.")]
    [FilePath]
    public string? ClientSecretFile { get; init; }

    [Description("How long an active answer is reused; never beyond the token's exp. Default 60s.")]
    public TimeSpan CacheTtl { get; init; } = TimeSpan.FromSeconds(60);

    [Description("How long an inactive answer (unknown, expired or revoked token) is reused. Default 10s.")]
    public TimeSpan NegativeTtl { get; init; } = TimeSpan.FromSeconds(10);

    [Description("Timeout of one introspection call; on timeout or error the request gets 503. Default 5s.")]
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(5);

    [Description("Which claims of the introspection answer carry the subject, consumer, consumer group, groups and scopes.")]
    public ClaimMappingOptions Claims { get; init; } = new();
}

internal sealed record ClaimMappingOptions
{
    [Description("Claim with the subject. Default sub.")]
    public string Subject { get; init; } = "sub";

    [Description("Claims tried in order for the consumer id. Default [client_id, azp, sub].")]
    public IReadOnlyList<string> Consumer { get; init; } = ["client_id", "azp", "sub"];

    [Description("Claim with the consumer group (tier). Default none.")]
    public string? ConsumerGroup { get; init; }

    [Description("Claim with the groups (string or array). Default groups.")]
    public string Groups { get; init; } = "groups";

    [Description("Claims with the scopes: space-separated string or array. Default [scope, scp].")]
    public IReadOnlyList<string> Scopes { get; init; } = ["scope", "scp"];
}

internal sealed record KeyRefreshOptions
{
    [Description("Background refresh of discovery and JWKS, and the longest time a key withdrawn at the provider keeps verifying; a shorter JWKS Cache-Control max-age (not below minRefreshInterval) refreshes sooner. Default 5m.")]
    public TimeSpan RefreshInterval { get; init; } = TimeSpan.FromMinutes(5);

    [Description("Lower bound for a refresh scheduled by the JWKS response's Cache-Control max-age (no-cache, no-store and max-age=0 count as this). Default 1m.")]
    public TimeSpan MinRefreshInterval { get; init; } = TimeSpan.FromMinutes(1);

    [Description("A token with an unknown kid triggers at most one refresh per this interval; the request waits for it, at most 2s (or timeout). Default 30s.")]
    public TimeSpan UnknownKidRefreshInterval { get; init; } = TimeSpan.FromSeconds(30);

    [Description("When the provider is unreachable, cached keys keep serving until refreshInterval + staleFor after the last successful fetch; then the issuer fails closed (503). Default 1h.")]
    public TimeSpan StaleFor { get; init; } = TimeSpan.FromHours(1);

    [Description("Timeout of one fetch. Default 5s.")]
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(5);
}

internal sealed record ApiKeyOptions
{
    [Description("Header carrying the key. Default X-Api-Key.")]
    public string Header { get; init; } = "X-Api-Key";

    [Description("Also accept the key from this query parameter (off by default: URLs end up in logs).")]
    public string? QueryParameter { get; init; }

    [Description("File of consumers and their key hashes, managed by `portcullis keys`: YAML, or JSON when the name ends in .json (faster for large stores). Reloaded when it changes.")]
    [FilePath]
    public string File { get; init; } = "keys.yaml";
}

internal sealed record IdentityHeadersOptions
{
    [Description("Header with the consumer id. Default X-Consumer-Id.")]
    public string Consumer { get; init; } = "X-Consumer-Id";

    [Description("Header with the consumer group. Default X-Consumer-Group.")]
    public string ConsumerGroup { get; init; } = "X-Consumer-Group";

    [Description("Header with the subject. Default X-Subject.")]
    public string Subject { get; init; } = "X-Subject";

    [Description("Header with the groups, comma-separated. Default X-Groups.")]
    public string Groups { get; init; } = "X-Groups";

    [Description("Header with the scopes, space-separated. Default X-Scopes.")]
    public string Scopes { get; init; } = "X-Scopes";
}

/// <summary>Who may use a route. A route without `auth` is public; one with `auth` denies by default.</summary>
internal sealed record RouteAuthOptions
{
    [Description("Say explicitly that the route is public (no credentials needed).")]
    public bool Anonymous { get; init; }

    [Description("Issuers whose tokens are accepted (any one).")]
    public IReadOnlyList<string> Issuers { get; init; } = [];

    [Description("Introspectors (identity.introspection names) that check opaque bearer tokens (any one).")]
    public IReadOnlyList<string> Introspection { get; init; } = [];

    [Description("Accept API keys.")]
    public bool ApiKey { get; init; }

    [Description("Browser route: the identity.sessions provider users sign in with; without a session a browser is sent to sign in, an API-style request gets 401.")]
    public string? Session { get; init; }

    [Description("Accept the client certificate (mTLS) a listener with tls.clientCertificate validated; its claims are cert.subject, cert.cn, cert.dns, cert.uri, cert.fingerprint, cert.issuer, cert.serial.")]
    public bool ClientCertificate { get; init; }

    [Description("With clientCertificate: send the caller's client certificate to the upstream in this request header, as URL-encoded PEM (like Envoy's XFCC Cert= or nginx's $ssl_client_escaped_cert). Inbound copies are always removed. Default: not sent.")]
    public string? ForwardCertificate { get; init; }

    [Description("Scopes the caller must have (all).")]
    public IReadOnlyList<string> Scopes { get; init; } = [];

    [Description("The caller must be in one of these groups.")]
    public IReadOnlyList<string> Groups { get; init; } = [];

    [Description("Only these consumers may call.")]
    public IReadOnlyList<string> Consumers { get; init; } = [];

    [Description("Claim rules: all listed must hold. Each names a claim and one of is, oneOf, contains, regex, exists; `any` / `all` nest rules.")]
    public IReadOnlyList<ClaimRuleOptions> Claims { get; init; } = [];

    [Description("Audience (`aud`) of the identity assertion sent upstream on this route. Default: the route's cluster name.")]
    public string? AssertionAudience { get; init; }

    [Description("Keep the inbound Authorization / API key header when proxying. Default false (stripped).")]
    public bool ForwardCredentials { get; init; }
}

internal sealed record ClaimRuleOptions
{
    [Description("Claim name.")]
    public string? Claim { get; init; }

    [Description("The claim is this value (for an array claim: one of its items is).")]
    public string? Is { get; init; }

    [Description("The claim is one of these values.")]
    public IReadOnlyList<string>? OneOf { get; init; }

    [Description("The claim (string) contains this text.")]
    public string? Contains { get; init; }

    [Description("The claim matches this regular expression.")]
    public string? Regex { get; init; }

    [Description("The claim is an email address whose domain (after the last @, any case) is one of these; never holds when email_verified is false.")]
    public IReadOnlyList<string>? EmailDomain { get; init; }

    [Description("The claim is present (true) or absent (false).")]
    public bool? Exists { get; init; }

    [Description("At least one of these rules holds.")]
    public IReadOnlyList<ClaimRuleOptions>? Any { get; init; }

    [Description("All of these rules hold.")]
    public IReadOnlyList<ClaimRuleOptions>? All { get; init; }
}

internal sealed record AssertionOptions
{
    [Description("Request header carrying the assertion. Default X-Portcullis-Assertion. Inbound copies are always removed.")]
    public string Header { get; init; } = "X-Portcullis-Assertion";

    [Description("`iss` of the assertion. Default portcullis.")]
    public string Issuer { get; init; } = "portcullis";

    [Description("Lifetime of one assertion (never beyond the caller's token). Default 60s.")]
    public TimeSpan Lifetime { get; init; } = TimeSpan.FromSeconds(60);

    [Description("Signing keys rotate this often; the previous key stays published for one more period. Default 24h.")]
    public TimeSpan RotateEvery { get; init; } = TimeSpan.FromHours(24);

    [Description("Path on the route listeners where the assertion's public keys are served as a JWKS. Default /.well-known/portcullis/jwks.json.")]
    public string JwksPath { get; init; } = "/.well-known/portcullis/jwks.json";

    [Description("PEM file of EC P-256 private keys shared by every instance of a fleet, so upstreams verify one JWKS: the first key signs, every key is published. Rotate by adding the next key at the end, then moving it first, then removing the old one. Watched. Without it each instance makes its own keys and rotates them every rotateEvery.")]
    [FilePath]
    public string? KeysFile { get; init; }
}
