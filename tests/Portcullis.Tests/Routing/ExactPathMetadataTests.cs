using Portcullis.Routing;

namespace Portcullis.Tests.Routing;

public sealed class ExactPathMetadataTests
{
    [Theory]
    [InlineData("/admin/config", "/admin/config", true)]
    [InlineData("/admin/config", "/ADMIN/config", false)]
    [InlineData("/admin/config", "/admin/config/", false)]
    [InlineData("/admin/quotas/{quota}", "/admin/quotas/daily", true)]
    [InlineData("/admin/quotas/{quota}", "/admin/quotas/daily/", true)]
    [InlineData("/admin/quotas/{quota}", "/Admin/quotas/daily", false)]
    [InlineData("/admin/quotas/{quota}", "/admin/quotas", false)]
    [InlineData("/admin/quotas/{quota}", "/admin/quotas/a/b", false)]
    [InlineData("/admin/issuers/{issuer}/refresh", "/admin/issuers/corp/refresh", true)]
    [InlineData("/admin/issuers/{issuer}/refresh", "/admin/issuers/corp/Refresh", false)]
    public void Matches_ComparesLiteralsOrdinally(string template, string path, bool expected) =>
        Assert.Equal(expected, new ExactPathMetadata(template).Matches(path));

    [Theory]
    [InlineData("/.portcullis/login/corp", true)]
    [InlineData("/.portcullis/login/", true)]
    [InlineData("/.portcullis/LOGIN/corp", false)]
    [InlineData("/.portcullis/login", false)]
    public void Matches_Prefix(string path, bool expected) =>
        Assert.Equal(expected, new ExactPathMetadata("/.portcullis/login/", prefix: true).Matches(path));
}
