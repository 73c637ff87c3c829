using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Portcullis.Pipeline;

namespace Portcullis.Routing;

/// <summary>
/// Gives every request one canonical path, before routing, so that routing, authorization, maps and
/// the path YARP forwards upstream all see the same thing (the class of bug behind Envoy
/// CVE-2019-9901: the gateway authorizes one path, the upstream serves another).
/// <para>
/// What Kestrel already did when this runs: percent-decoded the path except <c>%2F</c> (which stays
/// as the three characters <c>%2F</c>), removed <c>.</c> / <c>..</c> segments after decoding (so
/// <c>/x/%2e%2e/admin</c> is already <c>/admin</c>), and refused <c>%00</c> and a raw NUL with its own
/// plain 400 (no gateway code runs for those). It decodes other control characters (<c>%0a</c>, <c>%09</c>)
/// into the path. What it leaves alone, and this stage handles:
/// </para>
/// <list type="bullet">
/// <item>runs of <c>/</c> are collapsed into one (<c>//admin</c> would otherwise miss the <c>/admin</c>
/// route, yet most upstreams merge slashes and serve <c>/admin</c>); the collapsed path replaces
/// <c>Request.Path</c>, which is what routing matches and what YARP forwards;</item>
/// <item>rejected with 400 problem+json <c>request.path-ambiguous</c>: encoded slash or backslash,
/// encoded NUL or control characters (checked on <c>IHttpRequestFeature.RawTarget</c>, query excluded);
/// <c>\</c>; path parameters (<c>;</c>, raw or <c>%3B</c>, which Tomcat and Spring strip, so
/// <c>/x/..;/admin</c> is <c>/admin</c> to them); a raw <c>#</c>; any percent-escape still left after
/// Kestrel's decoding (double encoding such as <c>%252e</c>, undecodable bytes such as <c>%c0%ae</c>, the
/// kept <c>%2F</c>), since YARP re-encodes <c>%</c> and a double-decoding upstream would see a different
/// path; any remaining <c>.</c> / <c>..</c> segment; and any segment ending in a dot or
/// a space (<c>/admin.</c>, <c>/admin%20</c>).</item>
/// </list>
/// <para>
/// Trailing dots and spaces: <c>/admin.</c> does not match <c>/admin/**</c> and would reach a public
/// catch-all route unauthenticated, forwarded as <c>/admin.</c>. That is harmless for an upstream that
/// compares paths exactly, but Windows-based servers (IIS, http.sys, anything mapping to the file
/// system) drop trailing dots and spaces and serve <c>/admin</c>. The gateway cannot know its upstreams,
/// so it refuses such segments. The cost: a legitimate path like <c>/wiki/U.S.</c> is refused too.
/// </para>
/// <para>
/// Letter case is left as sent: routes match case-insensitively, so <c>/ADMIN</c> meets the
/// <c>/admin</c> route's auth, and the upstream receives <c>/ADMIN</c>, the very path that was routed.
/// After this stage the path contains no empty, dot, parameter or escaped segments, so an upstream's own
/// normalisation cannot turn it into another path.
/// </para>
/// <para>
/// Runs right after <see cref="GatewayMiddleware"/> (which hands admin-listener traffic to the admin API
/// and starts the request's <see cref="GatewayFeature"/>) and before routing.
/// </para>
/// </summary>
internal sealed class PathNormalizationMiddleware(RequestDelegate next)
{
    public static readonly ReasonCode Reason = ReasonCodes.RequestPathAmbiguous;

    public Task InvokeAsync(HttpContext context)
    {
        var request = context.Request;
        var path = request.Path.Value;
        if (string.IsNullOrEmpty(path)) return next(context); // OPTIONS *, CONNECT authority-form

        var problem = CheckRaw(RawPath(context.Features.Get<IHttpRequestFeature>()?.RawTarget)) ?? CheckDecoded(path);
        if (problem is not null) return Reject(context, problem);

        var canonical = CollapseSlashes(path);
        if (!ReferenceEquals(canonical, path)) request.Path = new PathString(canonical);
        return next(context);
    }

