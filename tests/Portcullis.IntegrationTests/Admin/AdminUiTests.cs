using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Admin;

/// <summary>
/// The dashboard's files and sign-in on a real gateway (HTTP only; the browser test is AnalyticsDashboardTests):
/// /ui/ behind admin.auth, the sign-in cookie and where it is (not) accepted, security headers, revalidation,
/// cross-site forms, open redirects, token rotation and the audit trail.
/// </summary>
public sealed class AdminUiTests : IAsyncLifetime
{
    private const string OpsToken = "ops-token-5f1c0d9e8b7a6f5e4d3c";
    private const string ViewerToken = "viewer-token-9a8b7c6d5e4f3a2b";

    private TestGateway _gateway = null!;
    private HttpClient _client = null!;

    private string AuditPath => Path.Combine(_gateway.Directory, "audit.log");

    private static string Config(string tokensLines, int upstreamPort = 9) => $$"""
        routes:
          - { name: all, match: { pathPrefix: / }, cluster: api }
        clusters:
          api: { destinations: [{ name: a, address: "http://127.0.0.1:{{upstreamPort}}" }] }
        observability:
          audit: { path: audit.log }
        admin:
          auth:
            tokens:
        {{tokensLines}}
        """;

    private const string Tokens = """
              - { name: ops, scope: admin, env: OPS_TOKEN }
              - { name: viewer, scope: read, env: VIEWER_TOKEN }
        """;

    private string _opsToken = OpsToken;

