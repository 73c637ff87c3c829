using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Portcullis.Identity;

/// <summary>Settings of the gateway-signed identity assertion, compiled from identity.assertion.</summary>
internal sealed record AssertionSettings(string Header, string Issuer, TimeSpan Lifetime, TimeSpan RotateEvery)
{
    /// <summary>The fleet's keys from identity.assertion.keysFile (the first signs, all are published); null: this instance's own keys.</summary>
    public AssertionKeys? SharedKeys { get; init; }
}

/// <summary>
/// Keys shared by every instance (identity.assertion.keysFile): EC P-256 private keys in one PEM file, read when the
/// configuration is compiled. The first signs; every one is in the JWKS, so a next key can be published everywhere
/// before any instance signs with it, and an old one stays verifiable until its assertions have expired.
/// </summary>
internal sealed class AssertionKeys
{
    private AssertionKeys(IReadOnlyList<AssertionSigner.SigningKey> keys) => Keys = keys;

    public IReadOnlyList<AssertionSigner.SigningKey> Keys { get; }

    public AssertionSigner.SigningKey Current => Keys[0];

    public static AssertionKeys? Load(Configuration.CompileContext context, string file)
    {
        const string path = "identity.assertion.keysFile";
        var full = context.Loaded.Resolve(file);
        context.Files.Add(full);
        string pem;
        try
        {
            pem = File.ReadAllText(full);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            context.Error(path, $"cannot read assertion keys file '{file}' ({full}): {Configuration.ConfigLoader.Describe(ex)}",
                "create one with: openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " + file);
            return null;
        }

        // The content is a secret: only its digest goes into the fingerprint, so a rotated file reloads.
        context.FileContents.Add("secret:" + Convert.ToHexStringLower(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(pem))));
        var keys = new List<AssertionSigner.SigningKey>();
        var created = context.Now;
        foreach (var block in PemBlocks(pem))
        {
            var ecdsa = ECDsa.Create();
            try
            {
                ecdsa.ImportFromPem(block);
            }
            catch (Exception ex) when (ex is ArgumentException or CryptographicException)
            {
                ecdsa.Dispose();
                context.Error(path, $"assertion keys file '{file}': key {keys.Count + 1} is not an EC private key in PEM ({ex.Message})", "each key is a -----BEGIN PRIVATE KEY----- (PKCS#8) or -----BEGIN EC PRIVATE KEY----- block");
                return null;
            }

            if (ecdsa.KeySize != 256 || ecdsa.ExportParameters(false).Curve.Oid.FriendlyName is not ("nistP256" or "ECDSA_P256"))
            {
                ecdsa.Dispose();
                context.Error(path, $"assertion keys file '{file}': key {keys.Count + 1} is not on curve P-256 (ES256)", "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256");
                return null;
            }

            keys.Add(AssertionSigner.SigningKey.From(ecdsa, created));
        }

        if (keys.Count == 0)
        {
            context.Error(path, $"assertion keys file '{file}' holds no private key", "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 >> " + file);
            return null;
        }

        if (keys.Select(k => k.Key.KeyId).Distinct(StringComparer.Ordinal).Count() != keys.Count)
        {
            context.Error(path, $"assertion keys file '{file}' holds the same key twice", "keep one copy of each key");
            return null;
        }

        return new AssertionKeys(keys);
    }

    private static IEnumerable<string> PemBlocks(string pem)
    {
        var at = 0;
        while (true)
        {
            var begin = pem.IndexOf("-----BEGIN ", at, StringComparison.Ordinal);
            if (begin < 0) yield break;
            var endMarker = pem.IndexOf("-----END ", begin, StringComparison.Ordinal);
            if (endMarker < 0) yield break;
            var end = pem.IndexOf("-----", endMarker + 9, StringComparison.Ordinal);
            if (end < 0) yield break;
            at = end + 5;
            var block = pem[begin..at];
            if (block.Contains("PRIVATE KEY-----", StringComparison.Ordinal)) yield return block;
        }
    }
}

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

    internal sealed record SigningKey(ECDsa Ecdsa, ECDsaSecurityKey Key, SigningCredentials Credentials, DateTimeOffset Created)
    {
        /// <summary>A key and its `kid`: the base64url of the first 12 bytes of its public key's SHA-256 (the same on every instance).</summary>
        public static SigningKey From(ECDsa ecdsa, DateTimeOffset created)
        {
            var kid = Base64UrlEncoder.Encode(SHA256.HashData(ecdsa.ExportSubjectPublicKeyInfo()).AsSpan(0, 12).ToArray());
            var key = new ECDsaSecurityKey(ecdsa) { KeyId = kid };
            return new SigningKey(ecdsa, key, new SigningCredentials(key, SecurityAlgorithms.EcdsaSha256), created);
        }
    }

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
        var current = settings.SharedKeys is { } shared ? shared.Current : Rotate(now, settings).Current;
        var cache = _issued.GetOrCreateValue(identity);
        lock (cache.Gate)
        {
            if (cache.ByAudience.TryGetValue(audience, out var issued) && issued.RenewAt > now && issued.Kid == current.Key.KeyId)
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
            SigningCredentials = current.Credentials,
            TokenType = "JWT",
        });
        lock (cache.Gate)
        {
            cache.ByAudience[audience] = (token, now + (expires - now) / 2, current.Key.KeyId);
        }

        return token;
    }

    /// <summary>
    /// The public keys as a JWKS document: the fleet's shared keys when configured, else this instance's current and,
    /// during overlap, previous key.
    /// </summary>
    public string JwksJson(AssertionSettings? settings = null)
    {
        if (settings?.SharedKeys is { } shared) return JsonSerializer.Serialize(new { keys = shared.Keys.Select(Jwk).ToList() });
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

    private static SigningKey NewKey(DateTimeOffset now) => SigningKey.From(ECDsa.Create(ECCurve.NamedCurves.nistP256), now);

    public void Dispose()
    {
        var ring = _ring;
        ring.Current.Ecdsa.Dispose();
        ring.Previous?.Ecdsa.Dispose();
    }
}
