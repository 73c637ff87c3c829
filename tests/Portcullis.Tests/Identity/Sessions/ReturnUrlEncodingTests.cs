using Portcullis.Identity.Sessions;

namespace Portcullis.Tests.Identity.Sessions;

/// <summary>Issue 13 point 4: return URLs end up in a Location header, which carries ASCII only.</summary>
public sealed class ReturnUrlEncodingTests
{
    [Theory]
    [InlineData("/é", "/%C3%A9")]
    [InlineData("/a\u2028b", "/a%E2%80%A8b")]
    [InlineData("/x\u3002example", "/x%E3%80%82example")]
    [InlineData("/a b?q=ü", "/a%20b?q=%C3%BC")]
    [InlineData("/😀", "/%F0%9F%98%80")]
    [InlineData("/\uFF0F\uFF0Fevil.example", "/%EF%BC%8F%EF%BC%8Fevil.example")] // fullwidth solidus: a path, never a host
    [InlineData("/already%C3%A9", "/already%C3%A9")]
    public void NonAscii_IsPercentEncodedAsUtf8(string url, string expected) => Assert.Equal(expected, SessionPages.SafeReturnUrl(url));

    [Fact]
    public void Unencodable_IsRefused()
    {
        Assert.Null(SessionPages.SafeReturnUrl("/x" + (char)0xD800 + "y")); // a lone surrogate has no UTF-8 form
        Assert.Null(SessionPages.SafeReturnUrl("/x" + (char)0xDC00));
        Assert.Null(SessionPages.SafeReturnUrl("/x\u0085y")); // NEL is a control character
    }
}
