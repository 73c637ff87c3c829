using Portcullis.Routing;

namespace Portcullis.Tests.Routing;

/// <summary>Issue 19 item 7: identity and request-id template parts; parse errors name the character.</summary>
public sealed class TemplateTests
{
    [Theory]
    [InlineData("${consumer}")]
    [InlineData("${consumerGroup}")]
    [InlineData("${claim:sub}")]
    [InlineData("${route}")]
    [InlineData("${requestId}")]
    [InlineData("user=${consumer}; tier=${map:tier(consumer)}")]
    public void IdentityParts_Parse_AndAreNotLiteralOrBounded(string text)
    {
        var template = ValueTemplate.Parse(text, out var error, out var column);

        Assert.Null(error);
        Assert.Equal(0, column);
        Assert.NotNull(template);
        Assert.False(template.IsLiteral);
        Assert.False(template.IsBounded);
    }

    [Theory]
    [InlineData("abc ${consumr}", 5, "unknown request source 'consumr'")]
    [InlineData("${claim:}", 1, "unknown request source")]
    [InlineData("x-${consumer", 3, "unclosed '${'")]
    [InlineData("${consumer}-${map:tier(bogus)}", 13, "unknown request source 'bogus'")]
    [InlineData("ab${map:tier host}", 3, "malformed lookup")]
    public void ParseErrors_CarryTheCharacter(string text, int expectedColumn, string expected)
    {
        var template = ValueTemplate.Parse(text, out var error, out var column);

        Assert.Null(template);
        Assert.StartsWith(expected, error, StringComparison.Ordinal);
        Assert.Equal(expectedColumn, column);
    }

    [Fact]
    public void MapOnlyTemplates_StayBounded()
    {
        var template = ValueTemplate.Parse("orders-${map:tier(host)}", out _)!;

        Assert.True(template.IsBounded);
    }

    [Fact]
    public void Render_JoinsParts_AndAMissingPartLeavesNothing()
    {
        var template = ValueTemplate.Parse("a=${header:X-A};b=${header:X-B}", out _)!;
        var context = new Microsoft.AspNetCore.Http.DefaultHttpContext();
        context.Request.Headers["X-A"] = "1";

        Assert.Null(template.Evaluate(context.Request));
        context.Request.Headers["X-B"] = new string('b', 600);
        Assert.Equal("a=1;b=" + new string('b', 600), template.Evaluate(context.Request));
    }
}

/// <summary>Bad templates and path regexes are refused at load with their file position.</summary>
public sealed class TransformValidationTests() : ConfigBuildTestBase("portcullis-transforms-")
{
    private static string Yaml(string transforms) => $$"""
        listeners:
          - { name: public, address: "127.0.0.1:8080" }
        routes:
          - name: r
            match: { pathPrefix: /r }
            cluster: c
            transforms:
        {{transforms}}
        clusters:
          c: { destinations: ["http://127.0.0.1:9"] }
        """;

    [Theory]
    [InlineData("^/a/(?=b)", "not supported")]
    [InlineData("^/a/(\\d+", "bad regex at character")]
    [InlineData("^/a/(x)\\1", "not supported")]
    public void PathRewrite_BadRegex_IsRefusedWithPosition(string regex, string expected)
    {
        var error = SingleError(Build(Yaml($"      pathRewrite: {{ regex: '{regex}', replacement: /x }}")));

        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
        Assert.Equal(8, error.Line);
    }

    [Fact]
    public void ResponseTemplate_ParseError_NamesTheCharacter()
    {
        var error = SingleError(Build(Yaml("      response: { set: { X-A: 'id ${claim:}' } }")));

        Assert.Contains("at character 4", error.Message, StringComparison.Ordinal);
        Assert.Equal(8, error.Line);
    }

    [Fact]
    public void PathRewrite_NestedQuantifiers_LoadBecauseTheRegexCannotBacktrack()
    {
        var result = Build(Yaml("      pathRewrite: { regex: '^/(a+)+$', replacement: /$1 }"));

        Assert.True(result.Succeeded);
    }
}