    /// <summary>The path part of the request target as the client sent it; empty when there is none.</summary>
    internal static ReadOnlySpan<char> RawPath(string? rawTarget)
    {
        if (string.IsNullOrEmpty(rawTarget)) return default;
        var target = rawTarget.AsSpan();
        if (target[0] != '/')
        {
            // absolute-form: scheme://authority/path?query
            var scheme = target.IndexOf("://", StringComparison.Ordinal);
            if (scheme < 0) return default;
            target = target[(scheme + 3)..];
            var slash = target.IndexOfAny('/', '?');
            if (slash < 0 || target[slash] == '?') return default;
            target = target[slash..];
        }

        var query = target.IndexOf('?');
        return query < 0 ? target : target[..query];
    }

    /// <summary>What the client wrote before Kestrel decoded it: the escapes Kestrel keeps or hides.</summary>
    internal static string? CheckRaw(ReadOnlySpan<char> raw)
    {
        for (var i = 0; i < raw.Length; i++)
        {
            switch (raw[i])
            {
                case '\\':
                    return "A backslash in the path is not allowed.";
                case ';':
                    return "Path parameters (';') are not allowed.";
                case '#':
                    return "A fragment ('#') does not belong in a request.";
                case < ' ' or '\u007f':
                    return "Control characters in the path are not allowed.";
                case '%' when i + 2 < raw.Length && TryHex(raw[i + 1], raw[i + 2], out var value):
                    switch (value)
                    {
                        case '/':
                        case '\\':
                            return "Encoded slashes or backslashes in the path are not allowed.";
                        case ';':
                            return "Path parameters (';') are not allowed.";
                        case < 0x20 or 0x7f:
                            return "Encoded NUL or control characters in the path are not allowed.";
                    }

                    i += 2;
                    break;
            }
        }

        return null;
    }

    /// <summary>The path Kestrel decoded (and removed dot segments from): what routing would see.</summary>
    internal static string? CheckDecoded(string path)
    {
        var segmentStart = 0;
        for (var i = 0; i <= path.Length; i++)
        {
            var c = i < path.Length ? path[i] : '/';
            switch (c)
            {
                case '/':
                    var segment = path.AsSpan(segmentStart, i - segmentStart);
                    if (segment.Length > 0)
                    {
                        if (segment is "." or "..") return "Dot segments in the path are not allowed.";
                        if (segment[^1] is '.' or ' ') return "A path segment may not end in a dot or a space.";
                    }

                    segmentStart = i + 1;
                    break;
                case '\\':
                    return "A backslash in the path is not allowed.";
                case ';':
                    return "Path parameters (';') are not allowed.";
                case < ' ' or '\u007f':
                    return "Control characters in the path are not allowed.";
                case '%' when i + 2 < path.Length && TryHex(path[i + 1], path[i + 2], out _):
                    return "The path is percent-encoded more than once, or encodes a slash or invalid UTF-8.";
            }
        }

        return null;
    }

    /// <summary>Runs of '/' become one; the same string comes back when there are none.</summary>
    internal static string CollapseSlashes(string path)
    {
        var first = path.IndexOf("//", StringComparison.Ordinal);
        if (first < 0) return path;
        Span<char> buffer = path.Length <= 512 ? stackalloc char[path.Length] : new char[path.Length];
        path.AsSpan(0, first + 1).CopyTo(buffer);
        var length = first + 1;
        for (var i = first + 1; i < path.Length; i++)
        {
            if (path[i] == '/' && buffer[length - 1] == '/') continue;
            buffer[length++] = path[i];
        }

        return new string(buffer[..length]);
    }

    private static bool TryHex(char high, char low, out int value)
    {
        var h = HexDigit(high);
        var l = HexDigit(low);
        value = (h << 4) | l;
        return h >= 0 && l >= 0;
    }

    private static int HexDigit(char c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'a' and <= 'f' => c - 'a' + 10,
        >= 'A' and <= 'F' => c - 'A' + 10,
        _ => -1,
    };

    private static Task Reject(HttpContext context, string detail)
    {
        if (context.Features.Get<GatewayFeature>() is { } gateway) gateway.Refusal = Reason;
        return ProblemWriter.WriteAsync(context, StatusCodes.Status400BadRequest, "Ambiguous request path", detail, Reason);
    }
}
