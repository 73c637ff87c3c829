using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Portcullis.Identity;

/// <summary>Settings of the gateway-signed identity assertion, compiled from identity.assertion.</summary>
internal sealed record AssertionSettings(string Header, string Issuer, TimeSpan Lifetime, TimeSpan RotateEvery);

/// <summary>
/// Signs short-lived, audience-scoped JWTs that tell an upstream who called (ES256, always with a
/// `kid`). Keys live in memory and rotate on a schedule; the previous key stays published until every
/// assertion it signed has expired, so verifiers never see an unknown kid. An assertion is reused for
/// the same caller and audience until half its lifetime is gone, so signing is rare on the request path.
/// </summary>
internal sealed class AssertionSigner : IDisposable
{
    private readonly TimeProvider _time;
    private readonly JsonWebTokenHandler _handler = new() { SetDefaultTimesOnTokenCreation = false };
    private readonly ConditionalWeakTable<CallerIdentity, AssertionCache> _issued = new();
    private readonly Lock _rotateLock = new();
    private volatile KeyRing _ring;

    public AssertionSigner(TimeProvider time)
    {
        _time = time;
        _ring = new KeyRing(NewKey(time.GetUtcNow()), null);
    }

    private sealed record SigningKey(ECDsa Ecdsa, ECDsaSecurityKey Key, SigningCredentials Credentials, DateTimeOffset Created);

    private sealed record KeyRing(SigningKey Current, SigningKey? Previous);

    private sealed class AssertionCache
    {
        public readonly Lock Gate = new();
        public readonly Dictionary<string, (string Token, DateTimeOffset RenewAt, string Kid)> ByAudience = new(StringComparer.Ordinal);
    }

    public string CurrentKeyId => _ring.Current.Key.KeyId;

    public string Sign(CallerIdentity identity, string audience, AssertionSettings settings)
    {
        var now = _time.GetUtcNow();
        var ring = Rotate(now, settings);
        var cache = _issued.GetOrCreateValue(identity);
        lock (cache.Gate)
        {
            if (cache.ByAudience.TryGetValue(audience, out var issued) && issued.RenewAt > now && issued.Kid == ring.Current.Key.KeyId)
            {
                return issued.Token;
            }
        }

        var expires = now + settings.Lifetime;
        if (identity.Expires < expires) expires = identity.Expires;
        var claims = new Dictionary<string, object>(StringComparer.Ordinal)
        {
            ["sub"] = identity.Subject ?? identity.Consumer ?? "",
            ["src"] = identity.Source,
            ["jti"] = Guid.NewGuid().ToString("N"),
        };
        if (identity.Consumer is not null) claims["consumer"] = identity.Consumer;
        if (identity.ConsumerGroup is not null) claims["consumer_group"] = identity.ConsumerGroup;
        if (identity.Groups.Length > 0) claims["groups"] = identity.Groups;
        if (identity.Scopes.Count > 0) claims["scope"] = identity.ScopesJoined;

        var token = _handler.CreateToken(new SecurityTokenDescriptor
        {
            Issuer = settings.Issuer,
            Audience = audience,
            IssuedAt = now.UtcDateTime,
            NotBefore = now.UtcDateTime,
            Expires = expires.UtcDateTime,
            Claims = claims,
            SigningCredentials = ring.Current.Credentials,
            TokenType = "JWT",
        });
        lock (cache.Gate)
        {
            cache.ByAudience[audience] = (token, now + (expires - now) / 2, ring.Current.Key.KeyId);
        }

        return token;
    }

    /// <summary>The public keys as a JWKS document (current and, during overlap, previous).</summary>
    public string JwksJson()
    {
        var ring = _ring;
        var keys = new List<object> { Jwk(ring.Current) };
        if (ring.Previous is not null) keys.Add(Jwk(ring.Previous));
        return JsonSerializer.Serialize(new { keys });
    }

    private static object Jwk(SigningKey key)
    {
        var parameters = key.Ecdsa.ExportParameters(false);
        return new
        {
            kty = "EC",
            use = "sig",
            alg = "ES256",
            crv = "P-256",
            kid = key.Key.KeyId,
            x = Base64UrlEncoder.Encode(parameters.Q.X!),
            y = Base64UrlEncoder.Encode(parameters.Q.Y!),
        };
    }

    private KeyRing Rotate(DateTimeOffset now, AssertionSettings settings)
    {
        var ring = _ring;
        if (now - ring.Current.Created < settings.RotateEvery) return ring;
        lock (_rotateLock)
        {
            ring = _ring;
            if (now - ring.Current.Created < settings.RotateEvery) return ring;
            // The previous key stays published for one more period: longer than any assertion lives.
            var next = new KeyRing(NewKey(now), ring.Current);
            // The key that drops out is left to the GC: a concurrent JwksJson() may still be reading it.
            _ring = next;
            return next;
        }
    }

    private static SigningKey NewKey(DateTimeOffset now)
    {
        var ecdsa = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var kid = Base64UrlEncoder.Encode(SHA256.HashData(ecdsa.ExportSubjectPublicKeyInfo()).AsSpan(0, 12).ToArray());
        var key = new ECDsaSecurityKey(ecdsa) { KeyId = kid };
        return new SigningKey(ecdsa, key, new SigningCredentials(key, SecurityAlgorithms.EcdsaSha256), now);
    }

    public void Dispose()
    {
        var ring = _ring;
        ring.Current.Ecdsa.Dispose();
        ring.Previous?.Ecdsa.Dispose();
    }
}
