using Microsoft.Playwright;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Sessions;

/// <summary>Browser tests run alone: a loaded machine makes headless Chromium slow to navigate.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class BrowserCollection
{
    public const string Name = "browser";
}

/// <summary>
/// Headless Debian Chromium (/usr/bin/chromium, installed by test.sh) driven by Playwright for .NET; its
/// own browser download is never used. One browser per test class, a fresh context (cookie jar) per test.
/// </summary>
internal sealed class Browser : IAsyncDisposable
{
    public const string ChromiumPath = "/usr/bin/chromium";

    private readonly IPlaywright _playwright;

    private Browser(IPlaywright playwright, IBrowser browser)
    {
        _playwright = playwright;
        Instance = browser;
    }

    public IBrowser Instance { get; }

    public static async Task<Browser> LaunchAsync()
    {
        if (!File.Exists(ChromiumPath)) throw new InvalidOperationException($"{ChromiumPath} is missing: install the Debian chromium package (test.sh does).");
        var playwright = await Playwright.CreateAsync();
        var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions { ExecutablePath = ChromiumPath, Headless = true, Timeout = 60_000 });
        return new Browser(playwright, browser);
    }

    public async Task<IPage> NewPageAsync()
    {
        var context = await Instance.NewContextAsync();
        context.SetDefaultTimeout(45_000);
        context.SetDefaultNavigationTimeout(45_000);
        return await context.NewPageAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await Instance.DisposeAsync();
        _playwright.Dispose();
    }
}

/// <summary>The browser-session test setup: test IdP, echo upstream, and gateway config with a session route.</summary>
internal static class SessionSetup
{
    public const string ClientId = "portal";
    public const string ClientSecret = "portal-secret-0123456789";
    public const string SecretVariable = "PORTAL_SECRET";
    public const string CookieName = "portcullis-test";

    public static Func<string, string?> Environment => name => name == SecretVariable ? ClientSecret : System.Environment.GetEnvironmentVariable(name);

    /// <summary>Routes: /app (group staff), /contractors (group contractors), /public (no auth).</summary>
    public static string Config(BrowserIdentityProvider idp, TestUpstream upstream, string sessionLine = "", string storesLine = "") => $$"""
        identity:
          assertion: { lifetime: 30s }
          sessions:
            providers:
              - name: corp
                authority: "{{idp.Authority}}"
                clientId: {{ClientId}}
                clientSecretEnv: {{SecretVariable}}
                scopes: [openid, profile, email, offline_access]
            cookie: { name: {{CookieName}} }
            {{sessionLine}}
        {{storesLine}}
        routes:
          - name: app
            match: { pathPrefix: /app }
            auth:
              session: corp
              groups: [staff]
              claims: [{ claim: email, emailDomain: [example.test] }]
            cluster: app
          - name: contractors
            match: { pathPrefix: /contractors }
            auth: { session: corp, groups: [contractors] }
            cluster: app
          - name: public
            match: { pathPrefix: /public }
            cluster: app
        clusters:
          app:
            destinations: [{{upstream.Url}}]
        """;

    public static async Task SignInAsync(IPage page, BrowserUser user)
    {
        await page.WaitForURLAsync(url => url.Contains(BrowserIdentityProvider.LoginPath, StringComparison.Ordinal));
        await page.FillAsync("#username", user.Username);
        await page.FillAsync("#password", user.Password);
        await page.ClickAsync("#signin");
    }

    /// <summary>
    /// Waits for the page to reach <paramref name="url"/> after a sign-in; on a timeout says where it is instead and
    /// what it shows (a refused sign-in's problem body), with the gateway's log: "Timeout 45000ms exceeded" alone
    /// left a CI failure unexplained.
    /// </summary>
    public static async Task ArriveAsync(IPage page, string url, TestGateway gateway)
    {
        try
        {
            await page.WaitForURLAsync(url);
        }
        catch (TimeoutException ex)
        {
            var body = await page.InnerTextAsync("body");
            throw new TimeoutException($"{ex.Message}\nexpected {url}, the page is at {page.Url} showing: {body[..Math.Min(body.Length, 2000)]}\ngateway log:\n{gateway.Logs}", ex);
        }
    }

    /// <summary>The echo upstream's JSON answer shown in the page.</summary>
    public static async Task<UpstreamAnswer> UpstreamAnswerAsync(IPage page)
    {
        var text = await page.InnerTextAsync("body");
        return System.Text.Json.JsonSerializer.Deserialize<UpstreamAnswer>(text) ?? throw new InvalidOperationException("no upstream answer: " + text);
    }
}
