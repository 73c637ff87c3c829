using System.Collections.Frozen;
using System.Text.RegularExpressions;
using Microsoft.IdentityModel.Tokens;
using Portcullis.Configuration;

namespace Portcullis.Identity;

/// <summary>An issuer's validation settings, compiled once per snapshot.</summary>
internal sealed class CompiledIssuer
{
    public required string Name { get; init; }

    public required IssuerKeySource KeySource { get; init; }

    /// <summary>Expected `iss`; when null, the discovery document's issuer (else the authority) is expected.</summary>
    public string? ConfiguredIssuer { get; init; }

    public string[] Audiences { get; init; } = [];

    public string[] Algorithms { get; init; } = [];

    public TimeSpan ClockSkew { get; init; }

    public string[] RequiredClaims { get; init; } = [];

    public bool RequireAccessTokenType { get; init; }

    public required ClaimMappingOptions Claims { get; init; }

    public SecurityKey? SharedKey { get; init; }

    public string? ExpectedIssuer(IssuerKeySet? keys) => ConfiguredIssuer ?? keys?.DiscoveredIssuer ?? KeySource.Authority;

    /// <summary>
    /// Exact, ordinal comparison (OIDC Discovery 1.0 §4.3): `https://idp/` and `https://idp` are different issuers.
    /// Only before the first fetch, when the authority stands in for the issuer discovery will name, is a trailing
    /// '/' ignored: that picks the issuer whose keys are loading (503 jwt.keys-loading) and never accepts a token.
    /// </summary>
    public bool Matches(string iss, IssuerKeySet? keys)
    {
        var expected = ExpectedIssuer(keys);
        if (expected is null) return false;
        if (string.Equals(iss, expected, StringComparison.Ordinal)) return true;
        return keys is null && ConfiguredIssuer is null && KeySource.Authority is not null
            && iss.AsSpan().TrimEnd('/').SequenceEqual(expected.AsSpan().TrimEnd('/'));
    }
}

/// <summary>An introspection endpoint (RFC 7662) and how its answers are cached and mapped, compiled once per snapshot.</summary>
internal sealed class CompiledIntrospector
{
    public required string Name { get; init; }

    public required Uri Endpoint { get; init; }

    public required string ClientId { get; init; }

    /// <summary>"Basic base64(urlencode(id):urlencode(secret))" (RFC 7662 §2.1, RFC 6749 §2.3.1), built once.</summary>
    public required string BasicCredentials { get; init; }

    public TimeSpan CacheTtl { get; init; } = TimeSpan.FromSeconds(60);

    public TimeSpan NegativeTtl { get; init; } = TimeSpan.FromSeconds(10);

    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(5);

    public required ClaimMappingOptions Claims { get; init; }

    /// <summary>
    /// Identifies what a cached answer depends on (name, endpoint, client id, claim mapping) but not the
    /// secret: a reload that changes any of these stops reusing earlier answers.
    /// </summary>
    public required string CacheScope { get; init; }
}

/// <summary>A route's access rule, compiled: deny by default once a route has `auth`.</summary>
internal sealed class CompiledRouteAuth
{
    public bool Anonymous { get; init; }

    public CompiledIssuer[] Issuers { get; init; } = [];

    public CompiledIntrospector[] Introspectors { get; init; } = [];

    public bool ApiKey { get; init; }

    /// <summary>Browser route: the identity.sessions provider name (the session decides, not a bearer token).</summary>
    public string? Session { get; init; }

    /// <summary>Accept the client certificate the listener's handshake validated (mTLS).</summary>
    public bool ClientCertificate { get; init; }

    /// <summary>Request header that carries the client certificate (URL-encoded PEM) to the upstream; null: never sent.</summary>
    public string? ForwardCertificate { get; init; }

    public string[] Scopes
    {
        get;
        init
        {
            field = value;
            ScopesJoined = string.Join(' ', value);
        }
    } = [];

    /// <summary>The required scopes as one space-separated string (the insufficient_scope refusal names them).</summary>
    public string ScopesJoined { get; private init; } = "";

    public FrozenSet<string> Groups { get; init; } = FrozenSet<string>.Empty;

    public FrozenSet<string> Consumers { get; init; } = FrozenSet<string>.Empty;

    public ClaimRule? Rule { get; init; }

    public bool ForwardCredentials { get; init; }

    /// <summary>Audience of the identity assertion (route's assertionAudience, else its cluster, else its name).</summary>
    public string AssertionAudience { get; init; } = "";

    public bool AcceptsJwt => Issuers.Length > 0;

    public bool AcceptsIntrospection => Introspectors.Length > 0;
}

/// <summary>A claim rule tree: leaves test one claim, `Any` / `All` combine.</summary>
internal sealed class ClaimRule
{
    public string? Claim { get; init; }

    public string? Is { get; init; }

    public FrozenSet<string>? OneOf { get; init; }

    public string? Contains { get; init; }

    public Regex? Pattern { get; init; }

    /// <summary>Email domains (lower case, no @): the claim's address must be in one; never with email_verified false.</summary>
    public FrozenSet<string>? EmailDomains { get; init; }

    public bool? Exists { get; init; }

    public ClaimRule[]? Any { get; init; }

    public ClaimRule[]? All { get; init; }

    public bool Evaluate(CallerIdentity identity)
    {
        if (All is not null)
        {
            foreach (var rule in All) if (!rule.Evaluate(identity)) return false;
        }

        if (Any is not null)
        {
            var any = false;
            foreach (var rule in Any)
            {
                if (rule.Evaluate(identity))
                {
                    any = true;
                    break;
                }
            }

            if (!any) return false;
        }

        if (Claim is null) return true;
        var present = identity.Claims.TryGetValue(Claim, out var values) && values.Length > 0;
        if (Exists is { } exists && exists != present) return false;
        if (!present) return Is is null && OneOf is null && Contains is null && Pattern is null && EmailDomains is null;
        if (Is is not null && Array.IndexOf(values!, Is) < 0) return false;
        if (OneOf is not null && !values!.Any(OneOf.Contains)) return false;
        if (Contains is not null && !values!.Any(v => v.Contains(Contains, StringComparison.Ordinal))) return false;
        if (Pattern is not null && !values!.Any(v => Pattern.IsMatch(v))) return false;
        if (EmailDomains is not null && !Sessions.EmailDomainRule.Holds(identity, values!, EmailDomains)) return false;
        return true;
    }
}
