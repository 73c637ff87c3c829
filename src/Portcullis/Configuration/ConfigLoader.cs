namespace Portcullis.Configuration;

/// <summary>
/// A configuration read and bound to the model, with the positions of everything in it: one file, or a main
/// file with its includes and overlays (<see cref="ConfigComposer"/>).
/// </summary>
internal sealed record LoadedConfig(string Path, PortcullisConfig Config, SourceLocations Locations, string Text)
{
    /// <summary>The files given on the command line: the main file, then each overlay.</summary>
    public IReadOnlyList<string> Paths { get; init; } = [Path];

    /// <summary>The main file's own text (what a config patch is merged into).</summary>
    public string MainText { get; init; } = Text;

    /// <summary>Every file the configuration was read from (full paths) and each included folder: what is watched.</summary>
    public IReadOnlyList<string> Files { get; init; } = [System.IO.Path.GetFullPath(Path)];

    /// <summary>Config paths whose values came from <c>${file:PATH}</c>: redacted in /admin/config and diffs.</summary>
    public IReadOnlySet<string> SecretPaths { get; init; } = new HashSet<string>();

    /// <summary>Which file wrote each part, when the configuration was composed from several files (null: all of it is the main file).</summary>
    public ConfigProvenance? Provenance { get; init; }

    public string BaseDirectory => System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(Path)) ?? ".";

    /// <summary>A path written in the configuration, relative to the main file (values from other files were made absolute when bound).</summary>
    public string Resolve(string relative) => System.IO.Path.GetFullPath(relative, BaseDirectory);
}

internal static class ConfigLoader
{
    /// <summary>Reads and binds a config file. Returns null with diagnostics when it cannot be read or parsed.</summary>
    public static LoadedConfig? Load(string path, Func<string, string?> environment, List<ConfigDiagnostic> diagnostics) =>
        Load([path], environment, diagnostics);

    /// <summary>
    /// Reads the main file (first), its includes, and each overlay in order, composes them and binds the result.
    /// Returns null with diagnostics when a file cannot be read, parsed or composed.
    /// </summary>
    /// <param name="mainText">The main file's text, when a changed copy is checked (with the includes and overlays from disk).</param>
    /// <param name="texts">Files (full paths) whose text is given rather than read from disk.</param>
    /// <param name="timings">Where a reload's parse and bind times go; null when nobody asks.</param>
    public static LoadedConfig? Load(IReadOnlyList<string> paths, Func<string, string?> environment, List<ConfigDiagnostic> diagnostics, string? mainText = null, IReadOnlyDictionary<string, string>? texts = null,
        ReloadTimings? timings = null)
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        if (paths.Count == 0) throw new ArgumentException("at least one configuration file", nameof(paths));
        var path = paths[0];
        var locations = new SourceLocations(path);
        var binder = new YamlConfigBinder(path, environment, diagnostics, locations);
        var composer = new ConfigComposer(binder, mainText, texts);
        var root = composer.Compose(paths);
        started = timings?.Add("parse", started) ?? started;
        if (root is null) return null;
        if (composer.Sources.Count > 1) binder.FileOf = composer.FileOf;
        var config = binder.BindRoot<PortcullisConfig>(root);
        timings?.Add("bind", started);
        if (config is null) return null;
        var text = composer.Sources.Count == 1
            ? composer.Sources[0].Text
            : string.Join("\0", composer.Sources.Select(s => s.Path + "\n" + s.Text));
        // A rotated ${file:...} secret changes the fingerprint (its digest, never its text), so the reload applies it.
        foreach (var (file, digest) in binder.SecretFiles) text += $"\0secret:{file}:{digest}";
        return new LoadedConfig(path, config, locations, text)
        {
            MainText = composer.Sources[0].Text,
            Paths = [.. paths],
            Files = [.. composer.Sources.Select(s => s.Path), .. composer.Folders.Distinct(StringComparer.Ordinal), .. binder.SecretFiles.Select(f => f.Path).Distinct(StringComparer.Ordinal)],
            SecretPaths = binder.SecretPaths,
            Provenance = composer.Sources.Count > 1 ? composer.Provenance(root) : null,
        };
    }

    /// <summary>Binds text as if it were the file at <paramref name="path"/> (its includes are read from disk).</summary>
    public static LoadedConfig? Parse(string path, string text, Func<string, string?> environment, List<ConfigDiagnostic> diagnostics) =>
        Load([path], environment, diagnostics, mainText: text);

    internal static string Describe(Exception ex) => Files.FileErrors.Describe(ex);
}
