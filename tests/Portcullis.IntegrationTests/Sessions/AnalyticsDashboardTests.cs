using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;
using Portcullis.Cli;
using Portcullis.IntegrationTests.Infrastructure;
using static Microsoft.Playwright.Assertions;

namespace Portcullis.IntegrationTests.Sessions;

/// <summary>
/// The analytics dashboard in real headless Chromium against a real gateway with analytics on (DuckDB store,
/// query API) and admin.auth: real traffic through the gateway (routes, API-key consumers, 401s, 5xx), then
/// sign-in, the overview's numbers, the time-range picker, a route page and the samples behind a table cell,
/// with no console error on the way. With PORTCULLIS_UPDATE_SCREENSHOT=1 it writes docs/analytics-dashboard.png.
/// </summary>
[Collection(BrowserCollection.Name)]
public sealed class AnalyticsDashboardTests : IAsyncLifetime
{
    private const string AdminToken = "dashboard-read-token-0a1b2c3d4e5f";

    // What the test sends (below); the dashboard must show exactly these counts.
    private const int ShopOrders = 12;
    private const int AcmeOrders = 8;
    private const int AcmeFailures = 3;   // upstream answers 500
    private const int UnknownKey = 4;     // 401 apikey.unknown, anonymous
    private const int Catalog = 10;       // anonymous 200
    private const int Broken = 5;         // cluster down: 502/503
    private const int Total = ShopOrders + AcmeOrders + AcmeFailures + UnknownKey + Catalog + Broken;

    private Browser _browser = null!;
    private TestUpstream _upstream = null!;
    private TestGateway _gateway = null!;
    private readonly Dictionary<string, string> _keys = [];

    public async Task InitializeAsync()
    {
        // The overview asks six queries per load; a busy machine may take a while (the page refreshes anyway).
        SetDefaultExpectTimeout(30_000);
        _browser = await Browser.LaunchAsync();
        _upstream = await TestUpstream.StartAsync("api");
        _upstream.Handler = static async context =>
        {
            context.Response.StatusCode = context.Request.Path.Value!.Contains("/fail", StringComparison.Ordinal) ? 500 : 200;
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync("{\"ok\":true}");
        };

        var keys = Path.Combine(Path.GetTempPath(), $"portcullis-keys-{Guid.NewGuid():N}.yaml");
        await File.WriteAllTextAsync(keys, "consumers: {}\n");
        foreach (var consumer in new[] { "shop", "acme" })
        {
            using var output = new StringWriter();
            using var errors = new StringWriter();
            Assert.Equal(0, await PortcullisCli.RunAsync(["keys", "create", "--file", keys, "--consumer", consumer], output, errors));
            _keys[consumer] = output.ToString().Split('\n').Select(l => l.TrimEnd('\r')).Single(l => l.StartsWith("key: ", StringComparison.Ordinal))[5..];
        }

        _gateway = await TestGateway.StartAsync($$"""
            identity:
              apiKeys: { file: keys.yaml }
            routes:
              - { name: orders, match: { pathPrefix: /orders }, auth: { apiKey: true }, cluster: api }
              - { name: catalog, match: { pathPrefix: /catalog }, cluster: api }
              - { name: broken, match: { pathPrefix: /broken }, cluster: dead }
              - { name: reports, match: { pathPrefix: /reports }, cluster: api } # the advice page's finding patches it
            clusters:
              api: { destinations: ["{{_upstream.Url}}"] }
              dead: { destinations: ["http://127.0.0.1:{{Ports.GetFree()}}"] }
            analytics:
              path: analytics.duckdb
              flushInterval: 1s
              samples: { successRate: 1 }
            admin:
              auth:
                tokens:
                  - { name: dashboard, scope: read, env: ADMIN_TOKEN }
            """, new Dictionary<string, string> { ["keys.yaml"] = await File.ReadAllTextAsync(keys) },
            environment: name => name == "ADMIN_TOKEN" ? AdminToken : null,
            // The advisor's page lists what a detector registered here finds (the real ones need hours of traffic).
            configureServices: services => services.AddSingleton<Portcullis.Advice.IAdviceDetector, Portcullis.IntegrationTests.Advice.AdviceApiTests.FixedDetector>());
        File.Delete(keys);
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _upstream.DisposeAsync();
        await _browser.DisposeAsync();
    }

