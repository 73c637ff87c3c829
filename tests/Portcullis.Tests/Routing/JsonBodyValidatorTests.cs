using System.Text;
using Portcullis.Pipeline;
using Portcullis.Routing;

namespace Portcullis.Tests.Routing;

/// <summary>
/// The streaming JSON checks of routes[].jsonLimits: every document is fed whole, byte by byte and in odd-sized
/// pieces, so a limit found only when a token happens to sit inside one read would fail here.
/// </summary>
public sealed class JsonBodyValidatorTests
{
    private static CompiledJsonLimits Limits(long maxSize = 1 << 20, int maxDepth = 32, int maxString = 8192, int maxItems = 10_000, int maxMembers = 1000) => new()
    {
        MaxSize = maxSize,
        MaxDepth = maxDepth,
        MaxStringLength = maxString,
        MaxArrayItems = maxItems,
        MaxObjectMembers = maxMembers,
        RequireJson = false,
    };

    private static readonly int[] ChunkSizes = [int.MaxValue, 1, 2, 3, 7, 64];

    private static IEnumerable<ReasonCode?> Outcomes(CompiledJsonLimits limits, string body)
    {
        var bytes = Encoding.UTF8.GetBytes(body);
        foreach (var size in ChunkSizes)
        {
            using var validator = new JsonBodyValidator(limits);
            ReasonCode? refusal = null;
            for (var offset = 0; offset < bytes.Length && refusal is null; offset += size)
            {
                refusal = validator.Feed(bytes.AsSpan(offset, Math.Min(size, bytes.Length - offset)));
            }

            yield return refusal ?? validator.Complete();
        }
    }

    private static void AssertOutcome(ReasonCode? expected, CompiledJsonLimits limits, string body)
    {
        foreach (var outcome in Outcomes(limits, body)) Assert.Same(expected, outcome);
    }

