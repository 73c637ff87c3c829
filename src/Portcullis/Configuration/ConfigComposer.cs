namespace Portcullis.Configuration;

/// <summary>
/// Builds one tree of <see cref="ConfigNode"/>s from several files before binding: a file's <c>include:</c> (files, folders of
/// <c>*.yaml</c>/<c>*.yml</c> read in name order, or <c>*</c> patterns, relative to that file) adds to it, and
/// each overlay (<c>-c base.yaml -c prod.yaml</c>) overrides what came before.
/// <list type="bullet">
/// <item>Mappings merge key by key, recursively (a cluster named in two files is one cluster).</item>
/// <item>Lists whose items all have a <c>name</c> (routes, listeners, issuers …) merge by name: an item of
/// an existing name merges into it, a new name is appended.</item>
/// <item>Other lists and plain values: an overlay replaces them; an include may not (two files setting one
/// value is a conflict, reported at both places), nor may two includes define one name — onboarding a
/// service by adding a file must never silently change another service.</item>
/// </list>
/// The nodes keep their own files' positions; <see cref="FileOf"/> says which file a node came from, so every
/// diagnostic names the file it is about.
/// </summary>
internal sealed class ConfigComposer
{
    private const int MaxDepth = 8;
    private static readonly string[] YamlExtensions = [".yaml", ".yml"];

    private readonly YamlConfigBinder _binder;
    private readonly Dictionary<ConfigNode, string> _nodeFiles = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<string, string> _fullPaths = new(StringComparer.Ordinal);
    private readonly List<string> _reading = [];

    private readonly string? _mainText;
    private readonly IReadOnlyDictionary<string, string>? _texts;

    /// <param name="mainText">The main file's text when it is not to be read from disk (a patched copy being checked).</param>
    /// <param name="texts">Files (full paths) whose text is given rather than read from disk (a patched include or overlay being checked).</param>
    public ConfigComposer(YamlConfigBinder binder, string? mainText = null, IReadOnlyDictionary<string, string>? texts = null)
    {
        _binder = binder;
        _mainText = mainText;
        _texts = texts;
    }

    /// <summary>Every file read, in order (full paths), with its text.</summary>
    public List<(string Path, string Text)> Sources { get; } = [];

    /// <summary>Folders named by an include: a file added to or removed from one changes the configuration.</summary>
    public List<string> Folders { get; } = [];

    /// <summary>The file a node was written in; null for the first file (which the binder names itself).</summary>
    public string? FileOf(ConfigNode node) => _nodeFiles.GetValueOrDefault(node);

    /// <summary>Which file wrote each part of <paramref name="root"/> (the tree <see cref="Compose"/> returned).</summary>
    public ConfigProvenance Provenance(ConfigNode root) => new(root,
        node => _nodeFiles.TryGetValue(node, out var display) ? _fullPaths[display] : null,
        Sources[0].Path,
        Sources.GroupBy(s => s.Path, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First().Text, StringComparer.Ordinal));

    /// <summary>The composed tree; null when a file could not be read or parsed (diagnostics say why).</summary>
    public ConfigNode? Compose(IReadOnlyList<string> paths)
    {
        ConfigNode? root = null;
        var failed = false;
        for (var i = 0; i < paths.Count; i++)
        {
            var node = Read(paths[i], paths[i], first: i == 0, depth: 0, from: null);
            if (node is null)
            {
                failed = true;
                continue;
            }

            if (root is null) root = node;
            else Merge(root, node, overlay: true, "");
        }

        return failed ? null : root;
    }

