using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Portcullis.Advice;

/// <summary>
/// Merges a <see cref="ConfigPatch"/> into a config file's text, on YamlDotNet's representation model (the same
/// parser the loader uses; never by hand): mappings merge key by key, recursively; a sequence whose patch items
/// all have a `name` merges item by item on it (an unknown name is appended); other sequences and scalars replace;
/// a key set to null is removed. The result is the whole document serialized again: scalar and flow/block styles
/// are kept, comments and blank lines are not (`portcullis advise --apply` keeps a backup of the original).
/// </summary>
internal static class ConfigPatcher
{
    /// <summary>The config text with the patch merged in.</summary>
    /// <exception cref="ConfigPatchException">The config or the patch is not one YAML mapping.</exception>
    public static string Apply(string configText, string patchYaml) => ApplyAll(configText, [patchYaml]);

    /// <summary>
    /// The config text with every patch merged in, in order, on one parse of the config (the advisor checks a
    /// run's patches together: one parse and one compile instead of one per patch).
    /// </summary>
    /// <exception cref="ConfigPatchException">The config or a patch is not one YAML mapping.</exception>
    public static string ApplyAll(string configText, IEnumerable<string> patches)
    {
        var config = LoadMapping(configText, "the configuration", allowEmpty: true);
        foreach (var patchYaml in patches) MergeMapping(config, LoadMapping(patchYaml, "the patch", allowEmpty: false));
        var document = new YamlDocument(config);
        using var writer = new StringWriter();
        // Sequences indented under their key, as the examples and docs write them.
        new YamlStream(document).Save(new Emitter(writer, new EmitterSettings().WithIndentedSequences()), assignAnchors: false);
        return Tidy(writer.ToString());
    }

    /// <summary>The patch as a YAML mapping (to see what it changes).</summary>
    /// <exception cref="ConfigPatchException">It is not one YAML mapping.</exception>
    public static YamlMappingNode Parse(string patchYaml) => LoadMapping(patchYaml, "the patch", allowEmpty: false);

    private static YamlMappingNode LoadMapping(string text, string what, bool allowEmpty)
    {
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(text));
        }
        catch (YamlException ex)
        {
            throw new ConfigPatchException($"{what} is not valid YAML: {ex.Message}");
        }

        if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is YamlScalarNode { Value: null or "" })
        {
            if (allowEmpty) return new YamlMappingNode();
            throw new ConfigPatchException($"{what} is empty");
        }

        if (stream.Documents.Count > 1) throw new ConfigPatchException($"{what} has more than one YAML document");
        return stream.Documents[0].RootNode as YamlMappingNode ?? throw new ConfigPatchException($"{what} is not a mapping of keys");
    }

    private static void MergeMapping(YamlMappingNode target, YamlMappingNode patch)
    {
        foreach (var (key, value) in patch.Children)
        {
            var existing = Find(target, key);
            if (IsNull(value))
            {
                if (existing is not null) target.Children.Remove(existing.Value.Key);
                continue;
            }

            if (existing is null)
            {
                target.Children.Add(key, WithoutNulls(value));
                continue;
            }

            var current = existing.Value.Value;
            if (current is YamlMappingNode currentMapping && value is YamlMappingNode patchMapping)
            {
                MergeMapping(currentMapping, patchMapping);
            }
            else if (current is YamlSequenceNode currentSequence && value is YamlSequenceNode patchSequence && IsNamed(patchSequence))
            {
                MergeNamed(currentSequence, patchSequence);
            }
            else
            {
                target.Children[existing.Value.Key] = WithoutNulls(value);
            }
        }
    }

    // Items matched on `name`; an item of the patch that names no existing one is appended.
    private static void MergeNamed(YamlSequenceNode target, YamlSequenceNode patch)
    {
        foreach (var item in patch.Children.Cast<YamlMappingNode>())
        {
            var name = NameOf(item);
            var match = target.Children.OfType<YamlMappingNode>().FirstOrDefault(t => NameOf(t) == name);
            if (match is null) target.Children.Add(WithoutNulls(item));
            else MergeMapping(match, item);
        }
    }

    private static bool IsNamed(YamlSequenceNode sequence) =>
        sequence.Children.Count > 0 && sequence.Children.All(c => c is YamlMappingNode m && NameOf(m) is not null);

    private static string? NameOf(YamlMappingNode mapping) =>
        Find(mapping, new YamlScalarNode("name")) is { Value: YamlScalarNode { Value: { } name } } ? name : null;

    private static KeyValuePair<YamlNode, YamlNode>? Find(YamlMappingNode mapping, YamlNode key)
    {
        var text = (key as YamlScalarNode)?.Value;
        foreach (var child in mapping.Children)
        {
            if (text is not null ? child.Key is YamlScalarNode { Value: { } k } && k == text : child.Key.Equals(key)) return child;
        }

        return null;
    }

    // YAML's null: ~, null (any case the core schema allows), an empty plain value, or the !!null tag.
    private static bool IsNull(YamlNode node)
    {
        if (node is not YamlScalarNode scalar) return false;
        if (!scalar.Tag.IsEmpty && !scalar.Tag.IsNonSpecific) return scalar.Tag.Value == "tag:yaml.org,2002:null";
        return scalar.Style is ScalarStyle.Plain or ScalarStyle.Any && scalar.Value is null or "" or "~" or "null" or "Null" or "NULL";
    }

    // A new part of the document: keys set to null in it mean nothing to remove, so they are left out.
    private static YamlNode WithoutNulls(YamlNode node)
    {
        if (node is YamlMappingNode mapping)
        {
            var copy = new YamlMappingNode { Style = mapping.Style };
            foreach (var (key, value) in mapping.Children)
            {
                if (!IsNull(value)) copy.Children.Add(key, WithoutNulls(value));
            }

            return copy;
        }

        if (node is YamlSequenceNode sequence)
        {
            var copy = new YamlSequenceNode { Style = sequence.Style };
            foreach (var item in sequence.Children) copy.Children.Add(WithoutNulls(item));
            return copy;
        }

        return node;
    }

    // YamlStream writes a document end marker ("...") after the root; the config files never have one.
    private static string Tidy(string yaml)
    {
        var text = yaml.Replace("\r\n", "\n", StringComparison.Ordinal).TrimEnd();
        if (text.EndsWith("\n...", StringComparison.Ordinal)) text = text[..^4].TrimEnd();
        return text + "\n";
    }
}

/// <summary>A patch that cannot be merged (not YAML, not a mapping); the message says which and why.</summary>
internal sealed class ConfigPatchException(string message) : Exception(message);
