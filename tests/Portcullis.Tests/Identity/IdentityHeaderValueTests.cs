using Portcullis.Identity;

namespace Portcullis.Tests.Identity;

/// <summary>How identity values are written into request headers (issue 13, point 4).</summary>
public sealed class IdentityHeaderValueTests
{
    [Theory]
    [InlineData("alice", "alice")]
    [InlineData("alice@example.test", "alice@example.test")]
    [InlineData("a b", "a b")]
    [InlineData("", "")]
    [InlineData("zoë", "zo%C3%AB")]
    [InlineData("100%", "100%25")]
    [InlineData("%C3%AB", "%25C3%25AB")] // already looks encoded: still encoded once more, so decoding is exact
    [InlineData("line\r\nX-Injected: 1", "line%0D%0AX-Injected: 1")]
    [InlineData("nul\0", "nul%00")]
    [InlineData("del\u007f", "del%7F")]
    [InlineData(" padded ", "%20padded%20")]
    [InlineData("😀", "%F0%9F%98%80")]
    [InlineData("日本", "%E6%97%A5%E6%9C%AC")]
    [InlineData("a,b", "a,b")]
    public void Encode_KeepsPlainAsciiAndPercentEncodesTheRest(string value, string expected) =>
        Assert.Equal(expected, IdentityHeaderValue.Encode(value));

    [Theory]
    [InlineData("a,b", "a%2Cb")]
    [InlineData("café", "caf%C3%A9")]
    [InlineData("admins", "admins")]
    public void EncodeListItem_AlsoEncodesTheSeparator(string value, string expected) =>
        Assert.Equal(expected, IdentityHeaderValue.EncodeListItem(value));

    [Fact]
    public void Encode_LoneSurrogate_BecomesTheReplacementCharacter() =>
        Assert.Equal("%EF%BF%BDx", IdentityHeaderValue.Encode(new string(['\ud800', 'x'])));

    [Fact]
    public void Encode_PlainValue_ReturnsTheSameInstance()
    {
        var value = "orders-reader";
        Assert.Same(value, IdentityHeaderValue.Encode(value));
    }

    [Theory]
    [InlineData("zoë")]
    [InlineData("100% sure, 😀 \t tab")]
    [InlineData(" x ")]
    [InlineData("%41")]
    public void Encode_RoundTripsThroughOnePercentDecoding(string value)
    {
        var encoded = IdentityHeaderValue.Encode(value);
        Assert.All(encoded, c => Assert.InRange(c, ' ', '~'));
        Assert.Equal(value, Uri.UnescapeDataString(encoded));
    }
}
