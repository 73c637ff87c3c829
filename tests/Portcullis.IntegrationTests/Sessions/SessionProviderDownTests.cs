using System.Net;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Sessions;

/// <summary>
/// A session provider that cannot be reached (discovery fails): a page load on a session route and the explicit
/// login path both get a plain 503 "Sign-in unavailable" page with Retry-After, never a bare 500 or internals.
/// </summary>
public sealed class SessionProviderDownTests : IAsyncLifetime
{
    private TestGateway _gateway = null!;

    public async Task InitializeAsync()
    {
        var closedPort = Ports.GetFree(); // nothing listens there
        _gateway = await TestGateway.StartAsync($$"""
            identity:
              sessions:
                providers:
                  - name: corp
                    authority: "http://127.0.0.1:{{closedPort}}/"
                    clientId: portal
                    clientSecretEnv: {{SessionSetup.SecretVariable}}
                cookie: { name: {{SessionSetup.CookieName}} }
            routes:
              - name: app
                match: { pathPrefix: /app }
                auth: { session: corp }
                cluster: app
            clusters:
              app:
                destinations: [http://127.0.0.1:{{closedPort}}]
            """, environment: SessionSetup.Environment);
    }

    public async Task DisposeAsync() => await _gateway.DisposeAsync();

    [Theory]
    [InlineData("/app/page")]
    [InlineData("/.portcullis/login/corp?rd=/app/page")]
    public async Task PageLoad_WhileTheProviderIsDown_GetsASignInUnavailablePage(string path)
    {
        using var client = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = new Uri(_gateway.Url) };
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        request.Headers.Accept.ParseAdd("text/html");
        using var response = await client.SendAsync(request);

        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("text/html; charset=utf-8", response.Content.Headers.ContentType?.ToString());
        Assert.NotNull(response.Headers.RetryAfter);
        var html = await response.Content.ReadAsStringAsync();
        Assert.Contains("<title>Sign-in unavailable</title>", html, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", html, StringComparison.Ordinal);
        Assert.DoesNotContain("IDX", html, StringComparison.Ordinal);
    }
}