    [Theory]
    [InlineData("{}")]
    [InlineData("[]")]
    [InlineData("  {\"a\": [1, 2.5e3, true, false, null, \"x\\\"y\"], \"b\": {\"c\": {}}}  ")]
    [InlineData("\"just a string\"")]
    [InlineData("42")]
    public void Well_formed_documents_within_the_limits_pass(string body) => AssertOutcome(null, Limits(), body);

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("{\"a\":1,}")]
    [InlineData("[1,2,]")]
    [InlineData("{\"a\":1} {\"b\":2}")]
    [InlineData("{\"a\":1} x")]
    [InlineData("// comment\n1")]
    [InlineData("{\"a\":")]
    [InlineData("[1, 2")]
    [InlineData("{'a': 1}")]
    public void Malformed_or_incomplete_documents_are_refused(string body) => AssertOutcome(ReasonCodes.JsonMalformed, Limits(), body);

    [Fact]
    public void Depth_counts_objects_and_arrays_from_the_top_level_value()
    {
        AssertOutcome(null, Limits(maxDepth: 3), "[[[1]]]");
        AssertOutcome(null, Limits(maxDepth: 3), "{\"a\":{\"b\":[1]}}");
        AssertOutcome(ReasonCodes.JsonTooDeep, Limits(maxDepth: 3), "[[[[1]]]]");
        AssertOutcome(ReasonCodes.JsonTooDeep, Limits(maxDepth: 3), "{\"a\":{\"b\":{\"c\":{}}}}");
        // Far deeper than System.Text.Json's own default of 64: ours answers first, with its own code.
        AssertOutcome(ReasonCodes.JsonTooDeep, Limits(maxDepth: 32), new string('[', 5000) + new string(']', 5000));
    }

    [Fact]
    public void String_length_covers_values_and_property_names_in_bytes_as_sent()
    {
        AssertOutcome(null, Limits(maxString: 5), "{\"abcde\":\"12345\"}");
        AssertOutcome(ReasonCodes.JsonStringTooLong, Limits(maxString: 5), "[\"123456\"]");
        AssertOutcome(ReasonCodes.JsonStringTooLong, Limits(maxString: 5), "{\"abcdef\":1}");
        // An escape counts as written: \u0041 is six bytes.
        AssertOutcome(ReasonCodes.JsonStringTooLong, Limits(maxString: 5), "[\"\\u0041\"]");
    }

    [Fact]
    public void A_string_longer_than_the_limit_is_refused_before_its_end_arrives_and_is_never_held_whole()
    {
        using var validator = new JsonBodyValidator(Limits(maxString: 1000));
        Assert.Null(validator.Feed("[\""u8));
        var piece = Encoding.ASCII.GetBytes(new string('x', 100));
        ReasonCode? refusal = null;
        var fed = 0;
        while (refusal is null && fed < 100_000)
        {
            refusal = validator.Feed(piece);
            fed += piece.Length;
        }

        Assert.Same(ReasonCodes.JsonStringTooLong, refusal);
        Assert.True(fed <= 1000 + 64 + piece.Length, $"refused only after {fed} bytes of the string");
    }

    [Fact]
    public void Whitespace_between_tokens_is_not_kept_or_mistaken_for_a_long_token()
    {
        using var validator = new JsonBodyValidator(Limits(maxString: 10));
        Assert.Null(validator.Feed("[1,"u8));
        var spaces = Encoding.ASCII.GetBytes(new string(' ', 1000));
        for (var i = 0; i < 100; i++) Assert.Null(validator.Feed(spaces));
        Assert.Null(validator.Feed("2]"u8));
        Assert.Null(validator.Complete());

        // Around a colon too, and the document still reads the same (a separator kept, the spaces dropped).
        var padding = new string(' ', 3000);
        AssertOutcome(null, Limits(maxString: 10), "{\"a\"" + padding + ":" + padding + "[1" + padding + "," + padding + "2]" + padding + "}");
        AssertOutcome(ReasonCodes.JsonMalformed, Limits(maxString: 10), "{\"a\"" + padding + padding + "1}");
    }

    [Fact]
    public void Array_items_and_object_members_are_counted_per_container()
    {
        AssertOutcome(null, Limits(maxItems: 3), "[[1,2,3],[4,5,6],[7,8,9]]");
        AssertOutcome(ReasonCodes.JsonTooManyItems, Limits(maxItems: 3), "[1,2,3,4]");
        AssertOutcome(ReasonCodes.JsonTooManyItems, Limits(maxItems: 3), "[[1],{},\"s\",[]]");
        AssertOutcome(ReasonCodes.JsonTooManyItems, Limits(maxItems: 3), "{\"a\":[1,2,3,4]}");
        AssertOutcome(null, Limits(maxMembers: 2), "{\"a\":{\"x\":1,\"y\":2},\"b\":[{\"x\":1,\"y\":2}]}");
        AssertOutcome(ReasonCodes.JsonTooManyMembers, Limits(maxMembers: 2), "{\"a\":1,\"b\":2,\"c\":3}");
        AssertOutcome(ReasonCodes.JsonTooManyMembers, Limits(maxMembers: 2), "[{\"a\":1,\"b\":2,\"c\":3}]");
    }

    [Fact]
    public void The_size_limit_counts_every_byte_including_whitespace()
    {
        AssertOutcome(null, Limits(maxSize: 10), "[1,2,3,4] ");
        AssertOutcome(ReasonCodes.JsonTooLarge, Limits(maxSize: 10), "[1,2,3,4]  ");
    }

    [Theory]
    [InlineData("application/json", true)]
    [InlineData("Application/JSON; charset=utf-8", true)]
    [InlineData("application/problem+json", true)]
    [InlineData("application/vnd.api+json ; x=y", true)]
    [InlineData("text/json", false)]
    [InlineData("text/plain", false)]
    [InlineData("application/jsonx", false)]
    [InlineData("", false)]
    [InlineData(null, false)]
    public void Json_content_types_are_recognised(string? contentType, bool json) => Assert.Equal(json, JsonLimitsMiddleware.IsJson(contentType));
}
