using System.Collections.Frozen;
using System.Text.RegularExpressions;
using Portcullis.Configuration;

namespace Portcullis.Routing;

/// <summary>A map file compiled into a lookup table at load time; lookups allocate nothing.</summary>
internal sealed class CompiledMap
{
    private readonly FrozenDictionary<string, string> _exact;
    private readonly FrozenDictionary<string, string>.AlternateLookup<ReadOnlySpan<char>> _exactBySpan;
    private readonly (string Prefix, string Value)[] _prefixes;
    private readonly (Regex Pattern, string Value)[] _patterns;
    private readonly StringComparison _comparison;

    public CompiledMap(string name, MapKind kind, bool ignoreCase, string? defaultValue, IReadOnlyList<MapEntry> entries)
    {
        Name = name;
        Kind = kind;
        Default = defaultValue;
        EntryCount = (Entries = [.. entries]).Count;
        _comparison = ignoreCase ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        var comparer = ignoreCase ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal;
        var exact = new Dictionary<string, string>(comparer);
        var prefixes = new List<(string, string)>();
        var patterns = new List<(Regex, string)>();
        foreach (var entry in entries)
        {
            switch (kind)
            {
                case MapKind.Exact:
                    exact.TryAdd(entry.Key, entry.Value);
                    break;
                case MapKind.Prefix:
                    prefixes.Add((entry.Key, entry.Value));
                    break;
                case MapKind.Regex:
                    patterns.Add((entry.Pattern!, entry.Value));
                    break;
            }
        }

        _exact = exact.ToFrozenDictionary(comparer);
        _exactBySpan = _exact.GetAlternateLookup<ReadOnlySpan<char>>();
        // Longest prefix wins; a stable sort keeps file order among equal lengths.
        _prefixes = [.. prefixes.OrderByDescending(p => p.Item1.Length)];
        _patterns = [.. patterns];
        Values = entries.Select(e => e.Value).Append(defaultValue).OfType<string>().Distinct(StringComparer.Ordinal).ToArray();
    }

    public string Name { get; }

    public MapKind Kind { get; }

    public string? Default { get; }

    public int EntryCount { get; }

    /// <summary>The entries in file order (used by config diffs).</summary>
    internal IReadOnlyList<MapEntry> Entries { get; }

    /// <summary>Every value the map can yield, default included (used to check cluster templates).</summary>
    public IReadOnlyList<string> Values { get; }

    /// <summary>The value for a key; falls back to the default; null when neither applies.</summary>
    public string? Lookup(ReadOnlySpan<char> key)
    {
        switch (Kind)
        {
            case MapKind.Exact:
                if (_exactBySpan.TryGetValue(key, out var value)) return value;
                break;
            case MapKind.Prefix:
                foreach (var (prefix, prefixValue) in _prefixes)
                {
                    if (key.StartsWith(prefix, _comparison)) return prefixValue;
                }

                break;
            case MapKind.Regex:
                foreach (var (pattern, patternValue) in _patterns)
                {
                    if (pattern.IsMatch(key)) return patternValue;
                }

                break;
        }

        return Default;
    }
}

internal sealed record MapEntry(string Key, string Value, int Line, Regex? Pattern = null);

/// <summary>Reads HAProxy-style map files: "key value" per line, '#' comment lines, blank lines ignored.</summary>
internal static class MapFileParser
{
    public static List<MapEntry> Parse(string text, string file, MapKind kind, bool ignoreCase, List<ConfigDiagnostic> diagnostics)
    {
        var entries = new List<MapEntry>();
        var seen = new Dictionary<string, int>(ignoreCase ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal);
        var lineNumber = 0;
        foreach (var rawLine in text.Split('\n'))
        {
            lineNumber++;
            var line = rawLine.TrimEnd('\r');
            var start = 0;
            while (start < line.Length && char.IsWhiteSpace(line[start])) start++;
            if (start == line.Length || line[start] == '#') continue;
            var keyEnd = start;
            while (keyEnd < line.Length && !char.IsWhiteSpace(line[keyEnd])) keyEnd++;
            var key = line[start..keyEnd];
            var value = line[keyEnd..].Trim();
            if (value.Length == 0)
            {
                diagnostics.Add(new ConfigDiagnostic(file, lineNumber, start + 1, $"map entry '{key}' has no value", "write the key, whitespace, then the value: `v2 orders-v2`"));
                continue;
            }

            if (seen.TryGetValue(key, out var firstLine))
            {
                diagnostics.Add(new ConfigDiagnostic(file, lineNumber, start + 1, $"duplicate map key '{key}' (first on line {firstLine})", "remove one of the two lines"));
                continue;
            }

            seen[key] = lineNumber;
            Regex? pattern = null;
            if (kind == MapKind.Regex)
            {
                pattern = CompilePattern(key, ignoreCase, out var error, out var hint);
                if (pattern is null)
                {
                    diagnostics.Add(new ConfigDiagnostic(file, lineNumber, start + 1, error!, hint));
                    continue;
                }
            }

            entries.Add(new MapEntry(key, value, lineNumber, pattern));
        }

        return entries;
    }

    /// <summary>Compiles a map key as a non-backtracking regex, so a pattern can never make a request hang.</summary>
    public static Regex? CompilePattern(string key, bool ignoreCase, out string? error, out string? hint)
    {
        error = null;
        hint = null;
        try
        {
            var options = RegexOptions.CultureInvariant | RegexOptions.NonBacktracking | (ignoreCase ? RegexOptions.IgnoreCase : 0);
            return new Regex(key, options);
        }
        catch (Exception ex) when (ex is ArgumentException or NotSupportedException)
        {
            error = $"bad regular expression '{key}': {ex.Message}";
            hint = ex is NotSupportedException ? "backreferences and lookarounds are not supported" : "check the pattern's syntax";
            return null;
        }
    }
}