    public async Task InitializeAsync()
    {
        _gateway = await TestGateway.StartAsync(Config(Tokens), environment: name => name switch
        {
            "OPS_TOKEN" => _opsToken,
            "VIEWER_TOKEN" => ViewerToken,
            _ => null,
        });
        // Redirects and cookies by hand: the test looks at each answer.
        _client = new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = false, UseCookies = false }) { BaseAddress = new Uri(_gateway.AdminUrl) };
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        await _gateway.DisposeAsync();
    }

    private async Task<HttpResponseMessage> GetAsync(string path, Action<HttpRequestMessage>? configure = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        configure?.Invoke(request);
        var response = await _client.SendAsync(request);
        await response.Content.LoadIntoBufferAsync();
        return response;
    }

    private async Task<HttpResponseMessage> SignInAsync(string token, string next = "/ui/", string? origin = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/ui/login")
        {
            Content = new FormUrlEncodedContent([new("token", token), new("next", next)]),
        };
        request.Headers.Add("Origin", origin ?? _gateway.AdminUrl);
        var response = await _client.SendAsync(request);
        await response.Content.LoadIntoBufferAsync();
        return response;
    }

    /// <summary>The "name=value" of the sign-in cookie set for <paramref name="path"/>.</summary>
    private static string CookieFor(HttpResponseMessage response, string path)
    {
        var header = response.Headers.GetValues("Set-Cookie").Single(h => h.Contains("path=" + path + ";", StringComparison.OrdinalIgnoreCase) || h.EndsWith("path=" + path, StringComparison.OrdinalIgnoreCase));
        return header.Split(';')[0];
    }

    private static async Task AssertProblemAsync(HttpResponseMessage response, HttpStatusCode status, string reason)
    {
        Assert.Equal(status, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal(reason, (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("reason").GetString());
    }

    [Fact]
    public async Task Without_credentials_the_page_is_401_for_scripts_and_a_redirect_to_sign_in_for_a_browser()
    {
        await AssertProblemAsync(await GetAsync("/ui/"), HttpStatusCode.Unauthorized, "admin.unauthenticated");
        await AssertProblemAsync(await GetAsync("/ui/app.js"), HttpStatusCode.Unauthorized, "admin.unauthenticated");

        var navigation = await GetAsync("/ui/route?route=orders", r => r.Headers.Add("Sec-Fetch-Mode", "navigate"));
        Assert.Equal(HttpStatusCode.SeeOther, navigation.StatusCode);
        Assert.Equal("/ui/login?next=%2Fui%2Froute%3Froute%3Dorders", navigation.Headers.Location?.OriginalString);

        // The sign-in form and its stylesheet need no credential.
        var form = await GetAsync("/ui/login");
        Assert.Equal(HttpStatusCode.OK, form.StatusCode);
        Assert.Contains("name=\"token\"", await form.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, (await GetAsync("/ui/app.css")).StatusCode);
    }

    [Fact]
    public async Task With_a_bearer_token_the_files_come_with_strict_headers_and_revalidate_and_unknown_paths_are_404()
    {
        void Bearer(HttpRequestMessage r) => r.Headers.Authorization = new AuthenticationHeaderValue("Bearer", ViewerToken);
        var page = await GetAsync("/ui/", Bearer);
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
        var csp = string.Join(",", page.Headers.GetValues("Content-Security-Policy"));
        Assert.Contains("script-src 'self'", csp, StringComparison.Ordinal);
        Assert.Contains("style-src 'self'", csp, StringComparison.Ordinal);
        Assert.DoesNotContain("unsafe-inline", csp, StringComparison.Ordinal);
        Assert.Equal("nosniff", page.Headers.GetValues("X-Content-Type-Options").Single());
        Assert.True(page.Headers.CacheControl is { Private: true, NoCache: true }, page.Headers.CacheControl?.ToString());
        var html = await page.Content.ReadAsStringAsync();
        Assert.DoesNotContain("<script>", html, StringComparison.Ordinal); // no inline script: the CSP would refuse it
        Assert.DoesNotContain("style=", html, StringComparison.Ordinal);

        foreach (var path in new[] { "/ui/route", "/ui/consumer", "/ui/samples" }) Assert.Equal(html, await (await GetAsync(path, Bearer)).Content.ReadAsStringAsync());
        var script = await GetAsync("/ui/app.js", Bearer);
        Assert.Equal("text/javascript", script.Content.Headers.ContentType?.MediaType);
        var uplot = await GetAsync("/ui/vendor/uPlot.iife.min.js", Bearer);
        Assert.Contains("uPlot", await uplot.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, (await GetAsync("/ui/vendor/uPlot.LICENSE.txt", Bearer)).StatusCode);

        var etag = script.Headers.ETag!;
        var again = await GetAsync("/ui/app.js", r =>
        {
            Bearer(r);
            r.Headers.IfNoneMatch.Add(etag);
        });
        Assert.Equal(HttpStatusCode.NotModified, again.StatusCode);
        Assert.Empty(await again.Content.ReadAsByteArrayAsync());

        var missing = await GetAsync("/ui/nope.js", Bearer);
        await AssertProblemAsync(missing, HttpStatusCode.NotFound, "admin.not-found");
        Assert.Equal("nosniff", missing.Headers.GetValues("X-Content-Type-Options").Single());
        await AssertProblemAsync(await GetAsync("/ui/App.js", Bearer), HttpStatusCode.NotFound, "admin.not-found");
        Assert.Equal(HttpStatusCode.PermanentRedirect, (await GetAsync("/ui", Bearer)).StatusCode);
    }

    [Fact]
    public async Task Signing_in_sets_a_read_only_cookie_for_the_dashboard_and_analytics_reads_only()
    {
        var wrong = await SignInAsync("not-a-token-at-all-0000");
        Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
        Assert.False(wrong.Headers.Contains("Set-Cookie"));
        Assert.Contains("not one of the admin API", await wrong.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        // An admin-scope token: the cookie still only reads.
        var signedIn = await SignInAsync(OpsToken, next: "/ui/route?route=orders");
        Assert.Equal(HttpStatusCode.SeeOther, signedIn.StatusCode);
        Assert.Equal("/ui/route?route=orders", signedIn.Headers.Location?.OriginalString);
        var cookies = signedIn.Headers.GetValues("Set-Cookie").ToList();
        Assert.Equal(3, cookies.Count); // /ui, /admin/analytics, /admin/advice
        Assert.All(cookies, c =>
        {
            Assert.StartsWith("portcullis-ui=", c, StringComparison.Ordinal);
            Assert.Contains("httponly", c, StringComparison.OrdinalIgnoreCase);
            Assert.Contains("samesite=strict", c, StringComparison.OrdinalIgnoreCase);
            Assert.DoesNotContain("secure", c.Replace("__Secure", "", StringComparison.Ordinal), StringComparison.OrdinalIgnoreCase); // plain HTTP listener
            Assert.Contains("expires=", c, StringComparison.OrdinalIgnoreCase);
            Assert.DoesNotContain(OpsToken, c, StringComparison.Ordinal);
        });
        var uiCookie = CookieFor(signedIn, "/ui");
        var analyticsCookie = CookieFor(signedIn, "/admin/analytics");
        void With(HttpRequestMessage r, string cookie) => r.Headers.Add("Cookie", cookie);

        Assert.Equal(HttpStatusCode.OK, (await GetAsync("/ui/", r => With(r, uiCookie))).StatusCode);
        // Accepted on the analytics API: past authentication (whatever the API answers, it is not 401/403).
        var analytics = await GetAsync("/admin/analytics/summary", r => With(r, analyticsCookie));
        Assert.NotEqual(HttpStatusCode.Unauthorized, analytics.StatusCode);
        Assert.NotEqual(HttpStatusCode.Forbidden, analytics.StatusCode);

        // The advisor's findings are read with it too, but never acknowledged or muted.
        var adviceCookie = CookieFor(signedIn, "/admin/advice");
        var advice = await GetAsync("/admin/advice", r => With(r, adviceCookie));
        Assert.NotEqual(HttpStatusCode.Unauthorized, advice.StatusCode);
        Assert.NotEqual(HttpStatusCode.Forbidden, advice.StatusCode);
        using (var mute = new HttpRequestMessage(HttpMethod.Post, "/admin/advice/000000000000/mute"))
        {
            With(mute, adviceCookie);
            await AssertProblemAsync(await _client.SendAsync(mute), HttpStatusCode.Unauthorized, "admin.unauthenticated");
        }

        // Nowhere else, and never for a POST (a cross-site form could send it).
        await AssertProblemAsync(await GetAsync("/admin/config", r => With(r, analyticsCookie)), HttpStatusCode.Unauthorized, "admin.unauthenticated");
        using (var reload = new HttpRequestMessage(HttpMethod.Post, "/admin/reload"))
        {
            With(reload, analyticsCookie);
            await AssertProblemAsync(await _client.SendAsync(reload), HttpStatusCode.Unauthorized, "admin.unauthenticated");
        }

        // A tampered cookie is no cookie.
        await AssertProblemAsync(await GetAsync("/ui/", r => With(r, uiCookie[..^4] + "AAAA")), HttpStatusCode.Unauthorized, "admin.unauthenticated");

        // A bearer token that is wrong is refused even with a good cookie: the cookie stands in only for no credential.
        await AssertProblemAsync(await GetAsync("/ui/", r =>
        {
            With(r, uiCookie);
            r.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "not-a-token-at-all-0000");
        }), HttpStatusCode.Unauthorized, "admin.token-invalid");

        // Signing out clears all three cookies.
        using var logout = new HttpRequestMessage(HttpMethod.Post, "/ui/logout");
        With(logout, uiCookie);
        logout.Headers.Add("Origin", _gateway.AdminUrl);
        var loggedOut = await _client.SendAsync(logout);
        Assert.Equal(HttpStatusCode.SeeOther, loggedOut.StatusCode);
        Assert.Equal("/ui/login", loggedOut.Headers.Location?.OriginalString);
        Assert.Equal(3, loggedOut.Headers.GetValues("Set-Cookie").Count(c => c.StartsWith("portcullis-ui=;", StringComparison.Ordinal)));

        var records = await AuditRecordsAsync(r => r.Count(x => Type(x) is "admin.ui-signin" or "admin.ui-signout") == 3);
        var failed = records.Single(r => Type(r) == "admin.ui-signin" && r.GetProperty("result").GetString() == "failed");
        Assert.Equal("token:unknown", failed.GetProperty("actor").GetString());
        Assert.Equal("admin.token-invalid", failed.GetProperty("reason").GetString());
        Assert.Equal("127.0.0.1", failed.GetProperty("clientIp").GetString());
        Assert.Equal("token:ops", records.Single(r => Type(r) == "admin.ui-signin" && r.GetProperty("result").GetString() == "ok").GetProperty("actor").GetString());
        Assert.Equal("ui:ops", records.Single(r => Type(r) == "admin.ui-signout").GetProperty("actor").GetString());
        var text = await File.ReadAllTextAsync(AuditPath);
        Assert.DoesNotContain(OpsToken, text, StringComparison.Ordinal);
        Assert.DoesNotContain("not-a-token-at-all-0000", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Rotating_the_token_ends_its_dashboard_sessions()
    {
        var cookie = CookieFor(await SignInAsync(OpsToken), "/ui");
        Assert.Equal(HttpStatusCode.OK, (await GetAsync("/ui/", r => r.Headers.Add("Cookie", cookie))).StatusCode);

        // Same name, new secret: the old token's cookie no longer matches.
        _opsToken = "ops-token-rotated-1234567890ab";
        var generation = _gateway.Generation;
        await _gateway.WriteConfigAsync(Config(Tokens, upstreamPort: 10));
        await _gateway.WaitForGenerationAsync(generation);
        await AssertProblemAsync(await GetAsync("/ui/", r => r.Headers.Add("Cookie", cookie)), HttpStatusCode.Unauthorized, "admin.unauthenticated");
        var fresh = CookieFor(await SignInAsync(_opsToken), "/ui");
        Assert.Equal(HttpStatusCode.OK, (await GetAsync("/ui/", r => r.Headers.Add("Cookie", fresh))).StatusCode);
    }

    [Fact]
    public async Task A_sign_in_posted_from_another_site_is_refused_and_next_never_leaves_the_dashboard()
    {
        var crossSite = await SignInAsync(OpsToken, origin: "http://evil.example");
        await AssertProblemAsync(crossSite, HttpStatusCode.Forbidden, "admin.ui-cross-origin");
        Assert.False(crossSite.Headers.Contains("Set-Cookie"));
        // A browser says where the form came from in Sec-Fetch-Site, which decides when present.
        using (var fetchSite = new HttpRequestMessage(HttpMethod.Post, "/ui/login") { Content = new FormUrlEncodedContent([new("token", OpsToken)]) })
        {
            fetchSite.Headers.Add("Sec-Fetch-Site", "cross-site");
            await AssertProblemAsync(await _client.SendAsync(fetchSite), HttpStatusCode.Forbidden, "admin.ui-cross-origin");
        }

        foreach (var next in new[] { "//evil.example/ui/", "https://evil.example/", "/ui//evil.example", "/admin/config", "/ui/login?next=x", "/ui/\\evil" })
        {
            var answer = await SignInAsync(ViewerToken, next);
            Assert.Equal(HttpStatusCode.SeeOther, answer.StatusCode);
            Assert.Equal("/ui/", answer.Headers.Location?.OriginalString);
        }

        // The value is echoed into the form HTML-encoded.
        var form = await GetAsync("/ui/login?next=" + Uri.EscapeDataString("/ui/samples?route=\"><script>x</script>"));
        var html = await form.Content.ReadAsStringAsync();
        Assert.DoesNotContain("<script>x", html, StringComparison.Ordinal);
        Assert.Contains("&quot;&gt;&lt;script&gt;", html, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_loopback_admin_listener_without_admin_auth_serves_the_dashboard_without_sign_in()
    {
        await using var open = await TestGateway.StartAsync("""
            routes:
              - { name: all, match: { pathPrefix: / }, cluster: api }
            clusters:
              api: { destinations: [{ name: a, address: "http://127.0.0.1:9" }] }
            """);
        using var client = new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = false }) { BaseAddress = new Uri(open.AdminUrl) };
        using var page = await client.GetAsync("/ui/");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Contains("/ui/app.js", await page.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        using var login = await client.GetAsync("/ui/login");
        Assert.Equal(HttpStatusCode.SeeOther, login.StatusCode);
        Assert.Equal("/ui/", login.Headers.Location?.OriginalString);
    }

    private static string? Type(JsonElement record) => record.GetProperty("type").GetString();

    private async Task<List<JsonElement>> AuditRecordsAsync(Func<List<JsonElement>, bool> until)
    {
        var records = new List<JsonElement>();
        await Eventually.TrueAsync(async () =>
        {
            records.Clear();
            await using var stream = new FileStream(AuditPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            using var reader = new StreamReader(stream);
            foreach (var line in (await reader.ReadToEndAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries)) records.Add(JsonDocument.Parse(line).RootElement.Clone());
            return until(records);
        }, "the dashboard's audit records");
        return records;
    }
}
