using System.Collections.Frozen;
using Portcullis.Pipeline;

namespace Portcullis.Identity;

internal enum CredentialKind
{
    None,
    Jwt,
    ApiKey,

    /// <summary>A browser session started by signing in at an OIDC provider (identity.sessions).</summary>
    Session,

    /// <summary>An opaque bearer token found active by an introspection endpoint (RFC 7662).</summary>
    Introspection,

    /// <summary>A client certificate (mTLS) the listener's handshake validated against its CA bundle.</summary>
    ClientCertificate,
}

/// <summary>Who is calling, as proven by a token or an API key. Immutable; cached with the token.</summary>
internal sealed class CallerIdentity : ICaller
{
    public required CredentialKind Kind { get; init; }

    /// <summary>Issuer name (JWT), introspector name (introspection) or "apikey".</summary>
    public required string Source { get; init; }

    public string? Subject { get; init; }

    public string? Consumer { get; init; }

    public string? ConsumerGroup { get; init; }

    public string[] Groups { get; init; } = [];

    public FrozenSet<string> Scopes { get; init; } = FrozenSet<string>.Empty;

    /// <summary>Every claim as strings (arrays flattened), for rules and map lookups.</summary>
    public FrozenDictionary<string, string[]> Claims { get; init; } = FrozenDictionary<string, string[]>.Empty;

    /// <summary>Key id for API keys (never the secret).</summary>
    public string? KeyId { get; init; }

    public DateTimeOffset Expires { get; init; } = DateTimeOffset.MaxValue;

    /// <summary>Maps claims to an identity with an issuer's or introspector's claim mapping.</summary>
    public static CallerIdentity FromClaims(CredentialKind kind, string source, Configuration.ClaimMappingOptions mapping, FrozenDictionary<string, string[]> claims, DateTimeOffset expires)
    {
        string? First(string name) => claims.TryGetValue(name, out var v) && v.Length > 0 ? v[0] : null;

        var scopes = new HashSet<string>(StringComparer.Ordinal);
        foreach (var scopeClaim in mapping.Scopes)
        {
            if (!claims.TryGetValue(scopeClaim, out var values)) continue;
            foreach (var value in values) scopes.UnionWith(value.Split(' ', StringSplitOptions.RemoveEmptyEntries));
        }

        string? consumer = null;
        foreach (var consumerClaim in mapping.Consumer)
        {
            consumer = First(consumerClaim);
            if (consumer is not null) break;
        }

        return new CallerIdentity
        {
            Kind = kind,
            Source = source,
            Subject = First(mapping.Subject),
            Consumer = consumer,
            ConsumerGroup = mapping.ConsumerGroup is { } groupClaim ? First(groupClaim) : null,
            Groups = claims.TryGetValue(mapping.Groups, out var groups) ? groups : [],
            Scopes = scopes.ToFrozenSet(StringComparer.Ordinal),
            Claims = claims,
            Expires = expires,
        };
    }

    /// <summary>
    /// Header values, encoded for the wire (see <see cref="IdentityHeaderValue"/>) and joined once per identity
    /// rather than per request. Plain values are the very same strings (no copy).
    /// </summary>
    public string GroupsHeader => _groupsHeader ??= string.Join(",", Groups.Select(IdentityHeaderValue.EncodeListItem));

    public string ScopesHeader => _scopesHeader ??= string.Join(" ", Scopes.Order(StringComparer.Ordinal).Select(IdentityHeaderValue.Encode));

    /// <summary>The scopes space-separated, exact (for the assertion's `scope` claim).</summary>
    public string ScopesJoined => _scopesJoined ??= string.Join(" ", Scopes.Order(StringComparer.Ordinal));

    public string? SubjectHeader => Subject is null ? null : _subjectHeader ??= IdentityHeaderValue.Encode(Subject);

    public string? ConsumerHeader => Consumer is null ? null : _consumerHeader ??= IdentityHeaderValue.Encode(Consumer);

    public string? ConsumerGroupHeader => ConsumerGroup is null ? null : _consumerGroupHeader ??= IdentityHeaderValue.Encode(ConsumerGroup);

    private string? _groupsHeader;
    private string? _scopesHeader;
    private string? _scopesJoined;
    private string? _subjectHeader;
    private string? _consumerHeader;
    private string? _consumerGroupHeader;
}

/// <summary>The outcome of authenticating and authorizing one request, with a reason code for logs and metrics.</summary>
internal readonly record struct AuthDecision(int Status, Portcullis.Pipeline.ReasonCode Reason, CallerIdentity? Identity, string? Detail = null, string? ChallengeError = null, string? RequiredScope = null)
{
    public bool Allowed => Status == 0;

    public static AuthDecision Allow(CallerIdentity? identity, Portcullis.Pipeline.ReasonCode reason) => new(0, reason, identity);

    public static AuthDecision Unauthenticated(Portcullis.Pipeline.ReasonCode reason, string detail, bool tokenPresented) =>
        new(401, reason, null, detail, tokenPresented ? "invalid_token" : null);

    public static AuthDecision Forbidden(Portcullis.Pipeline.ReasonCode reason, string detail, CallerIdentity identity, string? scope = null) =>
        new(403, reason, identity, detail, scope is null ? null : "insufficient_scope", scope);

    public static AuthDecision Unavailable(Portcullis.Pipeline.ReasonCode reason, string detail) => new(503, reason, null, detail);
}
