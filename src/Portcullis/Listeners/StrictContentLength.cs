using System.Text;
using Microsoft.Net.Http.Headers;

namespace Portcullis.Listeners;

/// <summary>
/// RFC 9110 §8.6: Content-Length = 1*DIGIT. Kestrel parses the value with a number parser that also takes a
/// sign (<c>+5</c>, <c>-0</c>) and keeps only the number, so the request pipeline cannot tell <c>+5</c> from
/// <c>5</c>. Kestrel hands a header's raw bytes to <see cref="Microsoft.AspNetCore.Server.Kestrel.Core.KestrelServerOptions.RequestHeaderEncodingSelector"/>'s
/// encoding before parsing; this encoding passes a 1*DIGIT value through unchanged and turns anything else into
/// <see cref="Malformed"/>, a length no body can have, which the gateway middleware (Hosting/GatewayMiddleware.cs) answers
/// with a 400 problem+json before any byte of the body is read (so the request is never proxied).
/// </summary>
internal sealed class StrictContentLength : Encoding
{
    /// <summary>What a malformed Content-Length reads as (long.MaxValue: above every body-size limit).</summary>
    public const long Malformed = long.MaxValue;

    // Kestrel decodes into a 20-char buffer and refuses more than 19 digits itself.
    private const int MaxDigits = 19;
    private static readonly string MalformedText = Malformed.ToString(System.Globalization.CultureInfo.InvariantCulture);

    public static StrictContentLength Instance { get; } = new();

    /// <summary>The selector for Kestrel: this encoding for Content-Length, Kestrel's default (null) for every other header.</summary>
    public static Encoding? Select(string headerName) =>
        ReferenceEquals(headerName, HeaderNames.ContentLength) || string.Equals(headerName, HeaderNames.ContentLength, StringComparison.OrdinalIgnoreCase) ? Instance : null;

    public override int GetChars(ReadOnlySpan<byte> bytes, Span<char> chars)
    {
        if (!IsDigits(bytes))
        {
            MalformedText.CopyTo(chars);
            return MalformedText.Length;
        }

        for (var i = 0; i < bytes.Length; i++) chars[i] = (char)bytes[i];
        return bytes.Length;
    }

    public override int GetCharCount(ReadOnlySpan<byte> bytes) => IsDigits(bytes) ? bytes.Length : MalformedText.Length;

    public override int GetCharCount(byte[] bytes, int index, int count) => GetCharCount(bytes.AsSpan(index, count));

    public override int GetChars(byte[] bytes, int byteIndex, int byteCount, char[] chars, int charIndex) =>
        GetChars(bytes.AsSpan(byteIndex, byteCount), chars.AsSpan(charIndex));

    public override string GetString(byte[] bytes, int index, int count) => GetString(bytes.AsSpan(index, count));

    // Only decoding is used (request headers); encoding is plain ASCII for completeness.
    public override int GetByteCount(char[] chars, int index, int count) => count;

    public override int GetBytes(char[] chars, int charIndex, int charCount, byte[] bytes, int byteIndex) =>
        ASCII.GetBytes(chars, charIndex, charCount, bytes, byteIndex);

    public override int GetMaxByteCount(int charCount) => charCount;

    public override int GetMaxCharCount(int byteCount) => Math.Max(byteCount, MalformedText.Length);

    private static bool IsDigits(ReadOnlySpan<byte> bytes)
    {
        if (bytes.IsEmpty || bytes.Length > MaxDigits) return false;
        foreach (var b in bytes)
        {
            if (b is < (byte)'0' or > (byte)'9') return false;
        }

        return true;
    }
}
