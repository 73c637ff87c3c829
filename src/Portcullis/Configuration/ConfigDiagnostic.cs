namespace Portcullis.Configuration;

public enum DiagnosticSeverity
{
    Error,
    Warning,
}

/// <summary>One problem found in a config file, pointing at file:line:column with a hint on how to fix it.</summary>
public sealed record ConfigDiagnostic(
    string File,
    int Line,
    int Column,
    string Message,
    string? Hint = null,
    DiagnosticSeverity Severity = DiagnosticSeverity.Error)
{
    public override string ToString()
    {
        var severity = Severity == DiagnosticSeverity.Error ? "error" : "warning";
        var text = $"{File}:{Line}:{Column}: {severity}: {Message}";
        return Hint is null ? text : $"{text}\n  hint: {Hint}";
    }
}

/// <summary>Thrown when a configuration cannot be used; carries every diagnostic found.</summary>
public sealed class ConfigException(IReadOnlyList<ConfigDiagnostic> diagnostics)
    : Exception(diagnostics.Count == 0 ? "invalid configuration" : string.Join(Environment.NewLine, diagnostics))
{
    public IReadOnlyList<ConfigDiagnostic> Diagnostics { get; } = diagnostics;
}

/// <summary>Where each config path (e.g. routes[0].match.path) was written: the file (when composed from several) and line:column.</summary>
internal sealed class SourceLocations(string file)
{
    private readonly Dictionary<string, (string? File, int Line, int Column)> _positions = new(StringComparer.Ordinal);

    /// <summary>The main file (the first -c).</summary>
    public string File { get; } = file;

    /// <param name="file">The file the path was written in; null for the main file.</param>
    internal void Add(string path, string? file, int line, int column) => _positions.TryAdd(path, (file, line, column));

    /// <summary>The same main file without positions: every path then resolves to the file's first line.</summary>
    internal SourceLocations FileOnly() => new(File);

    /// <summary>Line and column of the path, or of its nearest written ancestor.</summary>
    public (int Line, int Column) Of(string path)
    {
        var (_, line, column) = At(path);
        return (line, column);
    }

    /// <summary>File, line and column of the path, or of its nearest written ancestor.</summary>
    public (string File, int Line, int Column) At(string path)
    {
        while (true)
        {
            if (_positions.TryGetValue(path, out var pos)) return (pos.File ?? File, pos.Line, pos.Column);
            var cut = Math.Max(path.LastIndexOf('.'), path.LastIndexOf('['));
            if (cut <= 0) return _positions.TryGetValue("", out var root) ? (root.File ?? File, root.Line, root.Column) : (File, 1, 1);
            path = path[..cut];
        }
    }

    public bool Has(string path) => _positions.ContainsKey(path);
}
