using Microsoft.IdentityModel.JsonWebTokens;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.IntegrationTests.Sessions;

namespace Portcullis.IntegrationTests.Identity;

/// <summary>
/// Issue 13, point 4 through a browser session: a person whose user id is `zoë` signs in at the real OIDC provider
/// in headless Chromium; the app behind the gateway gets the identity headers percent-encoded and the assertion
/// with the exact values. Before the fix the page answered 502 (the forwarder refused the header value).
/// </summary>
[Collection(BrowserCollection.Name)]
public sealed class SessionIdentityHeaderTests : IAsyncLifetime
{
    private static readonly BrowserUser Zoe = new("zoë", "zoë-password", "zoe@example.test", "Zoë Ünal", ["staff", "équipe"]);
    private Browser _browser = null!;
    private BrowserIdentityProvider _idp = null!;
    private TestUpstream _upstream = null!;
    private TestGateway? _gateway;

    public async Task InitializeAsync()
    {
        _browser = await Browser.LaunchAsync();
        _idp = await BrowserIdentityProvider.StartAsync();
        _idp.RegisterUser(Zoe);
        _upstream = await TestUpstream.StartAsync("app");
    }

    public async Task DisposeAsync()
    {
        if (_gateway is not null) await _gateway.DisposeAsync();
        await _upstream.DisposeAsync();
        await _idp.DisposeAsync();
        await _browser.DisposeAsync();
    }

    [Fact]
    public async Task NonAsciiUserId_SignsIn_AndTheAppGetsEncodedHeadersAndAnExactAssertion()
    {
        _gateway = await TestGateway.StartAsync(SessionSetup.Config(_idp, _upstream), environment: SessionSetup.Environment);
        await _idp.RegisterGatewayAsync(SessionSetup.ClientId, SessionSetup.ClientSecret, "corp", _gateway.Url);
        var page = await _browser.NewPageAsync();

        await page.GotoAsync(_gateway.Url + "/app/home");
        await SessionSetup.SignInAsync(page, Zoe);
        await page.WaitForURLAsync(_gateway.Url + "/app/home");

        var seen = await SessionSetup.UpstreamAnswerAsync(page);
        Assert.Equal("/app/home", seen.Path);
        Assert.Equal("zo%C3%AB", seen.Header("X-Subject"));
        Assert.Equal("staff,%C3%A9quipe", seen.Header("X-Groups"));
        var assertion = new JsonWebToken(seen.Header("X-Portcullis-Assertion")!);
        Assert.Equal("zoë", assertion.Subject);
        Assert.Equal(new[] { "staff", "équipe" }, assertion.Claims.Where(c => c.Type == "groups").Select(c => c.Value));
    }
}
