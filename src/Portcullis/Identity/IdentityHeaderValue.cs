using System.Buffers;
using System.Text;

namespace Portcullis.Identity;

/// <summary>
/// Identity values (a subject `zoë`, a group with a newline) in request headers. A header value is printable
/// ASCII on the wire; anything else makes the forwarder fail the request (502) or, worse, lets a value inject
/// a header. So every identity header value is percent-encoded as UTF-8 (RFC 3986 §2.1, upper-case hex) for:
/// control characters, everything beyond ASCII, `%` itself, a space at either end (HTTP trims it), and in list
/// headers the separator. A value without any of these is sent unchanged; one percent-decoding always gives
/// back the exact value. The identity assertion carries the exact values, unencoded (it is JSON).
/// </summary>
internal static class IdentityHeaderValue
{
    private static readonly SearchValues<char> Plain = SearchValues.Create(
        " !\"#$&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~");

    private static readonly SearchValues<char> PlainListItem = SearchValues.Create(
        " !\"#$&'()*+-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~");

    /// <summary>The value as it goes into an identity header: unchanged when plain, else percent-encoded.</summary>
    public static string Encode(string value) => Encode(value, Plain);

    /// <summary>One item of a comma-separated list header (X-Groups): a `,` inside an item is encoded too.</summary>
    public static string EncodeListItem(string value) => Encode(value, PlainListItem);

    private static string Encode(string value, SearchValues<char> plain)
    {
        if (!value.AsSpan().ContainsAnyExcept(plain) && !HasEdgeSpace(value)) return value;

        var builder = new StringBuilder(value.Length * 3);
        Span<byte> utf8 = stackalloc byte[4];
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            var edge = c == ' ' && (i == 0 || i == value.Length - 1);
            if (plain.Contains(c) && !edge)
            {
                builder.Append(c);
                continue;
            }

            // A surrogate pair is one code point (4 UTF-8 bytes); a lone surrogate becomes U+FFFD.
            var length = char.IsHighSurrogate(c) && i + 1 < value.Length && char.IsLowSurrogate(value[i + 1])
                ? Encoding.UTF8.GetBytes(value.AsSpan(i++, 2), utf8)
                : Encoding.UTF8.GetBytes(new ReadOnlySpan<char>(in c), utf8);
            foreach (var b in utf8[..length])
            {
                builder.Append('%').Append(HexUpper[b >> 4]).Append(HexUpper[b & 0xF]);
            }
        }

        return builder.ToString();
    }

    private static bool HasEdgeSpace(string value) => value.Length > 0 && (value[0] == ' ' || value[^1] == ' ');

    private const string HexUpper = "0123456789ABCDEF";
}
