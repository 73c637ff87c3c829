using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Http;
using Portcullis.Pipeline;

namespace Portcullis.Routing;

/// <summary>
/// A string with ${...} parts, compiled once per snapshot: ${map:NAME(SOURCE[,SOURCE...])} lookups (the first
/// source present is looked up), ${requestId}, and any request source as ${SOURCE} (${consumer}, ${consumerGroup},
/// ${claim:NAME}, ${route}, ${header:NAME}, ...). A part that yields nothing makes the whole value null, so a
/// header built from it is left unset.
/// </summary>
internal sealed class ValueTemplate
{
    private const string MapPrefix = "${map:";
    private const string RequestIdPart = "requestId";
    private readonly Part[] _parts;

    private ValueTemplate(Part[] parts, string text)
    {
        _parts = parts;
        Text = text;
        IsLiteral = Array.TrueForAll(parts, p => p.Kind == PartKind.Literal);
        IsBounded = Array.TrueForAll(parts, p => p.Kind is PartKind.Literal or PartKind.Map);
    }

    public string Text { get; }

    public bool IsLiteral { get; }

    /// <summary>True when every part is a literal or a map lookup, so <see cref="PossibleValues"/> lists every value.</summary>
    public bool IsBounded { get; }

    public IEnumerable<string> MapNames => _parts.Where(p => p.MapName is not null).Select(p => p.MapName!);

    private enum PartKind
    {
        Literal,
        Map,
        Source,
        RequestId,
    }

    private sealed record Part(PartKind Kind, string? Literal, string? MapName, RequestSource[] Sources)
    {
        public CompiledMap? Map { get; set; }
    }

    /// <summary>Parses the template; map names are bound later with <see cref="Bind"/>.</summary>
    public static ValueTemplate? Parse(string text, out string? error) => Parse(text, out error, out _);

    /// <summary>Parses the template; on error, <paramref name="errorColumn"/> is the 1-based character where the bad part starts.</summary>
    public static ValueTemplate? Parse(string text, out string? error, out int errorColumn)
    {
        error = null;
        errorColumn = 0;
        var parts = new List<Part>();
        var position = 0;
        while (position < text.Length)
        {
            var start = text.IndexOf("${", position, StringComparison.Ordinal);
            if (start < 0)
            {
                parts.Add(new Part(PartKind.Literal, text[position..], null, []));
                break;
            }

            if (start > position) parts.Add(new Part(PartKind.Literal, text[position..start], null, []));
            errorColumn = start + 1;
            var part = string.CompareOrdinal(text, start, MapPrefix, 0, MapPrefix.Length) == 0
                ? ParseMap(text, start, out position, out error)
                : ParseSource(text, start, out position, out error);
            if (part is null) return null;
            parts.Add(part);
        }

        errorColumn = 0;
        return new ValueTemplate([.. parts], text);
    }

    private static Part? ParseSource(string text, int start, out int next, out string? error)
    {
        next = 0;
        var end = text.IndexOf('}', start);
        if (end < 0)
        {
            error = $"unclosed '${{' at '{text[start..]}'; write ${{consumer}}, ${{claim:NAME}}, ${{requestId}} or ${{map:NAME(SOURCE)}}";
            return null;
        }

        next = end + 1;
        var inner = text[(start + 2)..end].Trim();
        if (inner == RequestIdPart)
        {
            error = null;
            return new Part(PartKind.RequestId, null, null, []);
        }

        if (!RequestSource.TryParse(inner, out var source, out error))
        {
            error += "; write requestId, map:NAME(SOURCE) or a source: " + RequestSource.Syntax;
            return null;
        }

        return new Part(PartKind.Source, null, null, [source]);
    }

    private static Part? ParseMap(string text, int start, out int next, out string? error)
    {
        next = 0;
        var end = text.IndexOf('}', start);
        var open = text.IndexOf('(', start);
        var close = text.IndexOf(')', start);
        if (end < 0 || open < 0 || close < 0 || !(open < close && close < end))
        {
            error = $"malformed lookup at '{text[start..]}'; write ${{map:NAME(SOURCE)}}";
            return null;
        }

        var mapName = text[(start + MapPrefix.Length)..open].Trim();
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

        error = null;
        next = end + 1;
        return new Part(PartKind.Map, null, mapName, [.. sources]);
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

    /// <summary>Every string this template can produce (for validation); only complete when <see cref="IsBounded"/>.</summary>
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

    /// <summary>Renders the value without LINQ; parts are appended into a stack buffer (pooled when it outgrows it).</summary>
    public string? Evaluate(HttpRequest request)
    {
        if (IsLiteral) return Text;
        if (_parts.Length == 1) return EvaluatePart(_parts[0], request).ToNullableString();
        var builder = new DefaultInterpolatedStringHandler(0, _parts.Length, null, stackalloc char[256]);
        foreach (var part in _parts)
        {
            var value = EvaluatePart(part, request);
            if (value.IsNull)
            {
                builder.ToStringAndClear();
                return null;
            }

            builder.AppendFormatted(value.Span);
        }

        return builder.ToStringAndClear();
    }

    private static PartValue EvaluatePart(Part part, HttpRequest request)
    {
        switch (part.Kind)
        {
            case PartKind.Literal:
                return new PartValue(part.Literal);
            case PartKind.RequestId:
                return new PartValue(request.HttpContext.Features.Get<GatewayFeature>()?.RequestId is { Length: > 0 } id ? id : null);
            case PartKind.Source:
                return PartValue.From(part.Sources[0].Read(request));
            default:
                var map = part.Map!;
                foreach (var source in part.Sources)
                {
                    var key = source.Read(request);
                    if (!key.IsEmpty) return new PartValue(map.Lookup(key));
                }

                return new PartValue(map.Default);
        }
    }

    /// <summary>A part's value as a span, or null (missing); avoids a string per source read.</summary>
    private readonly ref struct PartValue
    {
        public PartValue(string? text)
        {
            IsNull = text is null;
            Span = text.AsSpan();
        }

        private PartValue(ReadOnlySpan<char> span)
        {
            IsNull = span.IsEmpty;
            Span = span;
        }

        public bool IsNull { get; }

        public ReadOnlySpan<char> Span { get; }

        public static PartValue From(ReadOnlySpan<char> span) => new(span);

        public string? ToNullableString() => IsNull ? null : Span.ToString();
    }
}
