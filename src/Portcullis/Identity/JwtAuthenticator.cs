using System.Collections.Frozen;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json;
using BitFaster.Caching;
using BitFaster.Caching.Lru;
using Microsoft.Extensions.Logging;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Portcullis.Pipeline;

namespace Portcullis.Identity;

/// <summary>
/// Validates bearer JWTs with Microsoft.IdentityModel against an issuer's cached keys. A validated token
/// is remembered (keyed by the SHA-256 of the token, bounded, expiring no later than the token) so a
/// repeat costs a hash and a dictionary lookup instead of a signature check. A remembered token is only
/// honoured for the very issuer settings it was validated with (a reload re-validates it), while that
/// issuer's keys are fresh or inside the stale window, and while its key is still published.
/// </summary>
internal sealed partial class JwtAuthenticator
{
    private static readonly JsonDocumentOptions StrictJson = new() { AllowDuplicateProperties = false, MaxDepth = 16 };
    private static readonly string[] AccessTokenTypes = ["at+jwt", "application/at+jwt"];
    private static readonly string[] NumericDateClaims = ["exp", "nbf", "iat"];

    private readonly IssuerRegistry _issuers;
    private readonly TimeProvider _time;
    private readonly ILogger<JwtAuthenticator> _logger;
    private readonly JsonWebTokenHandler _handler = new() { MapInboundClaims = false };
    private readonly ICache<TokenHash, Validated> _validated;

    public JwtAuthenticator(IssuerRegistry issuers, TimeProvider time, ILogger<JwtAuthenticator> logger, int cacheSize = 10_000)
    {
        _issuers = issuers;
        _time = time;
        _logger = logger;
        _validated = new ConcurrentLruBuilder<TokenHash, Validated>()
            .WithCapacity(Math.Max(16, cacheSize))
            .WithExpireAfter(new TokenExpiry(time))
            .WithMetrics()
            .Build();
    }

    /// <summary>Hits and misses of the token cache (read by metrics).</summary>
    internal BitFaster.Caching.ICacheMetrics? CacheMetrics => _validated.Metrics.HasValue ? _validated.Metrics.Value : null;

    /// <summary>Authenticates "Bearer …" against the route's issuers.</summary>
    public ValueTask<AuthDecision> AuthenticateAsync(string authorization, CompiledRouteAuth auth, int maxTokenBytes)
    {
        var span = authorization.AsSpan(7).Trim();
        if (span.Length == 0) return ValueTask.FromResult(Invalid(ReasonCodes.JwtMissing, "The bearer token is empty."));
        if (span.Length > maxTokenBytes) return ValueTask.FromResult(Invalid(ReasonCodes.JwtTooLarge, "The bearer token is too large."));

        var hash = TokenHash.Of(span);
        if (_validated.TryGet(hash, out var cached) && cached.Identity.Expires > _time.GetUtcNow() && IsStillTrusted(cached, auth))
        {
            return ValueTask.FromResult(AuthDecision.Allow(cached.Identity, ReasonCodes.JwtCached));
        }

        // Not remembered, or remembered for other issuer settings (another issuer entry with the same iss,
        // or a snapshot before a reload), or its keys are no longer trusted: validate in full.
        return ValidateAsync(span.ToString(), hash, auth);
    }

    private bool IsStillTrusted(Validated cached, CompiledRouteAuth auth)
    {
        foreach (var issuer in auth.Issuers)
        {
            if (!ReferenceEquals(issuer, cached.Issuer)) continue;
            if (issuer.SharedKey is not null) return true;
            if (_issuers.Get(issuer.Name) is not { Availability: KeyAvailability.Available, Keys: { } keys }) return false;
            return cached.Kid is null || keys.ByKid.ContainsKey(cached.Kid);
        }

        return false;
    }

