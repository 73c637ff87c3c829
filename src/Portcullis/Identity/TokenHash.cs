using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Portcullis.Identity;

/// <summary>SHA-256 of a token's UTF-16 code units: caches hold 32 bytes per token, never the token.</summary>
internal readonly record struct TokenHash(ulong A, ulong B, ulong C, ulong D)
{
    public static TokenHash Of(ReadOnlySpan<char> token)
    {
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(MemoryMarshal.AsBytes(token), digest);
        var words = MemoryMarshal.Cast<byte, ulong>(digest);
        return new TokenHash(words[0], words[1], words[2], words[3]);
    }
}
