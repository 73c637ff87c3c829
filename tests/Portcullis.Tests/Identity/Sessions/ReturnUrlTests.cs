using Portcullis.Identity.Sessions;

namespace Portcullis.Tests.Identity.Sessions;

/// <summary>The post-login and post-logout return URL: a path on the gateway's own origin, or nothing (no open redirect).</summary>
public sealed class ReturnUrlTests
{
    [Theory]
    [InlineData("/")]
    [InlineData("/x")]
    [InlineData("/app/dashboard?tab=2#top")]
    [InlineData("/a/b%20c?q=%2F%2Fnot-a-host")]
    [InlineData("/files/a%5Cb")]
    [InlineData("/wiki/https://example.test/page")]
    public void SameOriginPaths_AreKept(string url) => Assert.Equal(url, SessionPages.SafeReturnUrl(url));

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("//evil.example")]
    [InlineData("//evil.example/steal")]
    [InlineData("/\\evil.example")]
    [InlineData("\\\\evil.example")]
    [InlineData("/x\\..\\\\evil.example")]
    [InlineData("https://evil.example/")]
    [InlineData("http:evil.example")]
    [InlineData("javascript:alert(1)")]
    [InlineData("JaVaScRiPt:alert(1)")]
    [InlineData("data:text/html,<script>alert(1)</script>")]
    [InlineData("evil.example")]
    [InlineData(" /x")]
    [InlineData("/\t/evil.example")] // browsers drop tabs and newlines from URLs: this would be //evil.example
    [InlineData("/\n/evil.example")]
    [InlineData("/\r\nSet-Cookie: a=b")]
    [InlineData("/x\0")]
    // Percent-encoded variants of the same, in case something down the line decodes once more.
    [InlineData("/%2F%2Fevil.example")]
    [InlineData("/%2fevil.example")]
    [InlineData("/%5Cevil.example")]
    [InlineData("/%5cevil.example")]
    [InlineData("/%252F%252Fevil.example")]
    [InlineData("/%09/evil.example")]
    [InlineData("/x%0D%0ASet-Cookie:%20a=b")]
    public void AnythingElse_IsRefused(string? url) => Assert.Null(SessionPages.SafeReturnUrl(url));

    [Fact]
    public void OverlongUrls_AreRefused()
    {
        Assert.Null(SessionPages.SafeReturnUrl("/" + new string('a', 2048)));
        Assert.NotNull(SessionPages.SafeReturnUrl("/" + new string('a', 2000)));
    }
}
