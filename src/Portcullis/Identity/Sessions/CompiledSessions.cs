using System.Collections.Frozen;
using Portcullis.Configuration;

namespace Portcullis.Identity.Sessions;

/// <summary>One OIDC provider browsers sign in with, compiled once per snapshot.</summary>
internal sealed class CompiledSessionProvider
{
    public required string Name { get; init; }

    public required Uri Authority { get; init; }

    public required string ClientId { get; init; }

    /// <summary>The client secret (resolved from the environment or a file); null for a public client. Never logged.</summary>
    public required string? ClientSecret { get; init; }

    /// <summary>Extra authorization request parameters (prompt, acr_values ...), validated not to touch the flow's own.</summary>
    public FrozenDictionary<string, string> AuthorizationParameters { get; init; } = FrozenDictionary<string, string>.Empty;

    public required string[] Scopes { get; init; }

    public required string CallbackPath { get; init; }

    /// <summary>Where the provider sends the browser back after its end_session_endpoint.</summary>
    public required string SignedOutPath { get; init; }

    public required ClaimMappingOptions Claims { get; init; }

    public required string CookieName { get; init; }

    public string OidcScheme => "portcullis.oidc." + Name;

    public string CookieScheme => "portcullis.session." + Name;

    public override string ToString() => $"{Name} ({Authority})";
}

/// <summary>identity.sessions, compiled: providers, cookie, store and paths.</summary>
internal sealed class CompiledSessions
{
    public const string PathPrefix = "/.portcullis/";

    public const string CorrelationCookiePrefix = ".portcullis.correlation.";

    public const string NonceCookiePrefix = ".portcullis.nonce.";

    public required FrozenDictionary<string, CompiledSessionProvider> Providers { get; init; }

    public required string CookieName { get; init; }

    public string? CookieDomain { get; init; }

    public required TimeSpan IdleTimeout { get; init; }

    public required TimeSpan AbsoluteTimeout { get; init; }

    public required SessionStoreKind Store { get; init; }

    public required int MaxSessions { get; init; }

    public required string LogoutPath { get; init; }

    /// <summary>GET {LoginPath}/{provider}?rd=/path starts a sign-in explicitly.</summary>
    public string LoginPath { get; init; } = "/.portcullis/login";

    public required TimeSpan RefreshBefore { get; init; }

    /// <summary>Sign-ins one client address may start per minute; 0 = no limit.</summary>
    public int SignInsPerMinute { get; init; } = 30;

    /// <summary>Redis connection and key prefix when Store is redis.</summary>
    public string? RedisConnection { get; init; }

    public string RedisKeyPrefix { get; init; } = "portcullis:";

    /// <summary>stores.redis (connection, timeout, circuit breaker) when Store is redis.</summary>
    public RedisStoreOptions? Redis { get; init; }

    /// <summary>Encrypts the Data Protection key ring kept in Redis; null for the local store or keyRing.unprotected.</summary>
    public System.Security.Cryptography.X509Certificates.X509Certificate2? KeyRingCertificate { get; init; }

    /// <summary>What the authentication schemes were built from; a reload that changes it needs a restart.</summary>
    public required string Fingerprint { get; init; }
}

/// <summary>The emailDomain claim test: the address's domain is listed, and the provider did not say it is unverified.</summary>
internal static class EmailDomainRule
{
    public static bool Holds(CallerIdentity identity, string[] values, FrozenSet<string> domains)
    {
        if (identity.Claims.TryGetValue("email_verified", out var verified) && verified.Length > 0 && string.Equals(verified[0], "false", StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        foreach (var value in values)
        {
            var at = value.LastIndexOf('@');
            if (at <= 0 || at == value.Length - 1) continue;
            if (domains.Contains(value[(at + 1)..].ToLowerInvariant())) return true;
        }

        return false;
    }
}
