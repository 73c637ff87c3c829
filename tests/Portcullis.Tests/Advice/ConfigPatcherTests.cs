using Portcullis.Advice;
using YamlDotNet.RepresentationModel;

namespace Portcullis.Tests.Advice;

/// <summary>The merge semantics of <see cref="ConfigPatch"/> as <see cref="ConfigPatcher"/> applies them.</summary>
public sealed class ConfigPatcherTests
{
    private const string Config = """
        # the gateway
        listeners:
          - { name: public, address: "127.0.0.1:8080" }
        rateLimits:
          per-consumer: { key: consumer, limit: 100, per: 1s }
        routes:
          - name: orders
            match: { pathPrefix: /orders }
            cluster: api
            preserveHost: true
          - name: reports
            match: { pathPrefix: /reports }
            cluster: api
            rateLimits: [per-consumer]
        clusters:
          api:
            destinations: [{ name: a, address: "http://127.0.0.1:9" }]
        """;

    private static YamlMappingNode Root(string yaml)
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(yaml));
        return (YamlMappingNode)stream.Documents[0].RootNode;
    }

    private static YamlNode At(YamlNode node, params object[] path)
    {
        foreach (var step in path)
        {
            node = step switch
            {
                string key => ((YamlMappingNode)node).Children[new YamlScalarNode(key)],
                int index => ((YamlSequenceNode)node).Children[index],
                _ => throw new ArgumentException("a path step is a key or an index", nameof(path)),
            };
        }

        return node;
    }

    private static string Scalar(YamlNode root, params object[] path) => ((YamlScalarNode)At(root, path)).Value!;

    [Fact]
    public void MappingsMergeRecursivelyAndANewKeyIsAdded()
    {
        var result = Root(ConfigPatcher.Apply(Config, """
            rateLimits:
              suggested-reports: { key: consumer, limit: 12, per: 1s, burst: 30 }
              per-consumer: { limit: 200 }
            """));
        Assert.Equal("12", Scalar(result, "rateLimits", "suggested-reports", "limit"));
        Assert.Equal("200", Scalar(result, "rateLimits", "per-consumer", "limit"));
        Assert.Equal("consumer", Scalar(result, "rateLimits", "per-consumer", "key")); // kept
        Assert.Equal("http://127.0.0.1:9", Scalar(result, "clusters", "api", "destinations", 0, "address")); // untouched
    }

    [Fact]
    public void NamedSequencesMergeByNameAndAnUnknownNameIsAppended()
    {
        var result = Root(ConfigPatcher.Apply(Config, """
            routes:
              - name: reports
                rateLimits: [per-consumer, suggested-reports]
              - name: health
                match: { path: /healthz }
                respond: { status: 200 }
            """));
        var routes = (YamlSequenceNode)At(result, "routes");
        Assert.Equal(["orders", "reports", "health"], routes.Children.Select(r => Scalar(r, "name")));
        Assert.Equal("/reports", Scalar(result, "routes", 1, "match", "pathPrefix")); // merged, not replaced
        var limits = (YamlSequenceNode)At(result, "routes", 1, "rateLimits");
        Assert.Equal(["per-consumer", "suggested-reports"], limits.Children.Select(c => ((YamlScalarNode)c).Value)); // a plain sequence replaces
        Assert.Equal("true", Scalar(result, "routes", 0, "preserveHost"));
    }

    [Fact]
    public void NullRemovesAKeyAndIsLeftOutOfNewParts()
    {
        var result = Root(ConfigPatcher.Apply(Config, """
            routes:
              - name: orders
                preserveHost: null
              - name: new
                match: { path: /new }
                preserveHost: ~
                respond: { status: 204 }
            rateLimits:
              per-consumer: ~
            """));
        Assert.False(((YamlMappingNode)At(result, "routes", 0)).Children.ContainsKey(new YamlScalarNode("preserveHost")));
        Assert.False(((YamlMappingNode)At(result, "routes", 2)).Children.ContainsKey(new YamlScalarNode("preserveHost")));
        Assert.Empty(((YamlMappingNode)At(result, "rateLimits")).Children);
        // A quoted "null" is a string, not a removal.
        var quoted = Root(ConfigPatcher.Apply(Config, "routes:\n  - name: orders\n    preserveHost: \"null\"\n"));
        Assert.Equal("null", Scalar(quoted, "routes", 0, "preserveHost"));
    }

    [Fact]
    public void ScalarsAndUnnamedSequencesReplaceAndStylesSurviveButCommentsDoNot()
    {
        var text = ConfigPatcher.Apply(Config, "clusters:\n  api:\n    destinations: [{ name: b, address: \"http://127.0.0.1:10\" }]\n");
        var result = Root(text);
        // Destinations have names: merged by name, so a is kept and b appended.
        Assert.Equal(["a", "b"], ((YamlSequenceNode)At(result, "clusters", "api", "destinations")).Children.Select(d => Scalar(d, "name")));
        Assert.Contains("- {name: public, address: \"127.0.0.1:8080\"}", text, StringComparison.Ordinal); // flow style and quotes kept
        Assert.DoesNotContain("# the gateway", text, StringComparison.Ordinal);
        Assert.DoesNotContain("...", text, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("- just\n- a list\n", "not a mapping")]
    [InlineData("", "empty")]
    [InlineData("routes: [unclosed\n", "not valid YAML")]
    public void APatchThatIsNotAMappingIsRefusedWithWhy(string patch, string why)
    {
        var ex = Assert.Throws<ConfigPatchException>(() => ConfigPatcher.Apply(Config, patch));
        Assert.Contains(why, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheValidatorCompilesThePatchedTextWithoutWritingAnything()
    {
        var directory = Directory.CreateTempSubdirectory("portcullis-patch-");
        try
        {
            var path = Path.Combine(directory.FullName, "portcullis.yaml");
            File.WriteAllText(path, Config);
            var validator = new AdvicePatchValidator(null, null, TimeProvider.System);
            var good = validator.Check(path, Config, new ConfigPatch("routes:\n  - name: orders\n    rateLimits: [per-consumer]\n", "uses per-consumer on orders"));
            Assert.True(good.Valid, string.Join("\n", good.Errors));
            Assert.Contains("per-consumer", good.Snapshot!.Routes["orders"].ToString() + good.PatchedText, StringComparison.Ordinal);
            var bad = validator.Check(path, Config, new ConfigPatch("routes:\n  - name: orders\n    rateLimits: [nope]\n", "uses a limit that does not exist"));
            Assert.False(bad.Valid);
            Assert.Contains(bad.Errors, e => e.Contains("nope", StringComparison.Ordinal) && e.StartsWith(path + ":", StringComparison.Ordinal));
            Assert.Equal(Config, File.ReadAllText(path));
            Assert.Equal(["portcullis.yaml"], directory.GetFiles().Select(f => f.Name));
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }
}
