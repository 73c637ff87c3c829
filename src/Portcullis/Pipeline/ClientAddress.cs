using System.Net;
using Microsoft.AspNetCore.Http;

namespace Portcullis.Pipeline;

/// <summary>
/// The address of the client behind any trusted proxies. X-Forwarded-For (or, without it, RFC 7239
/// Forwarded `for=`) is read only when the connection's peer is a trusted proxy; then the entries are
/// walked from the right and the first address that is not itself a trusted proxy is the client.
/// From any other peer those headers are ignored (a client cannot choose its own address).
/// </summary>
internal static class ClientAddress
{
    public static IPAddress? Resolve(HttpContext context, IRequestGeneration snapshot)
    {
        var peer = context.Connection.RemoteIpAddress;
        if (peer is { IsIPv4MappedToIPv6: true }) peer = peer.MapToIPv4();
        if (peer is null || !snapshot.IsTrustedProxy(peer)) return peer;

        var headers = context.Request.Headers;
        var forwardedFor = headers["X-Forwarded-For"];
        var candidate = forwardedFor.Count > 0
            ? RightmostUntrusted(forwardedFor, snapshot, forwarded: false)
            : RightmostUntrusted(headers["Forwarded"], snapshot, forwarded: true);
        return candidate ?? peer;
    }

    private static IPAddress? RightmostUntrusted(Microsoft.Extensions.Primitives.StringValues values, IRequestGeneration snapshot, bool forwarded)
    {
        IPAddress? leftmost = null;
        for (var v = values.Count - 1; v >= 0; v--)
        {
            var entries = (values[v] ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            for (var i = entries.Length - 1; i >= 0; i--)
            {
                var address = Parse(forwarded ? ForParameter(entries[i]) : entries[i]);
                if (address is null) return leftmost; // garbage ends the trusted chain: do not look past it
                if (!snapshot.IsTrustedProxy(address)) return address;
                leftmost = address;
            }
        }

        return leftmost;
    }

    // `for=192.0.2.60;proto=http` → 192.0.2.60; `for="[2001:db8::1]:4711"` → 2001:db8::1.
    private static string ForParameter(string element)
    {
        foreach (var pair in element.Split(';', StringSplitOptions.TrimEntries))
        {
            if (pair.StartsWith("for=", StringComparison.OrdinalIgnoreCase)) return pair[4..].Trim('"');
        }

        return "";
    }

    private static IPAddress? Parse(string text)
    {
        if (text.Length == 0) return null;
        if (text[0] == '[')
        {
            var close = text.IndexOf(']');
            return close > 0 && IPAddress.TryParse(text.AsSpan(1, close - 1), out var v6) ? v6 : null;
        }

        if (IPAddress.TryParse(text, out var address))
        {
            return address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;
        }

        // IPv4 with a port, e.g. 192.0.2.1:4711.
        var colon = text.LastIndexOf(':');
        return colon > 0 && text.IndexOf(':') == colon && IPAddress.TryParse(text.AsSpan(0, colon), out var v4) ? v4 : null;
    }
}
