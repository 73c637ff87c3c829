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
