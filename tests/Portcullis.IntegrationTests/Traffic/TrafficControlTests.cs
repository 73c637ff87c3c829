using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Traffic;

/// <summary>
/// Rate limits, spike arrest, quotas and concurrency limits through the real gateway with the in-process
/// store: the answers (429/503, Retry-After, RateLimit headers, problem+json), keys, and client addresses
/// behind trusted and untrusted proxies.
/// </summary>
public sealed class TrafficControlTests : IAsyncLifetime
{
    private TestUpstream _upstream = null!;
    private readonly List<TestGateway> _gateways = [];

    public async Task InitializeAsync() => _upstream = await TestUpstream.StartAsync("api");

    public async Task DisposeAsync()
    {
        foreach (var gateway in _gateways) await gateway.DisposeAsync();
        await _upstream.DisposeAsync();
    }

    private async Task<TestGateway> StartAsync(string yaml)
    {
        var gateway = await TestGateway.StartAsync(yaml.Replace("{{UPSTREAM}}", _upstream.Url, StringComparison.Ordinal));
        _gateways.Add(gateway);
        return gateway;
    }

    private static HttpRequestMessage Get(string path, params (string Name, string Value)[] headers)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, path);
        foreach (var (name, value) in headers) request.Headers.TryAddWithoutValidation(name, value);
        return request;
    }

    [Fact]
    public async Task Rate_limit_answers_429_with_retry_after_ratelimit_headers_and_a_problem_body()
    {
        var gateway = await StartAsync("""
            rateLimits:
              per-tenant: { key: [header:X-Tenant], limit: 3, per: 1h }
            routes: [{ name: api, match: { pathPrefix: / }, cluster: api, rateLimits: [per-tenant] }]
            clusters: { api: { destinations: [{{UPSTREAM}}] } }
            """);

        for (var i = 0; i < 3; i++)
        {
            using var ok = await gateway.Client.SendAsync(Get("/orders", ("X-Tenant", "acme")));
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
            Assert.Equal("\"per-tenant\";q=3;w=3600", string.Join(",", ok.Headers.GetValues("RateLimit-Policy")));
            var state = string.Join(",", ok.Headers.GetValues("RateLimit"));
            Assert.StartsWith($"\"per-tenant\";r={2 - i};t=", state, StringComparison.Ordinal);
        }

        var upstreamBefore = _upstream.Requests;
        using var refused = await gateway.Client.SendAsync(Get("/orders", ("X-Tenant", "acme")));
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.Equal("application/problem+json", refused.Content.Headers.ContentType?.MediaType);
        var retryAfter = refused.Headers.RetryAfter?.Delta;
        Assert.NotNull(retryAfter);
        Assert.InRange(retryAfter.Value.TotalSeconds, 1, 1200); // one emission interval: 1 h / 3
        Assert.StartsWith("\"per-tenant\";r=0;t=", string.Join(",", refused.Headers.GetValues("RateLimit")), StringComparison.Ordinal);
        using var problem = JsonDocument.Parse(await refused.Content.ReadAsStringAsync());
        Assert.Equal(429, problem.RootElement.GetProperty("status").GetInt32());
        Assert.Equal("ratelimit.exceeded", problem.RootElement.GetProperty("reason").GetString());
        Assert.Contains("per-tenant", problem.RootElement.GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Equal(upstreamBefore, _upstream.Requests); // refused at the gateway

        // Another key has its own budget.
        using var other = await gateway.Client.SendAsync(Get("/orders", ("X-Tenant", "globex")));
        Assert.Equal(HttpStatusCode.OK, other.StatusCode);
    }

    [Fact]
    public async Task A_missing_key_part_falls_back_to_the_client_address_instead_of_failing()
    {
        // consumer on a public route: there is no consumer, so anonymous callers share their IP's budget.
        var gateway = await StartAsync("""
            rateLimits:
              per-consumer: { key: [consumer], limit: 2, per: 1h }
            routes: [{ name: api, match: { pathPrefix: / }, cluster: api, rateLimits: [per-consumer] }]
            clusters: { api: { destinations: [{{UPSTREAM}}] } }
            """);
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 3; i++)
        {
            using var response = await gateway.Client.GetAsync("/x");
            statuses.Add(response.StatusCode);
        }

        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests], statuses);
    }

    [Fact]
    public async Task Spoofed_forwarded_headers_from_an_untrusted_peer_do_not_change_the_client_address()
    {
        var gateway = await StartAsync("""
            rateLimits:
              per-ip: { key: [ip], limit: 2, per: 1h }
            routes: [{ name: api, match: { pathPrefix: / }, cluster: api, rateLimits: [per-ip] }]
            clusters: { api: { destinations: [{{UPSTREAM}}] } }
            """);
        var statuses = new List<HttpStatusCode>();
        foreach (var spoofed in new[] { "203.0.113.1", "203.0.113.2", "203.0.113.3" })
        {
            using var response = await gateway.Client.SendAsync(Get("/x", ("X-Forwarded-For", spoofed), ("Forwarded", $"for={spoofed}")));
            statuses.Add(response.StatusCode);
        }

        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests], statuses);
    }

    [Fact]
    public async Task Behind_a_trusted_proxy_the_forwarded_client_address_is_the_key()
    {
        var gateway = await StartAsync("""
            trustedProxies: [127.0.0.1, 10.0.0.0/8]
            rateLimits:
              per-ip: { key: [ip], limit: 1, per: 1h }
            routes: [{ name: api, match: { pathPrefix: / }, cluster: api, rateLimits: [per-ip] }]
            clusters: { api: { destinations: [{{UPSTREAM}}] } }
            """);

        async Task<HttpStatusCode> Send(params (string, string)[] headers)
        {
            using var response = await gateway.Client.SendAsync(Get("/x", headers));
            return response.StatusCode;
        }

        Assert.Equal(HttpStatusCode.OK, await Send(("X-Forwarded-For", "198.51.100.7")));
        Assert.Equal(HttpStatusCode.TooManyRequests, await Send(("X-Forwarded-For", "198.51.100.7")));
        // The right-most address that is not a trusted proxy is the client: a client-supplied left part is ignored.
        Assert.Equal(HttpStatusCode.TooManyRequests, await Send(("X-Forwarded-For", "192.0.2.99, 198.51.100.7, 10.1.2.3")));
        Assert.Equal(HttpStatusCode.OK, await Send(("X-Forwarded-For", "198.51.100.8")));
        // RFC 7239 Forwarded when there is no X-Forwarded-For.
        Assert.Equal(HttpStatusCode.OK, await Send(("Forwarded", "for=\"[2001:db8::1]:4711\";proto=https")));
        Assert.Equal(HttpStatusCode.TooManyRequests, await Send(("Forwarded", "for=\"[2001:db8::1]\"")));
    }

    [Fact]
    public async Task Spike_arrest_admits_one_request_per_interval_and_no_burst()
    {
        var gateway = await StartAsync("""
            rateLimits:
              smooth: { key: [route], algorithm: spikeArrest, limit: 5, per: 1s }
            routes: [{ name: api, match: { pathPrefix: / }, cluster: api, rateLimits: [smooth] }]
            clusters: { api: { destinations: [{{UPSTREAM}}] } }
            """);

        // A burst of 10 at once: exactly one passes (no bursts).
        var burst = await Task.WhenAll(Enumerable.Range(0, 10).Select(async _ =>
        {
            using var response = await gateway.Client.GetAsync("/x");
            return response.StatusCode;
        }));
        Assert.Equal(1, burst.Count(s => s == HttpStatusCode.OK));

        // Polling every 20 ms for 1.2 s: about one admission per 200 ms. (The exact spacing is proven with a
        // fake clock in LocalCounterStoreTests; here client-side timestamps would include scheduling stalls.)
        var admitted = 0;
        var polls = 0;
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(1.2))
        {
            using var response = await gateway.Client.GetAsync("/x");
            polls++;
            if (response.StatusCode == HttpStatusCode.OK) admitted++;
            await Task.Delay(20);
        }

        var elapsed = clock.Elapsed;
        Assert.InRange(admitted, 1, (int)Math.Ceiling(elapsed.TotalSeconds * 5) + 1);
        Assert.True(polls > 2 * admitted, $"{admitted} of {polls} polls admitted in {elapsed.TotalMilliseconds:F0} ms: spike arrest must refuse most of them");
    }

    [Fact]
    public async Task Quota_refuses_past_its_limit_until_the_period_renews_and_the_admin_api_shows_consumption()
    {
        var gateway = await StartAsync("""
            quotas:
              daily: { key: [header:X-Tenant], limit: 2, period: day, timeZone: Europe/Berlin }
            routes: [{ name: api, match: { pathPrefix: / }, cluster: api, quota: daily }]
            clusters: { api: { destinations: [{{UPSTREAM}}] } }
            """);
        for (var i = 0; i < 2; i++)
        {
            using var ok = await gateway.Client.SendAsync(Get("/x", ("X-Tenant", "acme")));
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
            Assert.StartsWith($"\"daily\";r={1 - i};t=", string.Join(",", ok.Headers.GetValues("RateLimit")), StringComparison.Ordinal);
        }

        using var refused = await gateway.Client.SendAsync(Get("/x", ("X-Tenant", "acme")));
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        var retryAfter = refused.Headers.RetryAfter!.Delta!.Value;
        Assert.InRange(retryAfter, TimeSpan.FromSeconds(1), TimeSpan.FromHours(25)); // until local midnight in Berlin
        using var problem = JsonDocument.Parse(await refused.Content.ReadAsStringAsync());
        Assert.Equal("quota.exceeded", problem.RootElement.GetProperty("reason").GetString());

        using var usage = JsonDocument.Parse(await gateway.Admin.GetStringAsync("/admin/quotas/daily?key=acme"));
        Assert.Equal(2, usage.RootElement.GetProperty("used").GetInt64());
        Assert.Equal(0, usage.RootElement.GetProperty("remaining").GetInt64());
        var berlin = TimeZoneInfo.FindSystemTimeZoneById("Europe/Berlin");
        Assert.Equal(TimeZoneInfo.ConvertTime(DateTimeOffset.UtcNow, berlin).ToString("yyyy-MM-dd"), usage.RootElement.GetProperty("window").GetString());
        using var unknown = await gateway.Admin.GetAsync("/admin/quotas/nope?key=acme");
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
    }

    [Fact]
    public async Task Route_concurrency_limit_refuses_beyond_max_with_503_and_retry_after()
    {
        _upstream.Delay = TimeSpan.FromMilliseconds(800);
        var gateway = await StartAsync("""
            routes: [{ name: api, match: { pathPrefix: / }, cluster: api, concurrency: { max: 2, retryAfter: 3s } }]
            clusters: { api: { destinations: [{{UPSTREAM}}] } }
            """);
        var first = Enumerable.Range(0, 2).Select(_ => gateway.Client.GetAsync("/slow")).ToList();
        await Eventually.TrueAsync(() => _upstream.Requests >= 2, "the expected state");
        using var refused = await gateway.Client.GetAsync("/slow");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
        Assert.Equal(TimeSpan.FromSeconds(3), refused.Headers.RetryAfter?.Delta);
        using var problem = JsonDocument.Parse(await refused.Content.ReadAsStringAsync());
        Assert.Equal("concurrency.limit", problem.RootElement.GetProperty("reason").GetString());
        foreach (var response in await Task.WhenAll(first)) Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        // Slots are given back: the next request passes.
        using var after = await gateway.Client.GetAsync("/slow");
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
    }

    [Fact]
    public async Task Queued_requests_wait_for_a_slot_up_to_the_queue_timeout()
    {
        _upstream.Delay = TimeSpan.FromMilliseconds(1500);
        var gateway = await StartAsync("""
            routes:
              - { name: short-queue, match: { pathPrefix: /short }, cluster: api, concurrency: { max: 1, queue: 1, queueTimeout: 300ms } }
              - { name: long-queue, match: { pathPrefix: /long }, cluster: api, concurrency: { max: 1, queue: 1, queueTimeout: 10s } }
            clusters: { api: { destinations: [{{UPSTREAM}}] } }
            """);

        var holder = gateway.Client.GetAsync("/short");
        await Eventually.TrueAsync(() => _upstream.Requests >= 1, "the expected state");
        var clock = Stopwatch.StartNew();
        var queued = gateway.Client.GetAsync("/short");
        await Task.Delay(50);
        using var overflow = await gateway.Client.GetAsync("/short"); // queue full: refused at once
        Assert.Equal(HttpStatusCode.ServiceUnavailable, overflow.StatusCode);
        using var timedOut = await queued;
        Assert.Equal(HttpStatusCode.ServiceUnavailable, timedOut.StatusCode);
        Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(280), TimeSpan.FromMilliseconds(1400));
        Assert.Equal(HttpStatusCode.OK, (await holder).StatusCode);

        // With a long enough queue timeout the queued request is served once the slot frees.
        var before = _upstream.Requests;
        var first = gateway.Client.GetAsync("/long");
        await Eventually.TrueAsync(() => _upstream.Requests > before, "the expected state");
        using var second = await gateway.Client.GetAsync("/long");
        Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await first).StatusCode);
    }

    [Fact]
    public async Task Cluster_concurrency_limit_is_shared_by_every_route_to_the_cluster()
    {
        _upstream.Delay = TimeSpan.FromMilliseconds(800);
        var gateway = await StartAsync("""
            routes:
              - { name: a, match: { pathPrefix: /a }, cluster: api }
              - { name: b, match: { pathPrefix: /b }, cluster: api }
            clusters: { api: { destinations: [{{UPSTREAM}}], concurrency: { max: 1 } } }
            """);
        var holder = gateway.Client.GetAsync("/a");
        await Eventually.TrueAsync(() => _upstream.Requests >= 1, "the expected state");
        using var refused = await gateway.Client.GetAsync("/b");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await holder).StatusCode);

        using var traffic = JsonDocument.Parse(await gateway.Admin.GetStringAsync("/admin/traffic"));
        var gate = traffic.RootElement.GetProperty("concurrency").EnumerateArray().Single();
        Assert.Equal("cluster:api", gate.GetProperty("scope").GetString());
        Assert.Equal(1, gate.GetProperty("refused").GetInt64());
    }

    [Fact]
    public async Task Concurrency_slots_in_use_survive_a_reload_that_keeps_the_limit()
    {
        _upstream.Delay = TimeSpan.FromMilliseconds(1500);
        const string yaml = """
            routes: [{ name: api, match: { pathPrefix: / }, cluster: api, concurrency: { max: 1 } }]
            clusters: { api: { destinations: [{{UPSTREAM}}] } }
            """;
        var gateway = await StartAsync(yaml);
        var holder = gateway.Client.GetAsync("/x");
        await Eventually.TrueAsync(() => _upstream.Requests >= 1, "the expected state");
        await gateway.WriteConfigAsync(yaml.Replace("{{UPSTREAM}}", _upstream.Url, StringComparison.Ordinal) + "\n# touched\n");
        var (status, _) = await gateway.ReloadAsync();
        Assert.Equal(200, status);
        using var refused = await gateway.Client.GetAsync("/x");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode); // the in-flight request still holds the slot
        Assert.Equal(HttpStatusCode.OK, (await holder).StatusCode);
    }
}
