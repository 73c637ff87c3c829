using System.Net;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Sessions;

/// <summary>
/// Issue 13 point 9: a provider's authorizationParameters (prompt, acr_values ...) and the login path's
/// ?login_hint= reach the provider's authorization endpoint, directly or through PAR.
/// </summary>
public sealed class AuthorizationParameterTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ConfiguredParameters_AndTheLoginHint_ReachTheProvider(bool pushedAuthorization)
    {
        await using var idp = await BrowserIdentityProvider.StartAsync(pushedAuthorization);
        await using var upstream = await TestUpstream.StartAsync("app");
        await using var gateway = await TestGateway.StartAsync(SignInHardeningSetup.Config(idp, upstream, """
            clientSecretEnv: PORTAL_SECRET
            authorizationParameters: { prompt: consent, acr_values: "urn:example:mfa phr" }
            """), environment: SessionSetup.Environment);
        await idp.RegisterGatewayAsync(SessionSetup.ClientId, SessionSetup.ClientSecret, "corp", gateway.Url);
        using var client = SignInHardeningSetup.RawClient(gateway);

        // A page load on a session route, then the explicit login path with a hint.
        foreach (var path in new[] { "/app/x", "/.portcullis/login/corp?rd=/app/y&login_hint=" + Uri.EscapeDataString("alice@example.test") })
        {
            using var start = await SignInHardeningSetup.PageLoadAsync(client, path);
            Assert.Equal(HttpStatusCode.Found, start.StatusCode);
            // Follow to the provider's authorization endpoint (it records the request, PAR resolved, then asks for the login).
            using var atProvider = await client.GetAsync(start.Headers.Location);
            Assert.Equal(HttpStatusCode.Found, atProvider.StatusCode);
            Assert.Contains(BrowserIdentityProvider.LoginPath, atProvider.Headers.Location!.OriginalString, StringComparison.Ordinal);
        }

        Assert.Equal(2, idp.Authorizations.Count);
        foreach (var request in idp.Authorizations)
        {
            Assert.Equal("consent", request["prompt"]);
            Assert.Equal("urn:example:mfa phr", request["acr_values"]);
        }

        Assert.Equal(pushedAuthorization ? 2 : 0, idp.PushedAuthorizationRequests);
        Assert.False(idp.Authorizations[0].ContainsKey("login_hint"));
        Assert.Equal("alice@example.test", idp.Authorizations[1]["login_hint"]);
    }
}
