using System.Globalization;
using Microsoft.AspNetCore.Http;
using Portcullis.Pipeline;

namespace Portcullis.Routing;

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
                var caller = request.HttpContext.Features.Get<Portcullis.Pipeline.GatewayFeature>()?.Caller;
                return caller is not null && caller.Claims.TryGetValue(Name, out var values) && values.Length > 0 ? values[0].AsSpan() : default;
            case RequestSourceKind.Consumer:
                return (request.HttpContext.Features.Get<Portcullis.Pipeline.GatewayFeature>()?.Caller?.Consumer).AsSpan();
            case RequestSourceKind.ConsumerGroup:
                return (request.HttpContext.Features.Get<Portcullis.Pipeline.GatewayFeature>()?.Caller?.ConsumerGroup).AsSpan();
            case RequestSourceKind.ClientIp:
                return (request.HttpContext.Features.Get<Portcullis.Pipeline.GatewayFeature>()?.ClientAddress(request.HttpContext)).AsSpan();
            case RequestSourceKind.Route:
                return (request.HttpContext.Features.Get<Portcullis.Pipeline.GatewayFeature>()?.RouteName).AsSpan();
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

/// <summary>
/// A string with ${map:NAME(SOURCE[,SOURCE...])} lookups, compiled once per snapshot. The first source
/// present in the request is looked up; a lookup that yields nothing makes the whole value null.
/// </summary>
internal sealed class ValueTemplate
{
    private readonly Part[] _parts;

    private ValueTemplate(Part[] parts, string text)
    {
        _parts = parts;
        Text = text;
        IsLiteral = parts.All(p => p.MapName is null);
    }

    public string Text { get; }

    public bool IsLiteral { get; }

    public IEnumerable<string> MapNames => _parts.Where(p => p.MapName is not null).Select(p => p.MapName!);

    private sealed record Part(string? Literal, string? MapName, RequestSource[] Sources)
    {
        public CompiledMap? Map { get; set; }
    }

    /// <summary>Parses the template; map names are bound later with <see cref="Bind"/>.</summary>
    public static ValueTemplate? Parse(string text, out string? error)
    {
        error = null;
        var parts = new List<Part>();
        var position = 0;
        while (position < text.Length)
        {
            var start = text.IndexOf("${map:", position, StringComparison.Ordinal);
            if (start < 0)
            {
                parts.Add(new Part(text[position..], null, []));
                break;
            }

            if (start > position) parts.Add(new Part(text[position..start], null, []));
            var end = text.IndexOf('}', start);
            var open = text.IndexOf('(', start);
            var close = text.IndexOf(')', start);
            if (end < 0 || open < 0 || close < 0 || !(open < close && close < end))
            {
                error = $"malformed lookup at '{text[start..]}'; write ${{map:NAME(SOURCE)}}";
                return null;
            }

            var mapName = text[(start + 6)..open].Trim();
            if (mapName.Length == 0)
            {
                error = "lookup names no map";
                return null;
            }

            var sources = new List<RequestSource>();
            foreach (var sourceText in text[(open + 1)..close].Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                if (!RequestSource.TryParse(sourceText, out var source, out error))
                {
                    error += "; sources are " + RequestSource.Syntax;
                    return null;
                }

                sources.Add(source);
            }

            if (sources.Count == 0)
            {
                error = $"lookup in map '{mapName}' names no request source; sources are {RequestSource.Syntax}";
                return null;
            }

            parts.Add(new Part(null, mapName, [.. sources]));
            position = end + 1;
        }

        return new ValueTemplate([.. parts], text);
    }

    /// <summary>Resolves map names; returns the names that do not exist.</summary>
    public IReadOnlyList<string> Bind(IReadOnlyDictionary<string, CompiledMap> maps)
    {
        var missing = new List<string>();
        foreach (var part in _parts)
        {
            if (part.MapName is null) continue;
            if (maps.TryGetValue(part.MapName, out var map)) part.Map = map;
            else missing.Add(part.MapName);
        }

        return missing;
    }

    /// <summary>Every string this template can produce (for validation); null when unbounded.</summary>
    public IReadOnlyList<string> PossibleValues()
    {
        IEnumerable<string> results = [""];
        foreach (var part in _parts)
        {
            var choices = part.Literal is not null ? [part.Literal] : part.Map?.Values ?? [];
            results = results.SelectMany(prefix => choices.Select(choice => prefix + choice)).ToList();
        }

        return results.ToList();
    }

    public string? Evaluate(HttpRequest request)
    {
        if (_parts.Length == 1) return EvaluatePart(_parts[0], request);
        string? result = null;
        foreach (var part in _parts)
        {
            var value = EvaluatePart(part, request);
            if (value is null) return null;
            result = result is null ? value : string.Concat(result, value);
        }

        return result;
    }

    private static string? EvaluatePart(Part part, HttpRequest request)
    {
        if (part.Literal is not null) return part.Literal;
        var map = part.Map!;
        foreach (var source in part.Sources)
        {
            var key = source.Read(request);
            if (!key.IsEmpty) return map.Lookup(key);
        }

        return map.Default;
    }
}
