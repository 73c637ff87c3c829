using System.Net;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Sessions;

/// <summary>Gateway config and raw-HTTP helpers for the sign-in hardening tests (issue 13).</summary>
internal static class SignInHardeningSetup
{
    /// <summary>
    /// One provider 'corp' at <paramref name="idp"/>; <paramref name="providerLines"/> replace the secret line
    /// (e.g. "publicClient: true") and extra provider keys follow; <paramref name="sessionLines"/> go under sessions.
    /// Routes: /app (any signed-in user), /public (no auth).
    /// </summary>
    public static string Config(BrowserIdentityProvider idp, TestUpstream upstream, string providerLines = "clientSecretEnv: " + SessionSetup.SecretVariable, string sessionLines = "") => $$"""
        identity:
          assertion: { lifetime: 30s }
          sessions:
            providers:
              - name: corp
                authority: "{{idp.Authority}}"
                clientId: {{SessionSetup.ClientId}}
                scopes: [openid, profile, email, offline_access]
        {{Indent(providerLines, 8)}}
            cookie: { name: {{SessionSetup.CookieName}} }
        {{Indent(sessionLines, 4)}}
        routes:
          - name: app
            match: { pathPrefix: /app }
            auth: { session: corp }
            cluster: app
          - name: public
            match: { pathPrefix: /public }
            cluster: app
        clusters:
          app:
            destinations: [{{upstream.Url}}]
        """;

    public static HttpClient RawClient(TestGateway gateway, CookieContainer? cookies = null) =>
        new(new HttpClientHandler { AllowAutoRedirect = false, UseCookies = cookies is not null, CookieContainer = cookies ?? new CookieContainer() })
        {
            BaseAddress = new Uri(gateway.Url),
            Timeout = TimeSpan.FromSeconds(30),
        };

    /// <summary>A page load: GET with the Accept header a browser sends for a document.</summary>
    public static async Task<HttpResponseMessage> PageLoadAsync(HttpClient client, string path, string accept = "text/html,application/xhtml+xml,*/*;q=0.8")
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        request.Headers.TryAddWithoutValidation("Accept", accept);
        return await client.SendAsync(request);
    }

    public static int CountLines(TestGateway gateway, string fragment) => gateway.Logs.Lines.Count(line => line.Contains(fragment, StringComparison.Ordinal));

    private static string Indent(string lines, int spaces) =>
        string.Join("\n", lines.Split('\n').Select(line => line.Length == 0 ? line : new string(' ', spaces) + line.TrimStart()));
}