    /// <param name="display">The file's name as diagnostics show it (as given, or relative to the current folder).</param>
    private ConfigNode? Read(string path, string display, bool first, int depth, (ConfigNode Node, string File)? from)
    {
        var full = Path.GetFullPath(path);
        if (_reading.Contains(full, StringComparer.Ordinal))
        {
            Report(from, $"'{path}' includes itself (through {string.Join(" → ", _reading.Select(Path.GetFileName))})", "remove the include that closes the loop");
            return null;
        }

        if (depth > MaxDepth)
        {
            Report(from, $"includes are nested more than {MaxDepth} deep", "include the files from one place");
            return null;
        }

        if (from is null && !(first && _mainText is not null) && Directory.Exists(full))
        {
            // Reading a directory fails as "access denied", which sends the operator after permissions.
            _binder.ErrorIn(display, 1, 1, "cannot read the configuration file: it is a directory",
                $"pass the YAML file itself, e.g. {Path.Combine(path, "portcullis.yaml")}; a folder of files is included with include: [FOLDER/]");
            return null;
        }

        string text;
        try
        {
            text = first && _mainText is not null ? _mainText
                : _texts is not null && _texts.TryGetValue(full, out var given) ? given
                : File.ReadAllText(full);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            if (from is null) _binder.ErrorIn(display, 1, 1, $"cannot read the configuration file: {ConfigLoader.Describe(ex)}", "check the path and its permissions");
            else Report(from, $"cannot read included file '{path}': {ConfigLoader.Describe(ex)}", "paths are relative to the file that includes them");
            return null;
        }

        Sources.Add((full, text));
        // The first file's nodes are the binder's own file; only the others are mapped (a one-file config maps nothing).
        var root = _binder.Parse(display, text);
        if (root is null) return null;
        if (!first) Map(root, display, full);
        if (root is not ConfigMapping mapping) return root;

        var includeIndex = mapping.IndexOf("include");
        if (includeIndex < 0) return root;
        var include = mapping.Children[includeIndex];
        mapping.Children.RemoveAt(includeIndex);
        var file = display;
        var entries = include.Value switch
        {
            ConfigSequence list => list.Children,
            ConfigScalar scalar => [scalar],
            _ => [],
        };
        if (include.Value is ConfigMapping)
        {
            _binder.ErrorIn(file, include.Value.Start.Line, include.Value.Start.Column, "include: expected a file, a folder or a list of them", "include: [conf.d/] or include: [services/*.yaml]");
            return null;
        }

        _reading.Add(full);
        var ok = true;
        foreach (var entry in entries)
        {
            if (entry is not ConfigScalar { Value: { Length: > 0 } name })
            {
                _binder.ErrorIn(file, entry.Start.Line, entry.Start.Column, "include: expected a file or folder name", null);
                ok = false;
                continue;
            }

            foreach (var included in Expand(name, Path.GetDirectoryName(full)!, (entry, file)))
            {
                var node = Read(included, Display(included), first: false, depth + 1, (entry, file));
                if (node is null)
                {
                    ok = false;
                    continue;
                }

                if (node is ConfigScalar { Value: null or "" }) continue; // an empty file adds nothing
                ok &= Merge(root, node, overlay: false, "");
            }
        }

        _reading.RemoveAt(_reading.Count - 1);
        return ok ? root : null;
    }

    private List<string> Expand(string name, string directory, (ConfigNode Node, string File) from)
    {
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(name, directory));
        if (Directory.Exists(full))
        {
            Folders.Add(full);
            return Directory.EnumerateFiles(full)
                .Where(f => YamlExtensions.Contains(Path.GetExtension(f), StringComparer.OrdinalIgnoreCase) && !Path.GetFileName(f).StartsWith('.'))
                .Order(StringComparer.Ordinal)
                .ToList();
        }

        var fileName = Path.GetFileName(full);
        if (fileName.Contains('*', StringComparison.Ordinal) || fileName.Contains('?', StringComparison.Ordinal))
        {
            var folder = Path.GetDirectoryName(full)!;
            if (!Directory.Exists(folder))
            {
                Report(from, $"included folder '{Path.GetDirectoryName(name)}' does not exist ({folder})", "paths are relative to the file that includes them");
                return [];
            }

            Folders.Add(folder);
            return Directory.EnumerateFiles(folder, fileName).Where(f => !Path.GetFileName(f).StartsWith('.')).Order(StringComparer.Ordinal).ToList();
        }

        if (!File.Exists(full))
        {
            Report(from, $"included file '{name}' does not exist ({full})", "paths are relative to the file that includes them; a folder includes its *.yaml files");
            return [];
        }

