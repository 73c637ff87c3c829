using Portcullis.Configuration;
using YamlDotNet.Core;

namespace Portcullis.Tests.Configuration;

/// <summary>
/// The configuration's node tree, built from YamlDotNet's parser events (issue 20: its own representation model
/// was most of a reload's parse at 50,000 routes): what YamlStream gave the composer and the binder, and the errors
/// it raised.
/// </summary>
public sealed class ConfigNodesTests
{
    private static ConfigNode? Load(string yaml) => ConfigNode.Load(new Parser(new StringReader(yaml)), out _);

    [Fact]
    public void Mappings_sequences_and_scalars_keep_their_order_style_and_start()
    {
        var root = Assert.IsType<ConfigMapping>(Load("""
            b: 1
            a: "two"
            list:
              - x
              - { k: v }
            """));

        Assert.Equal(["b", "a", "list"], root.Children.Select(c => ((ConfigScalar)c.Key).Value));
        var two = Assert.IsType<ConfigScalar>(root.ValueOf("a"));
        Assert.Equal("two", two.Value);
        Assert.Equal(ScalarStyle.DoubleQuoted, two.Style);
        Assert.Equal((2L, 4L), (two.Start.Line, two.Start.Column));
        var list = Assert.IsType<ConfigSequence>(root.ValueOf("list"));
        Assert.Equal(2, list.Children.Count);
        Assert.Equal((5L, 5L), (list.Children[1].Start.Line, list.Children[1].Start.Column));
        Assert.Equal("v", ((ConfigScalar)((ConfigMapping)list.Children[1]).ValueOf("k")!).Value);
        Assert.Null(root.ValueOf("missing"));
        Assert.Equal(11, root.AllNodes.Count());
    }

    [Fact]
    public void An_alias_is_the_anchored_node_and_an_unknown_one_is_an_error()
    {
        var root = Assert.IsType<ConfigMapping>(Load("""
            shared: &dest { address: http://127.0.0.1:5001 }
            copy: *dest
            """));
        Assert.Same(root.ValueOf("shared"), root.ValueOf("copy"));

        Assert.Throws<AnchorNotFoundException>(() => Load("a: *missing\n"));
    }

    [Theory]
    [InlineData(3)]   // found by scanning the few keys before it
    [InlineData(40)]  // found through the set of a large mapping's keys
    public void A_duplicate_key_is_reported_at_the_second_one(int keys)
    {
        var yaml = string.Concat(Enumerable.Range(0, keys).Select(i => $"k{i}: {i}\n")) + "k1: again\n";
        var error = Assert.Throws<YamlException>(() => Load(yaml));
        Assert.EndsWith("Duplicate key 'k1'", error.Message, StringComparison.Ordinal);
        Assert.Equal(keys + 1, error.Start.Line);
    }

    [Fact]
    public void An_empty_stream_has_no_document_and_a_second_document_is_pointed_at()
    {
        Assert.Null(Load(""));
        Assert.Null(Load("# only a comment\n"));

        var root = ConfigNode.Load(new Parser(new StringReader("a: 1\n---\nb: 2\n")), out var second);
        Assert.IsType<ConfigMapping>(root);
        Assert.Equal(3, second?.Line);
    }
}
