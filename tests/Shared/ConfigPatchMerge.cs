using YamlDotNet.RepresentationModel;

namespace Portcullis.Testing;

/// <summary>
/// The merge a finding's config patch documents (Advice/Finding.cs, ConfigPatch): mappings merge key by key,
/// sequences of named items merge on `name` (unknown names appended), other sequences and scalars replace, a
/// null removes the key. Tests apply advisor patches to a config file with it and load the result with the real
/// ConfigLoader/SnapshotBuilder. Linked into both test projects (tests/Shared).
/// </summary>
internal static class ConfigPatchMerge
{
    public static string Apply(string configYaml, string patchYaml)
    {
        var config = new YamlStream();
        config.Load(new StringReader(configYaml));
        var patch = new YamlStream();
        patch.Load(new StringReader(patchYaml));
        Merge((YamlMappingNode)config.Documents[0].RootNode, (YamlMappingNode)patch.Documents[0].RootNode);
        var writer = new StringWriter();
        config.Save(writer, assignAnchors: false);
        return writer.ToString();
    }

    private static void Merge(YamlMappingNode target, YamlMappingNode patch)
    {
        foreach (var (key, value) in patch.Children)
        {
            if (IsNull(value))
            {
                target.Children.Remove(key);
            }
            else if (target.Children.TryGetValue(key, out var existing) && existing is YamlMappingNode into && value is YamlMappingNode from)
            {
                Merge(into, from);
            }
            else if (existing is YamlSequenceNode list && value is YamlSequenceNode items && items.All(Named))
            {
                foreach (var item in items.Cast<YamlMappingNode>())
                {
                    var match = list.OfType<YamlMappingNode>().FirstOrDefault(e => NameOf(e) == NameOf(item));
                    if (match is null) list.Add(item);
                    else Merge(match, item);
                }
            }
            else
            {
                target.Children[key] = value;
            }
        }
    }

    private static bool Named(YamlNode node) => node is YamlMappingNode mapping && NameOf(mapping) is not null;

    private static string? NameOf(YamlMappingNode mapping) =>
        mapping.Children.TryGetValue(new YamlScalarNode("name"), out var name) && name is YamlScalarNode scalar ? scalar.Value : null;

    private static bool IsNull(YamlNode node) => node is YamlScalarNode { Style: not (YamlDotNet.Core.ScalarStyle.SingleQuoted or YamlDotNet.Core.ScalarStyle.DoubleQuoted) } scalar
        && (scalar.Value is null or "" or "~" or "null" or "Null" or "NULL");
}
