using System.Collections.Frozen;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;
using Microsoft.IdentityModel.Tokens;

namespace Portcullis.Identity;

/// <summary>
/// One fetch of an issuer's keys (discovery document, JWKS URI or file), keeping only keys we may verify
/// with. A set with none is refused (<see cref="KeySetRejectedException"/>) so it never replaces good keys.
/// </summary>
internal sealed class IssuerKeyFetcher(IssuerKeySource source, HttpClient http, TimeProvider time)
{
    private readonly IssuerKeySource _source = source;
    private readonly HttpClient _http = http;
    private readonly TimeProvider _time = time;

    /// <summary>The keys and the JWKS response's freshness lifetime (null when it said nothing).</summary>
    public async Task<(IssuerKeySet Keys, TimeSpan? Lifetime)> FetchAsync(CancellationToken cancellationToken)
    {
        string? issuer = null;
        JsonWebKeySet set;
        TimeSpan? lifetime = null;
        if (_source.JwksFile is { } file)
        {
            set = new JsonWebKeySet(await File.ReadAllTextAsync(file, cancellationToken).ConfigureAwait(false));
        }
        else
        {
            var retriever = new IssuerDocumentRetriever(_http);
            if (_source.Authority is { } authority)
            {
                var address = authority.TrimEnd('/') + "/.well-known/openid-configuration";
                var configuration = await OpenIdConnectConfigurationRetriever.GetAsync(address, retriever, cancellationToken).ConfigureAwait(false);
                issuer = configuration.Issuer;
                set = configuration.JsonWebKeySet ?? throw new InvalidOperationException("the discovery document has no jwks_uri keys");
                lifetime = retriever.LifetimeOf(configuration.JwksUri);
            }
            else
            {
                set = new JsonWebKeySet(await retriever.GetDocumentAsync(_source.JwksUri!, cancellationToken).ConfigureAwait(false));
                lifetime = retriever.LifetimeOf(_source.JwksUri);
            }
        }

        var byKid = new Dictionary<string, SecurityKey>(StringComparer.Ordinal);
        var all = new List<SecurityKey>();
        foreach (var key in set.Keys)
        {
            if (!IsUsableSigningKey(key)) continue;
            all.Add(key);
            if (!string.IsNullOrEmpty(key.Kid)) byKid.TryAdd(key.Kid, key);
        }

        // An empty set (`{"keys":[]}`, a provider mid-deploy or a broken proxy) or one with nothing we may
        // verify with would refuse every token, remembered ones included: a failed fetch, not new keys.
        if (all.Count == 0)
        {
            throw new KeySetRejectedException(set.Keys.Count == 0
                ? "the key set is empty"
                : $"none of its {set.Keys.Count} keys is a usable signing key");
        }

        return (new IssuerKeySet(byKid.ToFrozenDictionary(StringComparer.Ordinal), [.. all], issuer, _time.GetUtcNow()), lifetime);
    }

    /// <summary>Only asymmetric signature keys of safe size: no `oct`, no `use: enc`, no RSA under 2048 bits.</summary>
    internal static bool IsUsableSigningKey(JsonWebKey key)
    {
        if (!string.IsNullOrEmpty(key.Use) && !string.Equals(key.Use, "sig", StringComparison.Ordinal)) return false;
        switch (key.Kty)
        {
            case JsonWebAlgorithmsKeyTypes.RSA:
                if (string.IsNullOrEmpty(key.N)) return false;
                try
                {
                    return ModulusBits(Base64UrlEncoder.DecodeBytes(key.N)) >= 2048;
                }
                catch (Exception ex) when (ex is FormatException or ArgumentException)
                {
                    return false;
                }

            case JsonWebAlgorithmsKeyTypes.EllipticCurve:
                return key.Crv is JsonWebKeyECTypes.P256 or JsonWebKeyECTypes.P384 or JsonWebKeyECTypes.P521;
            default:
                return false;
        }
    }

    /// <summary>The modulus size in bits: leading zero bytes (and bits) do not count, or a 1024-bit key padded
    /// with zeros to 256 bytes would pass for 2048 bits (RSA libraries ignore the padding and verify with it).</summary>
    private static int ModulusBits(ReadOnlySpan<byte> modulus)
    {
        var first = modulus.IndexOfAnyExcept((byte)0);
        if (first < 0) return 0;
        return ((modulus.Length - first - 1) * 8) + (32 - System.Numerics.BitOperations.LeadingZeroCount((uint)modulus[first]));
    }

    /// <summary>The provider answered, but with a key set that must not replace the keys we have.</summary>
    internal sealed class KeySetRejectedException(string message) : Exception(message);
}
