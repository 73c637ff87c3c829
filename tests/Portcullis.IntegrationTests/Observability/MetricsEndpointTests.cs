using System.Globalization;
using System.Net;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Observability;

/// <summary>A scrape of the Prometheus text format, parsed just enough for tests: one sample per line.</summary>
internal sealed record PrometheusSample(string Name, IReadOnlyDictionary<string, string> Labels, double Value);

internal static class PrometheusText
{
    public static async Task<List<PrometheusSample>> ScrapeAsync(HttpClient admin, string path = "/metrics")
    {
        using var response = await admin.GetAsync(path);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType?.MediaType);
        return Parse(await response.Content.ReadAsStringAsync());
    }

    public static List<PrometheusSample> Parse(string text)
    {
        var samples = new List<PrometheusSample>();
        foreach (var raw in text.Split('\n'))
        {
            var line = raw.TrimEnd('\r');
            if (line.Length == 0 || line[0] == '#') continue;
            var labels = new Dictionary<string, string>(StringComparer.Ordinal);
            string name;
            string rest;
            var brace = line.IndexOf('{');
            var space = line.IndexOf(' ');
            if (brace >= 0 && brace < space)
            {
                name = line[..brace];
                var i = brace + 1;
                while (line[i] != '}')
                {
                    var eq = line.IndexOf('=', i);
                    var key = line[i..eq];
                    var value = new System.Text.StringBuilder();
                    var j = eq + 2; // after ="
                    for (; line[j] != '"'; j++)
                    {
                        if (line[j] == '\\') j++;
                        value.Append(line[j]);
                    }

                    labels[key] = value.ToString();
                    i = j + 1;
                    if (line[i] == ',') i++;
                }

                rest = line[(i + 1)..].Trim();
            }
            else
            {
                name = line[..space];
                rest = line[(space + 1)..].Trim();
            }

            var valueText = rest.Split(' ')[0];
            var number = valueText switch
            {
                "+Inf" => double.PositiveInfinity,
                "-Inf" => double.NegativeInfinity,
                _ => double.Parse(valueText, CultureInfo.InvariantCulture),
            };
            samples.Add(new PrometheusSample(name, labels, number));
        }

        return samples;
    }

    public static double Sum(this IEnumerable<PrometheusSample> samples, string name, params (string Key, string Value)[] labels) =>
        samples.Where(s => s.Name == name && labels.All(l => s.Labels.TryGetValue(l.Key, out var v) && v == l.Value)).Sum(s => s.Value);

    public static bool Has(this IEnumerable<PrometheusSample> samples, string name) => samples.Any(s => s.Name == name);
}

/// <summary>The Prometheus endpoint on the admin listener, scraped over HTTP while requests of each kind are sent.</summary>
public sealed class MetricsEndpointTests : IAsyncLifetime
{
    private const string Issuer = "https://issuer.test/";
    private readonly TokenFactory _tokens = new(Issuer, "orders-api");
    private TestUpstream _upstream = null!;
    private TestGateway _gateway = null!;
    private int _deadPort;

    private string Yaml(string extraRoute = "") => $$"""
        identity:
          issuers:
            - { name: m7corp, jwksFile: jwks.json, issuer: "{{Issuer}}", audiences: [orders-api] }
        rateLimits:
          m7-one: { key: ip, limit: 1, per: 1m }
        routes:
          - { name: m7-open, match: { pathPrefix: /open }, cluster: m7-api }
          - { name: m7-auth, match: { pathPrefix: /auth }, auth: { issuers: [m7corp] }, cluster: m7-api }
          - { name: m7-limited, match: { pathPrefix: /limited }, rateLimits: [m7-one], cluster: m7-api }
          - { name: m7-dead, match: { pathPrefix: /dead }, cluster: m7-dead }
        {{extraRoute}}
        clusters:
          m7-api:
            destinations: ["{{_upstream.Url}}"]
            healthCheck:
              # Probes every 2 s with 2 s to answer, not 200 ms: one slow probe on a loaded machine marked the only destination down (503).
              active: { interval: 2s, timeout: 2s, unhealthyThreshold: 1, healthyThreshold: 1 }
          m7-dead: { destinations: ["http://127.0.0.1:{{_deadPort}}"] }
        """;

