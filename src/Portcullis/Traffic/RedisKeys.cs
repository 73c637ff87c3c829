using System.Security.Cryptography;
using System.Text;

namespace Portcullis.Traffic;

/// <summary>Bounds the caller-chosen part of Redis counter keys.</summary>
internal static class RedisKeys
{
    /// <summary>Key values longer than this are replaced by their SHA-256, to bound key size.</summary>
    internal const int MaxKeyLength = 128;

    private const string HashedMarker = "sha256:";

    // Long key values (a header, a claim) are hashed so keys stay small; values that look like a hash are
    // hashed too, so nobody can send the hashed form of someone else's long key and share its counter.
    internal static string Bounded(string key)
    {
        if (key.Length <= MaxKeyLength && !key.StartsWith(HashedMarker, StringComparison.Ordinal)) return key;
        return HashedMarker + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));
    }
}