    private async Task SendTrafficAsync()
    {
        async Task Send(string path, string? key, int times)
        {
            for (var i = 0; i < times; i++)
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, path.Replace("{i}", i.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal));
                if (key is not null) request.Headers.Add("X-Api-Key", key);
                using var response = await _gateway.Client.SendAsync(request);
            }
        }

        await Send("/orders/{i}", _keys["shop"], ShopOrders);
        await Send("/orders/{i}", _keys["acme"], AcmeOrders);
        await Send("/orders/fail/{i}", _keys["acme"], AcmeFailures);
        await Send("/orders/{i}", "pk_not_a_key_000000000000000000", UnknownKey);
        await Send("/catalog/{i}", null, Catalog);
        await Send("/broken/{i}", null, Broken);
    }

    private async Task<JsonElement> AnalyticsAsync(string pathAndQuery)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, pathAndQuery);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", AdminToken);
        using var response = await _gateway.Admin.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await response.Content.ReadFromJsonAsync<JsonElement>();
    }

    private static ILocator Cell(IPage page, string table, string key, int column) =>
        page.Locator($"#{table} tbody tr[data-key=\"{key}\"] td:nth-child({column})");

    [Fact]
    public async Task The_dashboard_shows_the_gateways_traffic_after_sign_in_and_follows_the_range_and_links()
    {
        await SendTrafficAsync();
        // Flushed: the store has every request the clients sent.
        await Eventually.TrueAsync(async () => (await AnalyticsAsync("/admin/analytics/summary")).GetProperty("requests").GetInt64() == Total,
            "the analytics store to hold every request", context: async () => _gateway.Logs.ToString());

        // No credential: a script gets 401, a browser is sent to the sign-in form.
        using (var anonymous = await _gateway.Admin.GetAsync("/ui/")) Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        var page = await _browser.NewPageAsync();
        await page.SetViewportSizeAsync(1400, 1100);
        var problems = new List<string>();
        page.Console += (_, message) =>
        {
            if (message.Type == "error") problems.Add($"console {message.Type}: {message.Text}");
        };
        page.PageError += (_, error) => problems.Add("page error: " + error);

        await page.GotoAsync(_gateway.AdminUrl + "/ui/");
        Assert.StartsWith(_gateway.AdminUrl + "/ui/login?next=", page.Url, StringComparison.Ordinal);
        await page.FillAsync("#token", AdminToken);
        await page.ClickAsync("#signin");
        await page.WaitForURLAsync(_gateway.AdminUrl + "/ui/");

        try
        {
            await CheckDashboardAsync(page);
        }
        catch (Exception ex) when (ex is PlaywrightException or Xunit.Sdk.XunitException)
        {
            // What the page said (its status line shows a failed query) and what the console saw.
            throw new Xunit.Sdk.XunitException($"{ex.Message}\nat {page.Url}, status: {await page.Locator("#status").TextContentAsync()}\n{string.Join("\n", problems)}\n{_gateway.Logs}");
        }

        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [Fact]
    public async Task The_advice_page_lists_the_findings_with_evidence_and_patch_and_the_cookie_cannot_post()
    {
        var page = await _browser.NewPageAsync();
        var problems = new List<string>();
        page.Console += (_, message) =>
        {
            if (message.Type == "error") problems.Add($"console {message.Type}: {message.Text}");
        };
        page.PageError += (_, error) => problems.Add("page error: " + error);
        await page.GotoAsync(_gateway.AdminUrl + "/ui/advice");
        await page.FillAsync("#token", AdminToken);
        await page.ClickAsync("#signin");
        await page.WaitForURLAsync(_gateway.AdminUrl + "/ui/advice");

        var scanner = Portcullis.Advice.Finding.MakeId(Portcullis.Advice.FindingKinds.UnmatchedScanner, new Portcullis.Advice.FindingSubject(Portcullis.Advice.SubjectKind.Client, "10.0.0.7"));
        var suggestion = Portcullis.Advice.Finding.MakeId(Portcullis.Advice.FindingKinds.RateLimitSuggested, new Portcullis.Advice.FindingSubject(Portcullis.Advice.SubjectKind.Route, "reports"));
        try
        {
            await Expect(page.Locator($"#finding-{scanner} .title")).ToHaveTextAsync("10.0.0.7 probes for /.env and /wp-admin");
            await Expect(page.Locator($"#finding-{scanner}")).ToHaveAttributeAsync("data-severity", "warning");
            await Expect(page.Locator($"#evidence-{suggestion} tbody tr td:nth-child(2)")).ToHaveTextAsync("9.5 req/s");
            await Expect(page.Locator($"#patch-{suggestion}")).ToContainTextAsync("suggested-reports");
            await Expect(page.Locator($"#finding-{suggestion} pre.command")).ToContainTextAsync($"/admin/advice/{suggestion}/acknowledge");
            await Expect(page.Locator("#nav-advice")).ToBeVisibleAsync();

            // Filtered by severity: only the warning stays.
            await page.GotoAsync(_gateway.AdminUrl + "/ui/advice?severity=warning");
            await Expect(page.Locator("#advice-severity")).ToHaveValueAsync("warning");
            await Expect(page.Locator("article.finding")).ToHaveCountAsync(1);
            await Expect(page.Locator($"#finding-{scanner}")).ToBeVisibleAsync();
        }
        catch (Exception ex) when (ex is PlaywrightException or Xunit.Sdk.XunitException)
        {
            throw new Xunit.Sdk.XunitException($"{ex.Message}\nat {page.Url}, status: {await page.Locator("#status").TextContentAsync()}\n{string.Join("\n", problems)}\n{_gateway.Logs}");
        }

        Assert.True(problems.Count == 0, string.Join("\n", problems));

        // The sign-in cookie reads only: a POST from the page is refused (an admin token is needed).
        var status = await page.EvaluateAsync<int>($"async () => (await fetch('/admin/advice/{scanner}/mute', {{ method: 'POST' }})).status");
        Assert.Equal(401, status);
    }

    private static async Task CheckDashboardAsync(IPage page)
    {
        // The overview: totals, tables and charts from the generated traffic.
        var total = page.Locator("#total-requests");
        await Expect(total).ToHaveTextAsync(Total.ToString(System.Globalization.CultureInfo.InvariantCulture));
        await Expect(page.Locator("#total-refused")).ToHaveTextAsync(UnknownKey.ToString(System.Globalization.CultureInfo.InvariantCulture));
        await Expect(Cell(page, "top-routes", "orders", 2)).ToHaveTextAsync($"{ShopOrders + AcmeOrders + AcmeFailures + UnknownKey}");
        await Expect(Cell(page, "top-routes", "catalog", 2)).ToHaveTextAsync($"{Catalog}");
        await Expect(Cell(page, "top-routes", "broken", 2)).ToHaveTextAsync($"{Broken}");
        await Expect(Cell(page, "top-routes", "broken", 3)).ToHaveTextAsync($"{Broken}"); // errors
        await Expect(Cell(page, "top-consumers", "shop", 2)).ToHaveTextAsync($"{ShopOrders}");
        await Expect(Cell(page, "top-consumers", "acme", 2)).ToHaveTextAsync($"{AcmeOrders + AcmeFailures}");
        await Expect(Cell(page, "top-consumers", "(none)", 2)).ToHaveTextAsync($"{UnknownKey + Catalog + Broken}");
        await Expect(Cell(page, "status-classes", "5xx", 2)).ToHaveTextAsync($"{AcmeFailures + Broken}");
        await Expect(Cell(page, "reasons", "apikey.unknown", 2)).ToHaveTextAsync($"{UnknownKey}");
        Assert.Equal(Total, await ChartTotalAsync(page, "chart-rps", multiplyByStep: true));
        Assert.True(await ChartTotalAsync(page, "chart-errors") > 0, "the error-rate chart has no errors");
        Assert.True(await page.Locator("#chart-latency").GetAttributeAsync("data-points") is { } points && int.Parse(points, System.Globalization.CultureInfo.InvariantCulture) > 0);
        Assert.True(await ChartTotalAsync(page, "chart-reasons") >= UnknownKey, "the refusals chart misses apikey.unknown");
        foreach (var chart in new[] { "chart-rps", "chart-errors", "chart-latency", "chart-reasons" }) await Expect(page.Locator($"#{chart} canvas")).ToHaveCountAsync(1);

        if (Environment.GetEnvironmentVariable("PORTCULLIS_UPDATE_SCREENSHOT") is "1" or "true")
        {
            await page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(RepoRoot(), "docs", "analytics-dashboard.png"), FullPage = true });
        }

        await page.ClickAsync("#pause"); // no refresh under the test's feet from here on
        await Expect(page.Locator("#pause")).ToHaveTextAsync("Resume");

        // A table cell links to the rows behind it: the broken route's errors, as samples.
        await Cell(page, "top-routes", "broken", 3).Locator("a").ClickAsync();
        await page.WaitForURLAsync(url => url.Contains("/ui/samples?", StringComparison.Ordinal) && url.Contains("route=broken", StringComparison.Ordinal) && url.Contains("status=5xx", StringComparison.Ordinal));
        var statuses = page.Locator("#samples tbody tr td:nth-child(5)");
        await Expect(statuses).ToHaveCountAsync(Broken);
        foreach (var status in await statuses.AllTextContentsAsync()) Assert.InRange(int.Parse(status, System.Globalization.CultureInfo.InvariantCulture), 500, 599);
        await page.ClickAsync("#nav-overview");
        await page.WaitForURLAsync(url => new Uri(url).AbsolutePath == "/ui/");
        await Expect(total).ToHaveTextAsync($"{Total}");

        // The range picker: the requests' from/to follow it, and so do the numbers.
        var firstFrom = await page.Locator("#shown-range").GetAttributeAsync("data-from");
        var quarter = await page.RunAndWaitForRequestAsync(() => page.SelectOptionAsync("#range", "15m"), r => IsSummary(r, "now-15m"));
        Assert.Contains("to=now", quarter.Url, StringComparison.Ordinal);
        await Expect(total).ToHaveTextAsync($"{Total}"); // all of it was sent in the last minutes
        await Expect(page.Locator("#shown-range")).Not.ToHaveAttributeAsync("data-from", firstFrom!);

        var yesterday = DateTime.UtcNow.AddDays(-1);
        var from = new DateTime(yesterday.Year, yesterday.Month, yesterday.Day, 10, 0, 0, DateTimeKind.Utc);
        await page.SelectOptionAsync("#range", "custom");
        await page.FillAsync("#from", from.ToString("yyyy-MM-dd'T'HH:mm", System.Globalization.CultureInfo.InvariantCulture));
        await page.FillAsync("#to", from.AddHours(1).ToString("yyyy-MM-dd'T'HH:mm", System.Globalization.CultureInfo.InvariantCulture));
        var custom = await page.RunAndWaitForRequestAsync(() => page.ClickAsync("#apply"), r => IsSummary(r, from.ToString("yyyy-MM-dd'T'HH", System.Globalization.CultureInfo.InvariantCulture)));
        Assert.Contains("to=" + Uri.EscapeDataString(from.AddHours(1).ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture)), custom.Url, StringComparison.Ordinal);
        await Expect(total).ToHaveTextAsync("0");
        await Expect(page.Locator("#top-routes.empty")).ToHaveCountAsync(1);
        Assert.Contains("from=" + Uri.EscapeDataString(from.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture)), page.Url, StringComparison.Ordinal);

        await page.RunAndWaitForRequestAsync(() => page.SelectOptionAsync("#range", "1h"), r => IsSummary(r, "now-1h"));
        await Expect(total).ToHaveTextAsync($"{Total}");

        // A route link opens that route's page, with its own numbers.
        await page.Locator("#top-routes").GetByRole(AriaRole.Link, new() { Name = "orders", Exact = true }).ClickAsync();
        await page.WaitForURLAsync(url => url.Contains("/ui/route?", StringComparison.Ordinal) && url.Contains("route=orders", StringComparison.Ordinal));
        await Expect(page.Locator("#title")).ToHaveTextAsync("Route orders");
        await Expect(total).ToHaveTextAsync($"{ShopOrders + AcmeOrders + AcmeFailures + UnknownKey}");
        await Expect(Cell(page, "top-consumers", "shop", 2)).ToHaveTextAsync($"{ShopOrders}");
        await Expect(Cell(page, "top-consumers", "acme", 2)).ToHaveTextAsync($"{AcmeOrders + AcmeFailures}");
        await Expect(page.Locator("#top-routes")).ToHaveCountAsync(0);

        // And a consumer link there, that consumer's page.
        await page.Locator("#top-consumers").GetByRole(AriaRole.Link, new() { Name = "shop", Exact = true }).ClickAsync();
        await page.WaitForURLAsync(url => url.Contains("/ui/consumer?", StringComparison.Ordinal) && url.Contains("consumer=shop", StringComparison.Ordinal));
        await Expect(page.Locator("#title")).ToHaveTextAsync("Consumer shop");
        await Expect(total).ToHaveTextAsync($"{ShopOrders}");
        await Expect(Cell(page, "top-routes", "orders", 2)).ToHaveTextAsync($"{ShopOrders}");
        await Expect(page.Locator("#recent-samples tbody tr")).ToHaveCountAsync(ShopOrders); // every success is sampled here (successRate: 1)
    }

    private static bool IsSummary(IRequest request, string from) =>
        request.Url.Contains("/admin/analytics/summary?", StringComparison.Ordinal) && Uri.UnescapeDataString(new Uri(request.Url).Query).Contains("from=" + from, StringComparison.Ordinal);

    // The chart's data-total: the sum of its plotted values (requests/s × step gives requests back).
    private static async Task<double> ChartTotalAsync(IPage page, string id, bool multiplyByStep = false)
    {
        var chart = page.Locator("#" + id);
        var value = double.Parse(await chart.GetAttributeAsync("data-total") ?? "0", System.Globalization.CultureInfo.InvariantCulture);
        return multiplyByStep ? Math.Round(value * double.Parse(await chart.GetAttributeAsync("data-step") ?? "1", System.Globalization.CultureInfo.InvariantCulture)) : value;
    }

    private static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Portcullis.sln"))) return dir.FullName;
        }

        throw new InvalidOperationException($"Portcullis.sln not found above {AppContext.BaseDirectory}");
    }
}