    public async Task InitializeAsync()
    {
        _upstream = await TestUpstream.StartAsync("m7-api");
        _deadPort = Ports.GetFree();
        _gateway = await TestGateway.StartAsync(Yaml(), new Dictionary<string, string> { ["jwks.json"] = _tokens.JwksJson() });
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _upstream.DisposeAsync();
        _tokens.Dispose();
    }

    private async Task<HttpStatusCode> GetAsync(string path)
    {
        using var response = await _gateway.Client.GetAsync(path);
        return response.StatusCode;
    }

    // The completion hook runs after the client has its answer: wait until the scrape shows it.
    private async Task<List<PrometheusSample>> ScrapeUntilAsync(Func<List<PrometheusSample>, bool> done)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            var samples = await PrometheusText.ScrapeAsync(_gateway.Admin);
            if (done(samples)) return samples;
            if (DateTime.UtcNow > deadline) Assert.Fail("metrics did not reach the expected values:\n" + string.Join("\n", samples.Where(s => s.Name.StartsWith("portcullis_", StringComparison.Ordinal)).Select(s => $"{s.Name} {string.Join(",", s.Labels.Select(l => $"{l.Key}={l.Value}"))} {s.Value}")));
            await Task.Delay(50);
        }
    }

    private static double Requests(List<PrometheusSample> s, string route, string statusClass) =>
        s.Sum("portcullis_requests_total", ("route", route), ("status_class", statusClass), ("listener", "public"));

    [Fact]
    public async Task Counters_MoveWithEachKindOfAnswer_AndHistogramsCount()
    {
        var before = await PrometheusText.ScrapeAsync(_gateway.Admin);

        Assert.Equal(HttpStatusCode.OK, await GetAsync("/open/a"));
        Assert.Equal(HttpStatusCode.OK, await GetAsync("/open/b"));
        Assert.Equal(HttpStatusCode.NotFound, await GetAsync("/nowhere"));
        Assert.Equal(HttpStatusCode.Unauthorized, await GetAsync("/auth/x"));
        Assert.Equal(HttpStatusCode.OK, await GetAsync("/limited/1"));
        Assert.Equal(HttpStatusCode.TooManyRequests, await GetAsync("/limited/2"));
        Assert.Equal(HttpStatusCode.BadGateway, await GetAsync("/dead/x"));

        var after = await ScrapeUntilAsync(s => Requests(s, "m7-dead", "5xx") >= 1);
        double Delta(string route, string statusClass) => Requests(after, route, statusClass) - Requests(before, route, statusClass);
        Assert.Equal(2, Delta("m7-open", "2xx"));
        Assert.Equal(1, Delta("", "4xx")); // the unmatched 404 has no route
        Assert.Equal(1, Delta("m7-auth", "4xx"));
        Assert.Equal(1, Delta("m7-limited", "2xx"));
        Assert.Equal(1, Delta("m7-limited", "4xx"));
        Assert.Equal(1, Delta("m7-dead", "5xx"));

        Assert.Equal(1, after.Sum("portcullis_auth_failures_total", ("route", "m7-auth"), ("reason", "auth.missing")) - before.Sum("portcullis_auth_failures_total", ("route", "m7-auth"), ("reason", "auth.missing")));
        Assert.Equal(1, after.Sum("portcullis_traffic_rejections_total", ("route", "m7-limited"), ("decision", "ratelimit.exceeded")));
        Assert.Equal(1, after.Sum("portcullis_traffic_rejections_total", ("route", "m7-limited"), ("policy", "m7-one")));

        // Latency histograms: every request lands in the +Inf bucket; _count matches; buckets are cumulative.
        var buckets = after.Where(s => s.Name == "portcullis_request_duration_seconds_bucket" && s.Labels["route"] == "m7-open").ToList();
        Assert.Equal(GatewayMetricsBuckets + 1, buckets.Count);
        Assert.Equal(2, buckets.Single(b => b.Labels["le"] == "+Inf").Value);
        Assert.Equal(2, after.Sum("portcullis_request_duration_seconds_count", ("route", "m7-open")));
        var ordered = buckets.OrderBy(b => b.Labels["le"] == "+Inf" ? double.PositiveInfinity : double.Parse(b.Labels["le"], CultureInfo.InvariantCulture)).Select(b => b.Value).ToList();
        Assert.Equal(ordered.Order(), ordered);
        Assert.Equal(2, after.Sum("portcullis_upstream_duration_seconds_count", ("route", "m7-open"), ("cluster", "m7-api"), ("outcome", "ok")));
        Assert.Equal(1, after.Sum("portcullis_upstream_duration_seconds_count", ("route", "m7-dead"), ("cluster", "m7-dead"), ("outcome", "error")));

        // No path, client address or consumer ever becomes a label.
        Assert.DoesNotContain(after, s => s.Labels.Values.Any(v => v.StartsWith('/') || v == "127.0.0.1"));
        Assert.True(after.Has("portcullis_jwks_fetches_total"));
        Assert.Equal(1, after.Sum("portcullis_jwks_available", ("issuer", "m7corp")));
        Assert.True(after.Has("portcullis_access_log_lines_total"));
    }

    private const int GatewayMetricsBuckets = 15;

    [Fact]
    public async Task Reloads_AreCountedOkAndRejected()
    {
        static double Reloads(List<PrometheusSample> s, string result) => s.Sum("portcullis_config_reloads_total", ("result", result));
        var before = await PrometheusText.ScrapeAsync(_gateway.Admin);

        await _gateway.WriteConfigAsync(Yaml("  - { name: m7-extra, match: { pathPrefix: /extra }, cluster: m7-api }"));
        var (status, _) = await _gateway.ReloadAsync();
        Assert.Equal(200, status);
        await _gateway.WriteConfigAsync("routes: [ { name: broken, cluster: nowhere } ]\n");
        (status, _) = await _gateway.ReloadAsync();
        Assert.Equal(422, status);

        var after = await PrometheusText.ScrapeAsync(_gateway.Admin);
        Assert.True(Reloads(after, "ok") - Reloads(before, "ok") >= 1);
        Assert.True(Reloads(after, "rejected") - Reloads(before, "rejected") >= 1);
        // The last reload's duration (the rejected one: parsed, bound and compiled), and the heap trims: none for a
        // config this small.
        Assert.InRange(after.Sum("portcullis_config_last_reload_duration_seconds"), double.Epsilon, 60);
        Assert.True(after.Has("portcullis_heap_trims_total"));
        Assert.Equal(0, after.Sum("portcullis_heap_trims_total"));
    }

    [Fact]
    public async Task DestinationHealthGauge_FlipsWhenTheDestinationGoesDown()
    {
        var destination = (await _gateway.Admin.GetStringAsync("/admin/clusters")).Contains("m7-api", StringComparison.Ordinal);
        Assert.True(destination);
        static double State(List<PrometheusSample> s, string state) =>
            s.Sum("portcullis_upstream_destination_health", ("cluster", "m7-api"), ("state", state));

        await ScrapeUntilAsync(s => State(s, "healthy") == 1 && State(s, "unhealthy") == 0);
        _upstream.Healthy = false;
        await ScrapeUntilAsync(s => State(s, "healthy") == 0 && State(s, "unhealthy") == 1);
        _upstream.Healthy = true;
        await ScrapeUntilAsync(s => State(s, "healthy") == 1 && State(s, "unhealthy") == 0);
    }

    [Fact]
    public async Task MetricsPath_IsOnlyOnTheAdminListener()
    {
        using var response = await _gateway.Client.GetAsync("/metrics");
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
    }
}
