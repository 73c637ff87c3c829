using System.Globalization;
using Microsoft.AspNetCore.Http;
using Portcullis.Pipeline;

namespace Portcullis.Routing;

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
