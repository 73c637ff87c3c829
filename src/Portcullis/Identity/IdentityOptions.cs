using System.ComponentModel;

namespace Portcullis.Configuration;

/// <summary>Who may call: token issuers, API keys, and what the upstream is told about the caller.</summary>
public sealed record IdentityOptions
{
    [Description("Trusted JWT issuers (OIDC providers or local key files).")]
    public IReadOnlyList<IssuerOptions> Issuers { get; init; } = [];

    [Description("API keys: where clients send them and where the gateway keeps their hashes.")]
    public ApiKeyOptions? ApiKeys { get; init; }

    [Description("Request headers the upstream receives about the caller. Inbound copies are always removed.")]
    public IdentityHeadersOptions Headers { get; init; } = new();

    [Description("Largest bearer token accepted; larger ones are refused before any parsing. Default 16KiB.")]
    public ByteSize MaxTokenSize { get; init; } = ByteSize.FromKiB(16);

    [Description("Validated tokens remembered (by hash) so a repeat skips the signature check; entries expire no later than the token. Default 10000.")]
    public int TokenCacheSize { get; init; } = 10_000;
}

public sealed record IssuerOptions
{
    [Description("Issuer name used by routes' auth rules.")]
    public string Name { get; init; } = "";

    [Description("OIDC authority: discovery at {authority}/.well-known/openid-configuration gives the issuer and JWKS URI.")]
    public string? Authority { get; init; }

    [Description("JWKS URI, when there is no discovery document.")]
    public string? JwksUri { get; init; }

    [Description("Local JWKS file (reloaded when it changes), instead of fetching keys.")]
    public string? JwksFile { get; init; }

    [Description("Expected `iss` claim. Default: the discovery document's issuer, else the authority.")]
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

public sealed record ClaimMappingOptions
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

public sealed record KeyRefreshOptions
{
    [Description("Background refresh of discovery and JWKS. Default 10m.")]
    public TimeSpan RefreshInterval { get; init; } = TimeSpan.FromMinutes(10);

    [Description("A token with an unknown kid triggers at most one refresh per this interval. Default 30s.")]
    public TimeSpan UnknownKidRefreshInterval { get; init; } = TimeSpan.FromSeconds(30);

    [Description("When the provider is unreachable, cached keys keep serving this long after the last successful fetch; then the issuer fails closed. Default 1h.")]
    public TimeSpan StaleFor { get; init; } = TimeSpan.FromHours(1);

    [Description("Timeout of one fetch. Default 5s.")]
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(5);
}

public sealed record ApiKeyOptions
{
    [Description("Header carrying the key. Default X-Api-Key.")]
    public string Header { get; init; } = "X-Api-Key";

    [Description("Also accept the key from this query parameter (off by default: URLs end up in logs).")]
    public string? QueryParameter { get; init; }

    [Description("YAML file of consumers and their key hashes, managed by `portcullis keys`. Reloaded when it changes.")]
    public string File { get; init; } = "keys.yaml";
}

public sealed record IdentityHeadersOptions
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
public sealed record RouteAuthOptions
{
    [Description("Say explicitly that the route is public (no credentials needed).")]
    public bool Anonymous { get; init; }

    [Description("Issuers whose tokens are accepted (any one).")]
    public IReadOnlyList<string> Issuers { get; init; } = [];

    [Description("Accept API keys.")]
    public bool ApiKey { get; init; }

    [Description("Scopes the caller must have (all).")]
    public IReadOnlyList<string> Scopes { get; init; } = [];

    [Description("The caller must be in one of these groups.")]
    public IReadOnlyList<string> Groups { get; init; } = [];

    [Description("Only these consumers may call.")]
    public IReadOnlyList<string> Consumers { get; init; } = [];

    [Description("Claim rules: all listed must hold. Each names a claim and one of is, oneOf, contains, regex, exists; `any` / `all` nest rules.")]
    public IReadOnlyList<ClaimRuleOptions> Claims { get; init; } = [];

    [Description("Keep the inbound Authorization / API key header when proxying. Default false (stripped).")]
    public bool ForwardCredentials { get; init; }
}

public sealed record ClaimRuleOptions
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

    [Description("The claim is present (true) or absent (false).")]
    public bool? Exists { get; init; }

    [Description("At least one of these rules holds.")]
    public IReadOnlyList<ClaimRuleOptions>? Any { get; init; }

    [Description("All of these rules hold.")]
    public IReadOnlyList<ClaimRuleOptions>? All { get; init; }
}
