using System.Globalization;
using Microsoft.AspNetCore.Http;

namespace Portcullis.Pipeline;

internal enum RequestSourceKind
{
    Header,
    Cookie,
    Query,
    Segment,
    Host,
    Path,
    Method,
    Claim,
    Consumer,
    ConsumerGroup,

    /// <summary>The client's address (from trusted proxies' X-Forwarded-For / Forwarded, else the peer).</summary>
    ClientIp,

    /// <summary>The matched route's name.</summary>
    Route,
}

/// <summary>A part of the request a value is read from (map lookups, rate-limit keys, sticky splits): see <see cref="Syntax"/>.</summary>
internal readonly record struct RequestSource(RequestSourceKind Kind, string Name, int Index)
{
    public const string Syntax = "header:NAME, cookie:NAME, query:NAME, segment:N (1-based path segment), host, path, method, claim:NAME, consumer, consumerGroup, ip or route";

    public static bool TryParse(string text, out RequestSource source, out string? error)
    {
        source = default;
        error = null;
        var colon = text.IndexOf(':');
        var kind = colon < 0 ? text : text[..colon];
        var argument = colon < 0 ? "" : text[(colon + 1)..];
        switch (kind)
        {
            case "header" when argument.Length > 0:
                source = new RequestSource(RequestSourceKind.Header, argument, 0);
                return true;
            case "cookie" when argument.Length > 0:
                source = new RequestSource(RequestSourceKind.Cookie, argument, 0);
                return true;
            case "query" when argument.Length > 0:
                source = new RequestSource(RequestSourceKind.Query, argument, 0);
                return true;
            case "segment" when int.TryParse(argument, NumberStyles.None, CultureInfo.InvariantCulture, out var index) && index >= 1:
                source = new RequestSource(RequestSourceKind.Segment, "", index);
                return true;
            case "host" when argument.Length == 0:
                source = new RequestSource(RequestSourceKind.Host, "", 0);
                return true;
            case "path" when argument.Length == 0:
                source = new RequestSource(RequestSourceKind.Path, "", 0);
                return true;
            case "method" when argument.Length == 0:
                source = new RequestSource(RequestSourceKind.Method, "", 0);
                return true;
            case "claim" when argument.Length > 0:
                source = new RequestSource(RequestSourceKind.Claim, argument, 0);
                return true;
            case "consumer" when argument.Length == 0:
                source = new RequestSource(RequestSourceKind.Consumer, "", 0);
                return true;
            case "consumerGroup" when argument.Length == 0:
                source = new RequestSource(RequestSourceKind.ConsumerGroup, "", 0);
                return true;
            case "ip" when argument.Length == 0:
                source = new RequestSource(RequestSourceKind.ClientIp, "", 0);
                return true;
            case "route" when argument.Length == 0:
                source = new RequestSource(RequestSourceKind.Route, "", 0);
                return true;
            default:
                error = $"unknown request source '{text}'";
                return false;
        }
    }

    public ReadOnlySpan<char> Read(HttpRequest request)
    {
        switch (Kind)
        {
            case RequestSourceKind.Header:
                var header = request.Headers[Name];
                return header.Count > 0 ? header[0].AsSpan() : default;
            case RequestSourceKind.Cookie:
                return request.Cookies[Name].AsSpan();
            case RequestSourceKind.Query:
                var query = request.Query[Name];
                return query.Count > 0 ? query[0].AsSpan() : default;
            case RequestSourceKind.Segment:
                return Segment(request.Path.Value.AsSpan(), Index);
            case RequestSourceKind.Host:
                return request.Host.Host.AsSpan();
            case RequestSourceKind.Path:
                return request.Path.Value.AsSpan();
            case RequestSourceKind.Method:
                return request.Method.AsSpan();
            case RequestSourceKind.Claim:
                var caller = request.HttpContext.Features.Get<GatewayFeature>()?.Caller;
                return caller is not null && caller.Claims.TryGetValue(Name, out var values) && values.Length > 0 ? values[0].AsSpan() : default;
            case RequestSourceKind.Consumer:
                return (request.HttpContext.Features.Get<GatewayFeature>()?.Caller?.Consumer).AsSpan();
            case RequestSourceKind.ConsumerGroup:
                return (request.HttpContext.Features.Get<GatewayFeature>()?.Caller?.ConsumerGroup).AsSpan();
            case RequestSourceKind.ClientIp:
                return (request.HttpContext.Features.Get<GatewayFeature>()?.ClientAddress(request.HttpContext)).AsSpan();
            case RequestSourceKind.Route:
                return (request.HttpContext.Features.Get<GatewayFeature>()?.RouteName).AsSpan();
            default:
                return default;
        }
    }

    internal static ReadOnlySpan<char> Segment(ReadOnlySpan<char> path, int index)
    {
        var current = 0;
        while (path.Length > 0)
        {
            if (path[0] == '/')
            {
                path = path[1..];
                continue;
            }

            var end = path.IndexOf('/');
            var segment = end < 0 ? path : path[..end];
            if (++current == index) return segment;
            if (end < 0) break;
            path = path[end..];
        }

        return default;
    }

    public override string ToString() => Kind switch
    {
        RequestSourceKind.Header => "header:" + Name,
        RequestSourceKind.Cookie => "cookie:" + Name,
        RequestSourceKind.Query => "query:" + Name,
        RequestSourceKind.Segment => "segment:" + Index.ToString(CultureInfo.InvariantCulture),
        RequestSourceKind.Claim => "claim:" + Name,
        RequestSourceKind.ConsumerGroup => "consumerGroup",
        RequestSourceKind.ClientIp => "ip",
        _ => Kind.ToString().ToLowerInvariant(),
    };
}
