using System.Net;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Identity;

/// <summary>
/// The gateway's own paths on the route listeners (the assertion JWKS, the session logout and login paths) are
/// endpoints ahead of every route: answered as spelled and to their methods, anything else goes on to the
/// routes; the JWKS path follows reloads.
/// </summary>
public sealed class GatewayPathsTests : IAsyncLifetime
{
    private TestUpstream _upstream = null!;

    public async Task InitializeAsync() => _upstream = await TestUpstream.StartAsync("app");

    public async Task DisposeAsync() => await _upstream.DisposeAsync();

    private string Config(string jwksPath) => $$"""
        identity:
          assertion: { jwksPath: {{jwksPath}} }
          sessions:
            cookie: { name: sid }
            providers:
              - { name: corp, authority: "http://127.0.0.1:9/", clientId: gateway, clientSecretEnv: SESSION_SECRET }
        routes:
          - { name: all, match: { pathPrefix: / }, cluster: app }
        clusters:
          app: { destinations: [{{_upstream.Url}}] }
        """;

    private static Func<string, string?> Environment => name => name == "SESSION_SECRET" ? "s3cret-s3cret-s3cret" : null;

    private async Task AssertProxiedAsync(TestGateway gateway, HttpMethod method, string path)
    {
        var before = _upstream.Requests;
        using var response = await gateway.Client.SendAsync(new HttpRequestMessage(method, path));
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{method} {path}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        Assert.Equal(before + 1, _upstream.Requests);
    }

    [Fact]
    public async Task The_jwks_answers_ahead_of_routes_only_to_get_as_spelled_and_follows_reloads()
    {
        await using var gateway = await TestGateway.StartAsync(Config("/keys/jwks.json"), environment: Environment);

        using (var jwks = await gateway.Client.GetAsync("/keys/jwks.json"))
        {
            Assert.Equal(HttpStatusCode.OK, jwks.StatusCode);
            Assert.Equal("application/jwk-set+json", jwks.Content.Headers.ContentType?.MediaType);
            Assert.Contains("\"keys\"", await jwks.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        Assert.Equal(0, _upstream.Requests);
        await AssertProxiedAsync(gateway, HttpMethod.Head, "/keys/jwks.json");
        await AssertProxiedAsync(gateway, HttpMethod.Post, "/keys/jwks.json");
        await AssertProxiedAsync(gateway, HttpMethod.Get, "/KEYS/jwks.json");
        await AssertProxiedAsync(gateway, HttpMethod.Get, "/keys/jwks.json/");

        // A reload moves it: the new path answers, the old one is an ordinary path again.
        await gateway.WriteConfigAsync(Config("/other/jwks.json"));
        var (status, _) = await gateway.ReloadAsync();
        Assert.Equal(200, status);
        using (var moved = await gateway.Client.GetAsync("/other/jwks.json"))
        {
            Assert.Equal("application/jwk-set+json", moved.Content.Headers.ContentType?.MediaType);
        }

        await AssertProxiedAsync(gateway, HttpMethod.Get, "/keys/jwks.json");
    }

    [Fact]
    public async Task Session_paths_answer_ahead_of_routes_as_spelled()
    {
        await using var gateway = await TestGateway.StartAsync(Config("/.well-known/portcullis/jwks.json"), environment: Environment);

        // The logout path: a confirmation page for GET, 405 with Allow for a method it does not take.
        using (var confirm = await gateway.Client.GetAsync("/.portcullis/logout"))
        {
            Assert.Equal(HttpStatusCode.OK, confirm.StatusCode);
            Assert.Contains("Sign out", await confirm.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        using (var put = await gateway.Client.PutAsync("/.portcullis/logout", null))
        {
            Assert.Equal(HttpStatusCode.MethodNotAllowed, put.StatusCode);
            Assert.Equal("GET, HEAD, POST", string.Join(", ", put.Content.Headers.Allow));
        }

        // The login path: an unknown provider is the gateway's own 404 page, never the route.
        using (var unknown = await gateway.Client.GetAsync("/.portcullis/login/nobody"))
        {
            Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        }

        Assert.Equal(0, _upstream.Requests);

        // Other spellings and other paths under /.portcullis/ go on to the routes, as they always did.
        await AssertProxiedAsync(gateway, HttpMethod.Get, "/.PORTCULLIS/LOGOUT");
        await AssertProxiedAsync(gateway, HttpMethod.Get, "/.portcullis/logout/");
        await AssertProxiedAsync(gateway, HttpMethod.Get, "/.portcullis/LOGIN/corp");
        await AssertProxiedAsync(gateway, HttpMethod.Get, "/.portcullis/other");
    }
}
