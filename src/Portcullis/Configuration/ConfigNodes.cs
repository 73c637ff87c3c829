using YamlDotNet.Core;
using YamlDotNet.Core.Events;

namespace Portcullis.Configuration;

/// <summary>
/// A configuration file as a tree of nodes, built from YamlDotNet's parser events (<see cref="ConfigNode.Load"/>).
/// YamlDotNet parses; this is only the tree. Its own representation model (<c>YamlStream</c>) keeps two marks, a
/// tag, an anchor and an ordered dictionary per node: at 50,000 routes (a 5 MB file) loading it took ~0.9 s and
/// 339 MB, two thirds of it building nodes the binder reads once. These nodes keep what the composer and the
/// binder use: the value, its style and where it starts.
/// </summary>
internal abstract class ConfigNode(Mark start)
{
    /// <summary>Where the node starts in its file (1-based line and column).</summary>
    public Mark Start { get; } = start;

    /// <summary>This node and every node below it.</summary>
    public IEnumerable<ConfigNode> AllNodes
    {
        get
        {
            var pending = new Stack<ConfigNode>();
            pending.Push(this);
            while (pending.TryPop(out var node))
            {
                yield return node;
                if (node is ConfigSequence sequence)
                {
                    foreach (var child in sequence.Children) pending.Push(child);
                }
                else if (node is ConfigMapping mapping)
                {
                    foreach (var (key, value) in mapping.Children)
                    {
                        pending.Push(key);
                        pending.Push(value);
                    }
                }
            }
        }
    }

    /// <summary>
    /// Reads one document from <paramref name="parser"/>, or null when the stream has none. Throws what YamlDotNet's
    /// parser throws for malformed text, and a <see cref="YamlException"/> for a duplicate key or an alias to an
    /// unknown anchor, as its representation model does. A second document is reported through
    /// <paramref name="secondDocument"/>.
    /// </summary>
    public static ConfigNode? Load(IParser parser, out Mark? secondDocument)
    {
        secondDocument = null;
        parser.Consume<StreamStart>();
        if (parser.TryConsume<StreamEnd>(out _)) return null;
        parser.Consume<DocumentStart>();
        var anchors = new Dictionary<string, ConfigNode>(StringComparer.Ordinal);
        var root = Read(parser, anchors);
        parser.Consume<DocumentEnd>();
        if (parser.TryConsume<DocumentStart>(out var second)) secondDocument = parser.Current?.Start ?? second.Start; // where its root starts
        return root;
    }

    private static ConfigNode Read(IParser parser, Dictionary<string, ConfigNode> anchors)
    {
        ConfigNode node;
        AnchorName anchor;
        switch (parser.Current)
        {
            case Scalar scalar:
                parser.MoveNext();
                node = new ConfigScalar(scalar.Start, scalar.Value, scalar.Style);
                anchor = scalar.Anchor;
                break;
            case SequenceStart start:
                parser.MoveNext();
                var items = new List<ConfigNode>();
                while (!parser.TryConsume<SequenceEnd>(out _)) items.Add(Read(parser, anchors));
                node = new ConfigSequence(start.Start, items);
                anchor = start.Anchor;
                break;
            case MappingStart start:
                parser.MoveNext();
                var entries = new List<KeyValuePair<ConfigNode, ConfigNode>>();
                HashSet<string>? keys = null;
                while (!parser.TryConsume<MappingEnd>(out _))
                {
                    var key = Read(parser, anchors);
                    if (key is ConfigScalar { Value: { } name })
                    {
                        // A set only past a few keys: most mappings are small, and scanning them is cheaper.
                        if (entries.Count >= 8 && keys is null) keys = [.. entries.Select(e => (e.Key as ConfigScalar)?.Value!).Where(v => v is not null)];
                        if (keys is not null ? !keys.Add(name) : entries.Exists(e => e.Key is ConfigScalar { Value: var other } && other == name))
                        {
                            throw new YamlException(key.Start, key.Start, $"Duplicate key '{name}'");
                        }
                    }

                    entries.Add(new(key, Read(parser, anchors)));
                }

                node = new ConfigMapping(start.Start, entries);
                anchor = start.Anchor;
                break;
            case AnchorAlias alias:
                parser.MoveNext();
                return anchors.TryGetValue(alias.Value.Value, out var target)
                    ? target
                    : throw new AnchorNotFoundException(alias.Start, alias.End, $"Anchor '{alias.Value}' not found");
            default:
                throw new YamlException(parser.Current?.Start ?? Mark.Empty, parser.Current?.End ?? Mark.Empty, $"unexpected {parser.Current?.GetType().Name ?? "end of file"}");
        }

        if (!anchor.IsEmpty) anchors[anchor.Value] = node;
        return node;
    }
}

/// <summary>A scalar: <see cref="Value"/> as written (unquoted), null only for an empty document.</summary>
internal sealed class ConfigScalar(Mark start, string? value, ScalarStyle style = ScalarStyle.Plain) : ConfigNode(start)
{
    public string? Value { get; } = value;

    public ScalarStyle Style { get; } = style;
}

/// <summary>A list.</summary>
internal sealed class ConfigSequence(Mark start, List<ConfigNode> children) : ConfigNode(start)
{
    public List<ConfigNode> Children { get; } = children;
}

/// <summary>A mapping, in the order written. Keys are unique (the loader rejects a duplicate).</summary>
internal sealed class ConfigMapping(Mark start, List<KeyValuePair<ConfigNode, ConfigNode>> children) : ConfigNode(start)
{
    public List<KeyValuePair<ConfigNode, ConfigNode>> Children { get; } = children;

    /// <summary>The index of the entry whose key is the plain name <paramref name="key"/>, or -1.</summary>
    public int IndexOf(string key) => Children.FindIndex(c => c.Key is ConfigScalar { Value: var name } && name == key);

    /// <summary>The value of the entry named <paramref name="key"/>, or null.</summary>
    public ConfigNode? ValueOf(string key) => IndexOf(key) is >= 0 and var i ? Children[i].Value : null;
}
