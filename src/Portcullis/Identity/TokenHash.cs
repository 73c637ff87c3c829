using System.Buffers;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Unicode;

namespace Portcullis.Identity;

/// <summary>
/// SHA-256 of a token's UTF-8 bytes: caches hold 32 bytes per token, never the token. In-memory cache key
/// only (the validated-token and introspection caches); nothing persists it, so its input encoding may
/// change between versions. API-key file hashes are <see cref="KeyHash"/>, a different function.
/// </summary>
/// <remarks>
/// Distinct tokens get distinct inputs: well-formed UTF-16 maps one-to-one to UTF-8, and a token with a
/// lone surrogate (not well-formed, so it has no UTF-8 form) is hashed as a 0xFF byte, which never occurs
/// in UTF-8, followed by its UTF-16 code units. Bearer tokens are ASCII, the fast path: up to
/// <see cref="StackLimit"/> characters they are converted into a stack buffer; longer or non-ASCII tokens
/// use a pooled buffer. Either buffer is cleared after hashing. Nothing is allocated.
/// </remarks>
internal readonly record struct TokenHash(ulong A, ulong B, ulong C, ulong D)
{
    /// <summary>Longest token (in characters) converted on the stack.</summary>
    internal const int StackLimit = 8 * 1024;

    public static TokenHash Of(ReadOnlySpan<char> token)
    {
        Span<byte> digest = stackalloc byte[32];
        if (token.Length <= StackLimit)
        {
            Span<byte> ascii = stackalloc byte[token.Length];
            if (Ascii.FromUtf16(token, ascii, out _) == OperationStatus.Done)
            {
                SHA256.HashData(ascii, digest);
                CryptographicOperations.ZeroMemory(ascii);
                return From(digest);
            }

            CryptographicOperations.ZeroMemory(ascii);
        }

        HashSlow(token, digest);
        return From(digest);
    }

    private static void HashSlow(ReadOnlySpan<char> token, Span<byte> digest)
    {
        // UTF-8 takes at most 3 bytes per UTF-16 code unit; the fallback takes 2 per unit plus the marker.
        var size = checked((token.Length * 3) + 1);
        var rented = ArrayPool<byte>.Shared.Rent(size);
        var buffer = rented.AsSpan(0, size);
        try
        {
            if (Utf8.FromUtf16(token, buffer, out _, out var written, replaceInvalidSequences: false) == OperationStatus.Done)
            {
                SHA256.HashData(buffer[..written], digest);
            }
            else
            {
                buffer[0] = 0xFF;
                var units = MemoryMarshal.AsBytes(token);
                units.CopyTo(buffer[1..]);
                SHA256.HashData(buffer[..(units.Length + 1)], digest);
            }
        }
        finally
        {
            CryptographicOperations.ZeroMemory(buffer);
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private static TokenHash From(ReadOnlySpan<byte> digest)
    {
        var words = MemoryMarshal.Cast<byte, ulong>(digest);
        return new TokenHash(words[0], words[1], words[2], words[3]);
    }
}