        return [full];
    }

    /// <summary>Merges <paramref name="next"/> into <paramref name="into"/>; false after reporting a conflict.</summary>
    private bool Merge(ConfigNode into, ConfigNode next, bool overlay, string path)
    {
        if (into is ConfigMapping target && next is ConfigMapping source)
        {
            var ok = true;
            var keys = new Dictionary<string, int>(StringComparer.Ordinal);
            for (var i = 0; i < target.Children.Count; i++)
            {
                if (target.Children[i].Key is ConfigScalar { Value: { } n }) keys.TryAdd(n, i);
            }

            foreach (var (key, value) in source.Children)
            {
                if (key is not ConfigScalar { Value: { } name })
                {
                    target.Children.Add(new(key, value)); // the binder reports a key that is not a plain name
                    continue;
                }

                var childPath = path.Length == 0 ? name : path + "." + name;
                if (!keys.TryGetValue(name, out var index))
                {
                    keys[name] = target.Children.Count;
                    target.Children.Add(new(key, value));
                    continue;
                }

                var existing = target.Children[index];
                if (existing.Value is ConfigMapping && value is ConfigMapping) ok &= Merge(existing.Value, value, overlay, childPath);
                else if (IsNamedList(existing.Value) && IsNamedList(value)) ok &= MergeNamed((ConfigSequence)existing.Value, (ConfigSequence)value, overlay, childPath);
                else if (overlay) target.Children[index] = new(existing.Key, value);
                else ok &= Conflict(childPath, existing.Value, value);
            }

            return ok;
        }

        if (overlay) return true; // the caller replaces what is not a mapping
        return Conflict(path.Length == 0 ? "document" : path, into, next);
    }

    private bool MergeNamed(ConfigSequence into, ConfigSequence next, bool overlay, string path)
    {
        var ok = true;
        // By name in one pass (thousands of routes across conf.d files must not cost a scan each).
        var indexes = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < into.Children.Count; i++) indexes.TryAdd(NameOf(into.Children[i])!, i);
        foreach (var item in next.Children)
        {
            var name = NameOf(item)!;
            if (!indexes.TryGetValue(name, out var index))
            {
                indexes[name] = into.Children.Count;
                into.Children.Add(item);
            }
            else if (overlay)
            {
                ok &= Merge(into.Children[index], item, overlay: true, $"{path}[{name}]");
            }
            else
            {
                ok &= Conflict($"{path} '{name}'", into.Children[index], item, defined: true);
            }
        }

        return ok;
    }

    private bool Conflict(string what, ConfigNode first, ConfigNode second, bool defined = false)
    {
        var firstFile = FileOf(first) ?? _binder.File;
        _binder.ErrorIn(FileOf(second) ?? _binder.File, second.Start.Line, second.Start.Column,
            defined ? $"{what} is already defined in {Describe(firstFile, first)}" : $"{what} is already set in {Describe(firstFile, first)}",
            "an included file may add names but not change what another file set; use an overlay (-c base.yaml -c override.yaml) to override");
        return false;
    }

    // Relative to the current folder when below it (conf.d/orders.yaml), else the full path.
    private static string Display(string full)
    {
        var relative = Path.GetRelativePath(Environment.CurrentDirectory, full);
        return relative.StartsWith("..", StringComparison.Ordinal) || Path.IsPathRooted(relative) ? full : relative;
    }

    private static string Describe(string file, ConfigNode node) => $"{file}:{node.Start.Line}:{node.Start.Column}";

    private static bool IsNamedList(ConfigNode node) =>
        node is ConfigSequence { Children.Count: > 0 } list && list.Children.All(i => NameOf(i) is not null);

    private static string? NameOf(ConfigNode item) =>
        item is ConfigMapping mapping && mapping.ValueOf("name") is ConfigScalar { Value: { Length: > 0 } name } ? name : null;

    private void Map(ConfigNode root, string file, string full)
    {
        _fullPaths[file] = full;
        foreach (var node in root.AllNodes) _nodeFiles[node] = file;
    }

    private void Report((ConfigNode Node, string File)? from, string message, string? hint)
    {
        if (from is { } at) _binder.ErrorIn(at.File, at.Node.Start.Line, at.Node.Start.Column, message, hint);
        else _binder.ErrorIn(_binder.File, 1, 1, message, hint);
    }
}
