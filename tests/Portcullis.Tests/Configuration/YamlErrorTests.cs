using Portcullis.Configuration;

namespace Portcullis.Tests.Configuration;

/// <summary>YAML mistakes a new operator makes, each answered with its position and a hint (issue 18, item 15).</summary>
public sealed class YamlErrorTests() : ConfigBuildTestBase("portcullis-yaml-errors-")
{
    [Fact]
    public void Validate_UnclosedFlowMapping_SaysWhichBraceIsNeverClosed()
    {
        var result = Build("""
            listeners:
              - { name: public, address: "127.0.0.1:8080"
            routes:
              - { name: a, cluster: web }
            """);

        var error = SingleError(result);
        AssertAt(error, 2, 5);
        Assert.Equal("malformed YAML: this '{' is never closed: the file ends before its '}'", error.Message);
        Assert.DoesNotContain("Operation is not valid", error.Message, StringComparison.Ordinal);
        Assert.Contains("add the missing '}'", error.Hint, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_UnquotedVariableInFlowMapping_HintsToQuoteIt()
    {
        _environment["ADDR"] = "127.0.0.1:8080";
        var result = Build("""
            listeners:
              - { name: public, address: ${ADDR} }
            """);

        var error = SingleError(result);
        AssertAt(error, 2, 30);
        Assert.StartsWith("malformed YAML: ${ADDR} inside a flow mapping", error.Message, StringComparison.Ordinal);
        Assert.Equal("quote it: \"${ADDR}\"", error.Hint);
    }

    [Fact]
    public void Validate_QuotedVariableInFlowMapping_IsFine()
    {
        _environment["ADDR"] = "127.0.0.1:8080";
        var result = Build("""
            listeners:
              - { name: public, address: "${ADDR}" }
            routes:
              - { name: a, respond: { status: 204 } }
            """);

        Assert.True(result.Snapshot is not null, Dump(result));
    }

    [Fact]
    public void Validate_Directory_SaysItIsADirectory()
    {
        var result = new SnapshotBuilder(_ => null).Build(_directory.FullName);

        var error = SingleError(result);
        Assert.Equal("cannot read the configuration file: it is a directory", error.Message);
        Assert.Contains(Path.Combine(_directory.FullName, "portcullis.yaml"), error.Hint, StringComparison.Ordinal);
        Assert.DoesNotContain("permission", error.Message, StringComparison.Ordinal);
    }
}
