using System.Collections.Frozen;
using System.Text.RegularExpressions;
using Portcullis.Configuration;

namespace Portcullis.Routing;

/// <summary>A map file compiled into a lookup table at load time; lookups allocate nothing.</summary>
internal sealed class CompiledMap
{
    private readonly FrozenDictionary<string, string>.AlternateLookup<ReadOnlySpan<char>> _exactBySpan;
    private readonly Dictionary<string, string>.AlternateLookup<ReadOnlySpan<char>> _largeBySpan;
    private readonly bool _large;
    private readonly (string Prefix, string Value)[] _prefixes;
    private readonly (Regex Pattern, string Value)[] _patterns;
    private readonly StringComparison _comparison;

    /// <summary>
    /// Above this many exact keys the table stays a <see cref="Dictionary{TKey, TValue}"/>: freezing analyses every
    /// key (about a second per million) to save a few nanoseconds a lookup, and a million-line map must load in
    /// well under two seconds.
    /// </summary>
    internal const int FreezeBelow = 65_536;

    public CompiledMap(string name, MapKind kind, bool ignoreCase, string? defaultValue, IReadOnlyList<MapEntry> entries)
    {
        Name = name;
        Kind = kind;
        Default = defaultValue;
        EntryCount = (Entries = entries).Count;
        _comparison = ignoreCase ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        var comparer = ignoreCase ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal;
        var exact = new Dictionary<string, string>(kind == MapKind.Exact ? entries.Count : 0, comparer);
        var prefixes = new List<(string, string)>();
        var patterns = new List<(Regex, string)>();
        var values = new HashSet<string>(StringComparer.Ordinal);
        foreach (var entry in entries)
        {
            values.Add(entry.Value);
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

        if (exact.Count < FreezeBelow)
        {
            var frozen = exact.ToFrozenDictionary(comparer);
            _exactBySpan = frozen.GetAlternateLookup<ReadOnlySpan<char>>();
        }
        else
        {
            _largeBySpan = exact.GetAlternateLookup<ReadOnlySpan<char>>();
            _large = true;
        }

        // Longest prefix wins; a stable sort keeps file order among equal lengths.
        _prefixes = [.. prefixes.OrderByDescending(p => p.Item1.Length)];
        _patterns = [.. patterns];
        if (defaultValue is not null) values.Add(defaultValue);
        Values = [.. values];
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
                if (_large ? _largeBySpan.TryGetValue(key, out var value) : _exactBySpan.TryGetValue(key, out value)) return value;
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
        // Values repeat (a million tenants, a few clusters): one string per distinct value.
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        var valuesBySpan = values.GetAlternateLookup<ReadOnlySpan<char>>();
        var lineNumber = 0;
        var rest = text.AsSpan();
        var more = true;
        while (more)
        {
            // Lines end at '\n' (carriage returns before it dropped), as in HAProxy; nothing else breaks a line.
            ReadOnlySpan<char> line;
            var end = rest.IndexOf('\n');
            if (end < 0)
            {
                line = rest;
                more = false;
            }
            else
            {
                line = rest[..end];
                rest = rest[(end + 1)..];
            }

            line = line.TrimEnd('\r');
            lineNumber++;
            var start = 0;
            while (start < line.Length && char.IsWhiteSpace(line[start])) start++;
            if (start == line.Length || line[start] == '#') continue;
            var keyEnd = start;
            while (keyEnd < line.Length && !char.IsWhiteSpace(line[keyEnd])) keyEnd++;
            var key = line[start..keyEnd].ToString();
            var valueSpan = line[keyEnd..].Trim();
            if (valueSpan.IsEmpty)
            {
                diagnostics.Add(new ConfigDiagnostic(file, lineNumber, start + 1, $"map entry '{key}' has no value", "write the key, whitespace, then the value: `v2 orders-v2`"));
                continue;
            }

            if (!seen.TryAdd(key, lineNumber))
            {
                diagnostics.Add(new ConfigDiagnostic(file, lineNumber, start + 1, $"duplicate map key '{key}' (first on line {seen[key]})", "remove one of the two lines"));
                continue;
            }

            if (!valuesBySpan.TryGetValue(valueSpan, out var value))
            {
                value = valueSpan.ToString();
                values.Add(value, value);
            }

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
