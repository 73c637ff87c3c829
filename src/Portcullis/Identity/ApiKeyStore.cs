using System.Buffers.Binary;
using System.Collections.Frozen;
using System.ComponentModel;
using System.Security.Cryptography;
using System.Text;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Identity;

/// <summary>The API key file: consumers and the SHA-256 hashes of their keys. Never a plain secret.</summary>
internal sealed record ApiKeyFile
{
    [Description("Consumers by id.")]
    public IReadOnlyDictionary<string, ApiKeyConsumer> Consumers { get; init; } = new Dictionary<string, ApiKeyConsumer>();
}

internal sealed record ApiKeyConsumer
{
    [Description("Display name.")]
    public string? Name { get; init; }

    [Description("Consumer group (tier), e.g. premium.")]
    public string? Group { get; init; }

    [Description("Scopes granted to this consumer's keys.")]
    public IReadOnlyList<string> Scopes { get; init; } = [];

    [Description("Keys; several may be valid at once so a key rotates with overlap.")]
    public IReadOnlyList<ApiKeyRecord> Keys { get; init; } = [];
}

internal sealed record ApiKeyRecord
{
    [Description("Public key id (the part of the key before the secret), for logs and revocation.")]
    public string Id { get; init; } = "";

    [Description("Hex SHA-256 of the whole key.")]
    public string Sha256 { get; init; } = "";

    [Description("When the key was created.")]
    public DateTimeOffset? Created { get; init; }

    [Description("Not valid before this time.")]
    public DateTimeOffset? NotBefore { get; init; }

    [Description("Not valid from this time on.")]
    public DateTimeOffset? Expires { get; init; }

    [Description("Revoked keys are kept for the record but never accepted.")]
    public bool Revoked { get; init; }

    /// <summary>The key's state at <paramref name="now"/>, by the same rules the gateway applies.</summary>
    public ApiKeyState StateAt(DateTimeOffset now) => ApiKeyStates.Of(Revoked, NotBefore, Expires, now);
}

/// <summary>Whether a key is accepted at a given time; revoked wins over expired, expired over not yet valid.</summary>
internal enum ApiKeyState
{
    Valid,
    NotYetValid,
    Expired,
    Revoked,
}

internal static class ApiKeyStates
{
    /// <summary>Valid from notBefore (inclusive) until expires (exclusive), unless revoked.</summary>
    public static ApiKeyState Of(bool revoked, DateTimeOffset? notBefore, DateTimeOffset? expires, DateTimeOffset now)
    {
        if (revoked) return ApiKeyState.Revoked;
        if (expires is { } end && now >= end) return ApiKeyState.Expired;
        if (notBefore is { } start && now < start) return ApiKeyState.NotYetValid;
        return ApiKeyState.Valid;
    }

    /// <summary>The name `portcullis keys list` prints: valid, not-yet-valid, expired, revoked.</summary>
    public static string Name(this ApiKeyState state) => state switch
    {
        ApiKeyState.Valid => "valid",
        ApiKeyState.NotYetValid => "not-yet-valid",
        ApiKeyState.Expired => "expired",
        _ => "revoked",
    };
}

/// <summary>32 bytes of SHA-256 as a value, so lookups need no string or array.</summary>
internal readonly record struct KeyHash(ulong A, ulong B, ulong C, ulong D)
{
    public static KeyHash Of(ReadOnlySpan<byte> hash) => new(
        BinaryPrimitives.ReadUInt64BigEndian(hash),
        BinaryPrimitives.ReadUInt64BigEndian(hash[8..]),
        BinaryPrimitives.ReadUInt64BigEndian(hash[16..]),
        BinaryPrimitives.ReadUInt64BigEndian(hash[24..]));

    /// <summary>Hashes a presented key without allocating (keys longer than 512 chars are not keys).</summary>
    public static bool TryCompute(ReadOnlySpan<char> key, out KeyHash hash)
    {
        hash = default;
        if (key.IsEmpty || key.Length > 512) return false;
        Span<byte> utf8 = stackalloc byte[1536];
        var length = Encoding.UTF8.GetBytes(key, utf8);
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(utf8[..length], digest);
        hash = Of(digest);
        return true;
    }
}

internal sealed record ApiKeyEntry(string KeyId, string Consumer, DateTimeOffset? NotBefore, DateTimeOffset? Expires, CallerIdentity Identity, bool Revoked = false);

/// <summary>API keys compiled into the snapshot: a frozen table from key hash to consumer.</summary>
internal sealed class CompiledApiKeys
{
    public CompiledApiKeys(string header, string? queryParameter, FrozenDictionary<KeyHash, ApiKeyEntry> keys)
    {
        Header = header;
        QueryParameter = queryParameter;
        Keys = keys;
    }

    public string Header { get; }

    public string? QueryParameter { get; }

    public FrozenDictionary<KeyHash, ApiKeyEntry> Keys { get; }

