using YamlDotNet.RepresentationModel;

namespace Portcullis.Configuration;

/// <summary>
/// Which file wrote each part of a configuration composed from several files (includes, overlays): the composed
/// YAML tree with, for every node, the file it came from. A config patch (advice) must be written into the file
/// that defines what it changes — written anywhere else it would conflict with that file (an include) or be
/// overridden by it (an overlay) — and <see cref="TargetOf"/> says which file that is.
/// </summary>
internal sealed class ConfigProvenance
{
    private readonly ConfigMapping? _root;
    private readonly Func<ConfigNode, string?> _fileOf;

    /// <param name="root">The composed tree.</param>
    /// <param name="fileOf">The full path of the file a node came from; null for the main file.</param>
    /// <param name="mainFile">The main file (full path).</param>
    /// <param name="texts">Every file read (full path) and its text as it was read.</param>
    public ConfigProvenance(ConfigNode root, Func<ConfigNode, string?> fileOf, string mainFile, IReadOnlyDictionary<string, string> texts)
    {
        _root = root as ConfigMapping;
        _fileOf = fileOf;
        MainFile = mainFile;
        Texts = texts;
    }

    public string MainFile { get; }

    /// <summary>Every file read (full path) and its text as the snapshot was built from it.</summary>
    public IReadOnlyDictionary<string, string> Texts { get; }

    /// <summary>The file (full path) a node of the composed tree was written in.</summary>
    public string FileOf(ConfigNode node) => _fileOf(node) ?? MainFile;

    /// <summary>
    /// The file a patch has to be written into: the one that defines every existing entry it changes. An entry is
    /// a named item (a route, a listener) or a key below a section (clusters.orders, rateLimits.per-consumer); a
    /// change inside it — a value replaced or removed, a key added — belongs to the file that wrote the deepest
    /// part of the composed tree the patch reaches. With overlays that is the file whose definition wins: a value
    /// an overlay replaced is the overlay's node, a key it merged into leaves the base's node. Adding a new entry
    /// to a section (a new policy under rateLimits, a new route) fits any file, so it goes with the rest.
    /// </summary>
    /// <returns>The file (the main file when the patch only adds), or null with <paramref name="conflict"/> when the patch changes entries of several files.</returns>
    public string? TargetOf(YamlMappingNode patch, out string? conflict)
    {
        conflict = null;
        var files = new SortedSet<string>(StringComparer.Ordinal);
        if (_root is not null) Walk(_root, patch, 0, files);
        if (files.Count <= 1) return files.Count == 0 ? MainFile : files.Min;
        conflict = $"the patch changes entries defined in {string.Join(" and ", files.Select(Display))}; write it by hand in each";
        return null;
    }

    /// <summary>The file as the patch names it: relative to the main file's folder when below it, else the full path.</summary>
    public string Display(string file) => DisplayRelativeTo(MainFile, file);

    internal static string DisplayRelativeTo(string mainFile, string file)
    {
        var relative = Path.GetRelativePath(Path.GetDirectoryName(mainFile) ?? ".", file);
        return relative.StartsWith("..", StringComparison.Ordinal) || Path.IsPathRooted(relative) ? file : relative;
    }

    // depth: 0 the root, 1 a section (clusters, routes), 2 an entry (clusters.orders, routes[orders]) and below.
    // The composed tree is the loader's; the patch is YamlDotNet's model (ConfigPatcher writes it back as text).
    private void Walk(ConfigNode composed, YamlNode patch, int depth, SortedSet<string> files)
    {
        if (composed is ConfigMapping mapping && patch is YamlMappingNode patchMapping)
        {
            foreach (var (key, value) in patchMapping.Children)
            {
                var child = (key as YamlScalarNode)?.Value is { } name ? mapping.ValueOf(name) : null;
                if (child is null)
                {
                    if (depth >= 2 && !IsNull(value)) files.Add(FileOf(mapping)); // a key added to an existing entry
                    continue;
                }

                if (IsNull(value)) files.Add(FileOf(child)); // removed
                else if (child is ConfigScalar { Value: var same } && value is YamlScalarNode { Value: var to } && same == to) continue; // unchanged (a named item's name)
                else Walk(child, value, depth + 1, files);
            }

            return;
        }

        if (composed is ConfigSequence sequence && patch is YamlSequenceNode patchSequence && patchSequence.Children.Count > 0
            && patchSequence.Children.All(c => NameOf(c) is not null))
        {
            foreach (var item in patchSequence.Children)
            {
                var match = sequence.Children.FirstOrDefault(c => NameOf(c) == NameOf(item));
                if (match is null)
                {
                    if (depth >= 2) files.Add(FileOf(sequence)); // an item added to a list inside an entry
                    continue;
                }

                Walk(match, item, depth + 1, files);
            }

            return;
        }

        files.Add(FileOf(composed)); // a value (or a plain list) replaced
    }

    private static YamlNode? Child(YamlMappingNode mapping, string? key)
    {
        if (key is null) return null;
        foreach (var (k, v) in mapping.Children)
        {
            if (k is YamlScalarNode { Value: { } name } && name == key) return v;
        }

        return null;
    }

    private static string? NameOf(YamlNode item) =>
        item is YamlMappingNode mapping && Child(mapping, "name") is YamlScalarNode { Value: { Length: > 0 } name } ? name : null;

    private static string? NameOf(ConfigNode item) =>
        item is ConfigMapping mapping && mapping.ValueOf("name") is ConfigScalar { Value: { Length: > 0 } name } ? name : null;

    private static bool IsNull(YamlNode node) =>
        node is YamlScalarNode { Style: YamlDotNet.Core.ScalarStyle.Plain or YamlDotNet.Core.ScalarStyle.Any, Value: null or "" or "~" or "null" or "Null" or "NULL" };
}