    private async ValueTask<AuthDecision> ValidateAsync(string token, TokenHash hash, CompiledRouteAuth auth)
    {
        JsonWebToken jwt;
        try
        {
            jwt = _handler.ReadJsonWebToken(token);
        }
        catch (Exception ex) when (ex is ArgumentException or SecurityTokenException or FormatException or JsonException)
        {
            return Invalid(ReasonCodes.JwtMalformed, "The bearer token is not a well-formed JWT.");
        }

        if (CheckHeader(jwt) is { } refused) return refused;

        var iss = jwt.Issuer;
        var (issuer, cache, keys) = MatchIssuer(auth, iss);
        if (issuer is null || (cache is null && issuer.SharedKey is null))
        {
            return Invalid(ReasonCodes.JwtIssuer, "The token's issuer is not accepted here.");
        }

        if (issuer.SharedKey is null)
        {
            if (keys is null) return AuthDecision.Unavailable(ReasonCodes.JwtKeysLoading, "The token issuer's keys are not loaded yet.");
            if (cache!.Availability == KeyAvailability.Expired)
            {
                return AuthDecision.Unavailable(ReasonCodes.JwtKeysExpired, "The token issuer's keys could not be refreshed.");
            }
        }

        var kid = jwt.Kid;
        if (issuer.SharedKey is null && !string.IsNullOrEmpty(kid) && !keys!.ByKid.ContainsKey(kid))
        {
            // Maybe the provider rotated: wait (bounded, single flight, rate-limited per issuer) for a refresh.
            if (!await cache!.RefreshForUnknownKidAsync(kid).ConfigureAwait(false))
            {
                return Invalid(ReasonCodes.JwtUnknownKid, "The token was signed with an unknown key.");
            }

            keys = cache.Keys;
            if (keys is null || !issuer.Matches(iss, keys)) return Invalid(ReasonCodes.JwtIssuer, "The token's issuer is not accepted here.");
        }

        var algorithms = new AlgorithmCheck(issuer.Algorithms);
        var result = await _handler.ValidateTokenAsync(jwt, Parameters(issuer, keys, algorithms)).ConfigureAwait(false);
        if (!result.IsValid)
        {
            var reason = algorithms.Refine(Reason(result.Exception));
            Log.Rejected(_logger, issuer.Name, reason);
            return Invalid(reason, "The bearer token is not valid.");
        }

        if (CheckClaims(issuer, jwt) is { } missing) return missing;
        var identity = BuildIdentity(issuer, jwt);
        _validated.AddOrUpdate(hash, new Validated(identity, issuer, string.IsNullOrEmpty(kid) ? null : kid));
        return AuthDecision.Allow(identity, ReasonCodes.JwtValid);
    }

    /// <summary>Refusals decided by the token's shape alone, before any issuer or key is looked at.</summary>
    private static AuthDecision? CheckHeader(JsonWebToken jwt)
    {
        if (jwt.IsEncrypted) return Invalid(ReasonCodes.JwtEncrypted, "Encrypted tokens are not accepted.");
        if (jwt.TryGetHeaderValue<object>("crit", out _)) return Invalid(ReasonCodes.JwtCritUnsupported, "The token requires extensions this gateway does not support.");
        if (StructureProblem(jwt) is { } problem)
        {
            return Invalid(problem, problem == ReasonCodes.JwtMalformed ? "The bearer token is not a well-formed JWT." : "The bearer token's exp, nbf or iat is not a number.");
        }

        return null;
    }

    /// <summary>The route's first issuer that accepts <paramref name="iss"/>, with the keys it was matched against (read once).</summary>
    private (CompiledIssuer? Issuer, IssuerKeyCache? Cache, IssuerKeySet? Keys) MatchIssuer(CompiledRouteAuth auth, string iss)
    {
        foreach (var candidate in auth.Issuers)
        {
            var candidateCache = _issuers.Get(candidate.Name);
            var candidateKeys = candidateCache?.Keys;
            if (candidate.Matches(iss, candidateKeys)) return (candidate, candidateCache, candidateKeys);
        }

        return (null, null, null);
    }

    private TokenValidationParameters Parameters(CompiledIssuer issuer, IssuerKeySet? keys, AlgorithmCheck algorithms) => new()
    {
        ValidateIssuer = false, // matched above against the configured or discovered issuer
        ValidAudiences = issuer.Audiences,
        ValidateAudience = issuer.Audiences.Length > 0,
        ValidAlgorithms = issuer.Algorithms,
        AlgorithmValidator = (algorithm, key, _, _) => algorithms.Validate(algorithm, key),
        ClockSkew = issuer.ClockSkew,
        RequireExpirationTime = Array.IndexOf(issuer.RequiredClaims, "exp") >= 0,
        RequireSignedTokens = true,
        ValidTypes = issuer.RequireAccessTokenType ? AccessTokenTypes : null,
        IssuerSigningKeyResolver = (_, _, keyId, _) => ResolveKeys(issuer, keys, keyId),
        LifetimeValidator = (notBefore, expires, _, p) => ValidateLifetime(notBefore, expires, p),
    };