    public AuthDecision Authenticate(ReadOnlySpan<char> presented, DateTimeOffset now)
    {
        if (!KeyHash.TryCompute(presented, out var hash) || !Keys.TryGetValue(hash, out var entry))
        {
            return AuthDecision.Unauthenticated(ReasonCodes.ApiKeyUnknown, "The API key is not valid.", true);
        }

        return ApiKeyStates.Of(entry.Revoked, entry.NotBefore, entry.Expires, now) switch
        {
            ApiKeyState.Revoked => AuthDecision.Unauthenticated(ReasonCodes.ApiKeyRevoked, "The API key has been revoked.", true),
            ApiKeyState.Expired => AuthDecision.Unauthenticated(ReasonCodes.ApiKeyExpired, "The API key has expired.", true),
            ApiKeyState.NotYetValid => AuthDecision.Unauthenticated(ReasonCodes.ApiKeyNotYetValid, "The API key is not valid yet.", true),
            _ => AuthDecision.Allow(entry.Identity, ReasonCodes.ApiKeyValid),
        };
    }

    public static CompiledApiKeys Compile(ApiKeyOptions options, ApiKeyFile file, Action<string, string> error)
    {
        var keys = new Dictionary<KeyHash, ApiKeyEntry>(file.Consumers.Values.Sum(c => c.Keys.Count));
        // Consumers mostly share a few scope lists (tiers): one frozen set and one claim array per distinct list.
        var scopeSets = new Dictionary<string, (FrozenSet<string> Set, string[] Claim)>(StringComparer.Ordinal);
        foreach (var (consumerId, consumer) in file.Consumers)
        {
            var scopeKey = string.Join('\n', consumer.Scopes);
            if (!scopeSets.TryGetValue(scopeKey, out var scopes))
            {
                scopeSets[scopeKey] = scopes = (consumer.Scopes.ToFrozenSet(StringComparer.Ordinal), [.. consumer.Scopes]);
            }

            var identity = new CallerIdentity
            {
                Kind = CredentialKind.ApiKey,
                Source = "apikey",
                Subject = consumerId,
                Consumer = consumerId,
                ConsumerGroup = consumer.Group,
                // A key's consumer group is its only group, so routes' `groups:` rules apply to keys too.
                Groups = consumer.Group is null ? [] : [consumer.Group],
                Scopes = scopes.Set,
                Claims = new Dictionary<string, string[]>
                {
                    ["sub"] = [consumerId],
                    ["consumer"] = [consumerId],
                    ["group"] = consumer.Group is null ? [] : [consumer.Group],
                    ["scope"] = scopes.Claim,
                }.ToFrozenDictionary(StringComparer.Ordinal),
            };
            for (var i = 0; i < consumer.Keys.Count; i++)
            {
                var record = consumer.Keys[i];
                if (record.Sha256.Length != 64 || !IsHex(record.Sha256))
                {
                    error($"consumers.{consumerId}.keys[{i}].sha256", $"key '{record.Id}' of consumer '{consumerId}' has no valid SHA-256 hash (64 hex digits)");
                    continue;
                }

                var hash = KeyHash.Of(Convert.FromHexString(record.Sha256));
                var keyIdentity = new CallerIdentity
                {
                    Kind = identity.Kind,
                    Source = identity.Source,
                    Subject = identity.Subject,
                    Consumer = identity.Consumer,
                    ConsumerGroup = identity.ConsumerGroup,
                    Groups = identity.Groups,
                    Scopes = identity.Scopes,
                    Claims = identity.Claims,
                    KeyId = record.Id,
                    Expires = record.Expires ?? DateTimeOffset.MaxValue,
                };
                // Revoked keys stay in the table so their use is logged as apikey.revoked, not apikey.unknown.
                var entry = new ApiKeyEntry(record.Id, consumerId, record.NotBefore, record.Expires, keyIdentity, record.Revoked);
                if (keys.TryGetValue(hash, out var other))
                {
                    // The same key listed twice: refusing the file is safer than guessing which record counts.
                    error($"consumers.{consumerId}.keys[{i}].sha256", $"key '{record.Id}' of consumer '{consumerId}' duplicates key '{other.KeyId}' of consumer '{other.Consumer}'");
                    continue;
                }

                keys.Add(hash, entry);
            }
        }

        return new CompiledApiKeys(options.Header, options.QueryParameter, keys.ToFrozenDictionary());
    }

    private static bool IsHex(string text)
    {
        foreach (var c in text)
        {
            if (!char.IsAsciiHexDigit(c)) return false;
        }

        return true;
    }
}

/// <summary>Creates keys: `pck_{id}_{secret}` with 256 random bits; only the hash is stored.</summary>
internal static class ApiKeyGenerator
{
    public const string Prefix = "pck_";

    public static (string Key, ApiKeyRecord Record) Create(DateTimeOffset now, DateTimeOffset? notBefore = null, DateTimeOffset? expires = null)
    {
        var id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6));
        var secret = System.Buffers.Text.Base64Url.EncodeToString(RandomNumberGenerator.GetBytes(32));
        var key = $"{Prefix}{id}_{secret}";
        return (key, new ApiKeyRecord { Id = id, Sha256 = HashHex(key), Created = now, NotBefore = notBefore, Expires = expires });
    }

    /// <summary>Lower-case hex SHA-256 of the key's UTF-8 bytes: what the key file stores.</summary>
    public static string HashHex(string key) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));
}