    /// <summary>Required claims present and not issued in the future; null when the token passes.</summary>
    private AuthDecision? CheckClaims(CompiledIssuer issuer, JsonWebToken jwt)
    {
        foreach (var claim in issuer.RequiredClaims)
        {
            if (!jwt.TryGetPayloadValue<object>(claim, out _)) return Invalid(ReasonCodes.JwtMissingClaim, "The bearer token lacks a required claim.");
        }

        // Issued in the future (beyond the clock skew): a provider's clock gone wrong or a token minted to
        // outlive its keys; RFC 7519 leaves it to the verifier, and every exp/nbf skew argument applies.
        if (jwt.IssuedAt != DateTime.MinValue && jwt.IssuedAt > _time.GetUtcNow().UtcDateTime + issuer.ClockSkew)
        {
            Log.Rejected(_logger, issuer.Name, ReasonCodes.JwtIatFuture);
            return Invalid(ReasonCodes.JwtIatFuture, "The bearer token was issued in the future.");
        }

        return null;
    }

    /// <summary>
    /// A key that declares its `alg` verifies only that algorithm (RFC 7517 §4.4): a PS256 token is not
    /// checked with an RS256 key. Called per key tried; IdentityModel then reports "no key verified it", so
    /// the flags keep the reason (an unlisted algorithm, or one the key does not declare).
    /// </summary>
    private sealed class AlgorithmCheck(string[] algorithms)
    {
        private bool _unlisted;
        private bool _mismatch;

        public bool Validate(string algorithm, SecurityKey key)
        {
            if (Array.IndexOf(algorithms, algorithm) < 0)
            {
                _unlisted = true;
                return false;
            }

            if (key is JsonWebKey { Alg: { Length: > 0 } declared } && !string.Equals(declared, algorithm, StringComparison.Ordinal))
            {
                _mismatch = true;
                return false;
            }

            return true;
        }

        /// <summary>The refusal's reason, with what the algorithm checks saw.</summary>
        public ReasonCode Refine(ReasonCode reason)
        {
            // An unknown kid never gets here (refused before validation). IdentityModel reports "no key verified it" as
            // key-not-found when the token has no kid (every key is tried) or the issuer's shared secret has
            // none to match: either way it is a bad signature.
            if (reason == ReasonCodes.JwtUnknownKid) reason = ReasonCodes.JwtSignature;
            if (reason == ReasonCodes.JwtSignature || reason == ReasonCodes.JwtAlgorithm)
            {
                if (_unlisted) reason = ReasonCodes.JwtAlgorithm;
                else if (_mismatch) reason = ReasonCodes.JwtAlgMismatch;
            }

            return reason;
        }
    }

    // Lifetime against our TimeProvider, so tests control time.
    private bool ValidateLifetime(DateTime? notBefore, DateTime? expires, TokenValidationParameters parameters)
    {
        var now = _time.GetUtcNow().UtcDateTime;
        if (expires is null && parameters.RequireExpirationTime) throw new SecurityTokenNoExpirationException("no exp");
        if (notBefore is { } nbf && nbf > now + parameters.ClockSkew) throw new SecurityTokenNotYetValidException("nbf in the future");
        if (expires is { } exp && exp < now - parameters.ClockSkew) throw new SecurityTokenExpiredException("expired");
        return true;
    }

    private static SecurityKey[] ResolveKeys(CompiledIssuer issuer, IssuerKeySet? keys, string? kid)
    {
        if (issuer.SharedKey is not null) return [issuer.SharedKey];
        if (keys is null) return [];
        if (!string.IsNullOrEmpty(kid)) return keys.ByKid.TryGetValue(kid, out var key) ? [key] : [];
        return keys.All;
    }

    private static AuthDecision Invalid(ReasonCode reason, string detail) => AuthDecision.Unauthenticated(reason, detail, true);

    private static ReasonCode Reason(Exception? exception) => exception switch
    {
        SecurityTokenExpiredException => ReasonCodes.JwtExpired,
        SecurityTokenNotYetValidException => ReasonCodes.JwtNotYetValid,
        SecurityTokenInvalidAudienceException => ReasonCodes.JwtAudience,
        SecurityTokenInvalidIssuerException => ReasonCodes.JwtIssuer,
        SecurityTokenNoExpirationException => ReasonCodes.JwtMissingExp,
        SecurityTokenInvalidAlgorithmException => ReasonCodes.JwtAlgorithm,
        SecurityTokenInvalidTypeException => ReasonCodes.JwtType,
        SecurityTokenSignatureKeyNotFoundException => ReasonCodes.JwtUnknownKid,
        SecurityTokenInvalidSignatureException => ReasonCodes.JwtSignature,
        SecurityTokenInvalidLifetimeException => ReasonCodes.JwtLifetime,
        _ => ReasonCodes.JwtInvalid,
    };

    /// <summary>
    /// jwt.malformed for headers or payloads with duplicate JSON members (parsers disagree on which wins);
    /// jwt.malformed-claim when exp, nbf or iat is not a JSON number (RFC 7519 §2 NumericDate): IdentityModel
    /// reads `"exp":"1735689600"` as a date, other verifiers do not. Null when neither.
    /// </summary>
    private static ReasonCode? StructureProblem(JsonWebToken jwt)
    {
        try
        {
            using (JsonDocument.Parse(Base64UrlEncoder.DecodeBytes(jwt.EncodedHeader), StrictJson))
            using (var payload = JsonDocument.Parse(Base64UrlEncoder.DecodeBytes(jwt.EncodedPayload), StrictJson))
            {
                var root = payload.RootElement;
                if (root.ValueKind != JsonValueKind.Object) return ReasonCodes.JwtMalformed;
                foreach (var name in NumericDateClaims)
                {
                    if (root.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Number) return ReasonCodes.JwtMalformedClaim;
                }

                return null;
            }
        }
        catch (Exception ex) when (ex is JsonException or FormatException or ArgumentException)
        {
            return ReasonCodes.JwtMalformed;
        }
    }

    private CallerIdentity BuildIdentity(CompiledIssuer issuer, JsonWebToken jwt)
    {
        var claims = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (var claim in jwt.Claims)
        {
            if (!claims.TryGetValue(claim.Type, out var list)) claims[claim.Type] = list = [];
            list.Add(claim.Value);
        }

        var frozen = claims.ToFrozenDictionary(c => c.Key, c => c.Value.ToArray(), StringComparer.Ordinal);
        var expires = jwt.ValidTo == DateTime.MinValue ? _time.GetUtcNow().AddMinutes(5) : new DateTimeOffset(jwt.ValidTo, TimeSpan.Zero);
        return CallerIdentity.FromClaims(CredentialKind.Jwt, issuer.Name, issuer.Claims, frozen, expires);
    }

    /// <summary>A validated token: who it proved, with which issuer settings, signed by which key.</summary>
    private sealed record Validated(CallerIdentity Identity, CompiledIssuer Issuer, string? Kid);

    /// <summary>Cache entries live until the token expires (a hit re-checks against TimeProvider too).</summary>
    private sealed class TokenExpiry(TimeProvider time) : IExpiryCalculator<TokenHash, Validated>
    {
        public Duration GetExpireAfterCreate(TokenHash key, Validated value)
        {
            var remaining = value.Identity.Expires - time.GetUtcNow();
            return Duration.FromTimeSpan(remaining < TimeSpan.Zero ? TimeSpan.Zero : remaining > TimeSpan.FromHours(24) ? TimeSpan.FromHours(24) : remaining);
        }

        public Duration GetExpireAfterRead(TokenHash key, Validated value, Duration current) => current;

        public Duration GetExpireAfterUpdate(TokenHash key, Validated value, Duration current) => GetExpireAfterCreate(key, value);
    }

    private static partial class Log
    {
        [LoggerMessage(4101, LogLevel.Debug, "Token from issuer {Issuer} rejected: {Reason}")]
        public static partial void Rejected(ILogger logger, string issuer, string reason);
    }
}
