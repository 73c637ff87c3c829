using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.IntegrationTests.Observability;
using Xunit.Abstractions;

namespace Portcullis.IntegrationTests.Clusters;

/// <summary>
/// clusters.*.retries beyond connect failures (issue 19, item 4), on real sockets: a flaky upstream's 503s are
/// absorbed (and the held-back answers never leak to the client), a cluster that fails as a whole gets no retry
/// storm (the budget), a try without response headers in perTryTimeout is retried, the deadline bounds all tries,
/// and a kept request body is sent again byte for byte while a streamed one or a POST is not retried.
/// </summary>
public sealed class StatusRetryTests(ITestOutputHelper output)
{
    private const string RetriesMetric = "portcullis_upstream_retries_total";
    private const string DeniedMetric = "portcullis_upstream_retries_denied_total";

    [Fact]
    public async Task A_flaky_upstreams_503s_are_retried_away_and_the_held_answers_never_reach_the_client()
    {
        // Each destination fails a quarter of its requests at random (seeded), with its own header and body.
        var failures = 0;
        var random = new Random(19);
        Task Flaky(HttpContext context)
        {
            bool fail;
            lock (random) fail = random.NextDouble() < 0.25;
            if (!fail) return context.Response.WriteAsync("ok");
            Interlocked.Increment(ref failures);
            context.Response.StatusCode = 503;
            context.Response.Headers["X-Failed"] = "yes";
            return context.Response.WriteAsync("upstream failed");
        }

        await using var a = await TestUpstream.StartAsync("a");
        await using var b = await TestUpstream.StartAsync("b");
        a.Handler = b.Handler = Flaky;
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: retried, match: { pathPrefix: /retried }, cluster: retried }
              - { name: control, match: { pathPrefix: /control }, cluster: control }
            clusters:
              retried:
                destinations: ["{{a.Url}}", "{{b.Url}}"]
                retries: { attempts: 2, on: [503], backoff: { base: 1ms, max: 5ms }, budget: { percent: 100, minPerSecond: 100 } }
              control:
                destinations: ["{{a.Url}}", "{{b.Url}}"]
                retries: 2
            """);

        const int requests = 400;
        var (retried, leaked) = await SendAsync(gateway.Client, "/retried", requests);
        var upstreamFailures = Volatile.Read(ref failures);
        Interlocked.Exchange(ref failures, 0);
        var (control, _) = await SendAsync(gateway.Client, "/control", requests);
        output.WriteLine($"retried: {retried} client 503s of {requests} ({upstreamFailures} upstream 503s); control: {control} client 503s");

        // 25 % of tries fail; with two retries a client sees 0.25³ ≈ 1.6 %: allow up to 5 %.
        Assert.InRange(upstreamFailures, requests / 8, requests);
        Assert.InRange(retried, 0, requests / 20);
        // Without status retries the same upstreams fail about a quarter of the requests.
        Assert.InRange(control, requests / 8, requests / 2);
        Assert.Equal(0, leaked);

        // Every upstream 503 was either retried (counted) or passed on as the last try's answer.
        var samples = await PrometheusText.ScrapeAsync(gateway.Admin);
        Assert.Equal(upstreamFailures - retried, samples.Sum(RetriesMetric, ("route", "retried"), ("cluster", "retried"), ("reason", "status-503")));
        Assert.Equal(0, samples.Sum(RetriesMetric, ("route", "control")));
    }

    [Fact]
    public async Task A_cluster_failing_as_a_whole_gets_retries_only_within_its_budget()
    {
        await using var a = await TestUpstream.StartAsync("a");
        await using var b = await TestUpstream.StartAsync("b");
        a.Handler = b.Handler = context => { context.Response.StatusCode = 503; return Task.CompletedTask; };
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: all, cluster: down }
            clusters:
              down:
                destinations: ["{{a.Url}}", "{{b.Url}}"]
                retries: { attempts: 2, on: [503], backoff: { base: 1ms, max: 2ms }, budget: { percent: 20, minPerSecond: 1 } }
            """);

        const int requests = 300;
        var clock = Stopwatch.StartNew();
        var (failed, _) = await SendAsync(gateway.Client, "/", requests);
        var seconds = clock.Elapsed.TotalSeconds;
        var tries = a.Requests + b.Requests;
        output.WriteLine($"{tries} upstream tries for {requests} requests in {seconds:F1} s");

        // Every client sees the outage (the last answer is passed on as it came) ...
        Assert.Equal(requests, failed);
        // ... and the upstream got at most 20 % more, plus the floor of 1 retry per second over the window(s)
        // the run spanned — not the 3× that two unbudgeted retries would send.
        var budget = requests * 0.2 + Math.Ceiling(seconds + 10) * 1;
        Assert.InRange(tries, requests, requests + budget + 2);
        var samples = await PrometheusText.ScrapeAsync(gateway.Admin);
        Assert.Equal(tries - requests, samples.Sum(RetriesMetric, ("cluster", "down"), ("reason", "status-503")));
        // Every request that made fewer than its two retries was stopped by the budget once.
        var retries = tries - requests;
        Assert.InRange(samples.Sum(DeniedMetric, ("cluster", "down"), ("reason", "budget")), requests - retries / 2.0, requests);
    }

    [Fact]
    public async Task A_try_without_response_headers_in_perTryTimeout_is_retried_on_the_other_destination()
    {
        await using var hanging = await TestUpstream.StartAsync("a-hanging");
        await using var healthy = await TestUpstream.StartAsync("b-healthy");
        hanging.Delay = TimeSpan.FromMinutes(5);
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                loadBalancing: first
                destinations: [{ name: a-hanging, address: "{{hanging.Url}}" }, { name: b-healthy, address: "{{healthy.Url}}" }]
                retries: { attempts: 1, on: [timeout], perTryTimeout: 500ms }
            observability:
              accessLog: { enabled: true, target: file, path: access.log }
            """);

        var clock = Stopwatch.StartNew();
        using var response = await gateway.Client.GetAsync("/orders/1");
        var elapsed = clock.Elapsed;
        var answer = await UpstreamAnswer.ReadAsync(response);
        Assert.Equal("b-healthy", answer.Server);
        // It waited the try's time for the hanging one (not timeouts.request's 100 s), then got the answer.
        Assert.InRange(elapsed, TimeSpan.FromMilliseconds(450), TimeSpan.FromSeconds(20));
        Assert.Equal(1, hanging.Requests);

        var line = await AccessLogFile.LineAsync(Path.Combine(gateway.Directory, "access.log"), AccessLogFile.RequestId(response));
        Assert.Equal(2, line.GetProperty("attempts").GetInt32());
        var samples = await PrometheusText.ScrapeAsync(gateway.Admin);
        Assert.Equal(1, samples.Sum(RetriesMetric, ("cluster", "web"), ("reason", "timeout")));
    }

    [Fact]
    public async Task The_deadline_bounds_all_tries_and_answers_504()
    {
        await using var a = await TestUpstream.StartAsync("a");
        await using var b = await TestUpstream.StartAsync("b");
        a.Delay = b.Delay = TimeSpan.FromMinutes(5);
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                destinations: ["{{a.Url}}", "{{b.Url}}"]
                retries: { attempts: 5, on: [timeout], perTryTimeout: 400ms, deadline: 1s, backoff: { base: 1ms, max: 1ms } }
            observability:
              accessLog: { enabled: true, target: file, path: access.log }
            """);

        var clock = Stopwatch.StartNew();
        using var response = await gateway.Client.GetAsync("/slow");
        var elapsed = clock.Elapsed;
        var text = await response.Content.ReadAsStringAsync();
        output.WriteLine($"{(int)response.StatusCode} after {elapsed.TotalMilliseconds:F0} ms: {text}");
        Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
        Assert.Equal("upstream.timeout", JsonDocument.Parse(text).RootElement.GetProperty("reason").GetString());
        // Six tries of 400 ms would take 2.4 s; the deadline stops them at 1 s (with room for a busy machine).
        Assert.InRange(elapsed, TimeSpan.FromMilliseconds(950), TimeSpan.FromSeconds(10));

        // 400 ms + 400 ms + what is left of the second: three tries at most, and at least two.
        var line = await AccessLogFile.LineAsync(Path.Combine(gateway.Directory, "access.log"), AccessLogFile.RequestId(response));
        Assert.InRange(line.GetProperty("attempts").GetInt32(), 2, 3);
        Assert.InRange(a.Requests + b.Requests, 2, 3);
    }

    [Fact]
    public async Task A_kept_body_is_sent_again_byte_for_byte_a_streamed_one_and_a_POST_are_not_retried()
    {
        // Fails the first try of every request (by its id header), answers the next with a hash of the body.
        var seen = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
        await using var upstream = await TestUpstream.StartAsync("a");
        upstream.Handler = async context =>
        {
            using var body = new MemoryStream();
            await context.Request.Body.CopyToAsync(body);
            var id = context.Request.Headers["X-Test-Id"].ToString();
            if (seen.AddOrUpdate(id, 1, (_, n) => n + 1) == 1)
            {
                context.Response.StatusCode = 503;
                return;
            }

            await context.Response.WriteAsync($"{body.Length}:{Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(body.ToArray()))}");
        };
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                destinations: ["{{upstream.Url}}"]
                retries: { attempts: 1, on: [503], bufferBody: 4KiB }
            """);

        var small = RandomNumberGenerator(3000);
        using (var response = await SendWithIdAsync(gateway.Client, HttpMethod.Put, "kept", small))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal($"3000:{Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(small))}", await response.Content.ReadAsStringAsync());
        }

        // Over bufferBody: streamed, so its 503 goes to the client.
        using (var response = await SendWithIdAsync(gateway.Client, HttpMethod.Put, "streamed", RandomNumberGenerator(5000)))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        }

        // POST is never retried, however small.
        using (var response = await SendWithIdAsync(gateway.Client, HttpMethod.Post, "post", small))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        }

        Assert.Equal(2, seen["kept"]);
        Assert.Equal(1, seen["streamed"]);
        Assert.Equal(1, seen["post"]);
    }

    private static byte[] RandomNumberGenerator(int length) => System.Security.Cryptography.RandomNumberGenerator.GetBytes(length);

    private static Task<HttpResponseMessage> SendWithIdAsync(HttpClient client, HttpMethod method, string id, byte[] body)
    {
        var request = new HttpRequestMessage(method, "/items/1") { Content = new ByteArrayContent(body) };
        request.Headers.Add("X-Test-Id", id);
        return client.SendAsync(request);
    }

    // Sends GETs 8 at a time; counts 503 answers and answers that carry the failed tries' header or body.
    private static async Task<(int Unavailable, int Leaked)> SendAsync(HttpClient client, string path, int count)
    {
        int unavailable = 0, leaked = 0, next = -1;
        await Task.WhenAll(Enumerable.Range(0, 8).Select(async _ =>
        {
            while (Interlocked.Increment(ref next) < count)
            {
                using var response = await client.GetAsync(path);
                var text = await response.Content.ReadAsStringAsync();
                if (response.StatusCode == HttpStatusCode.ServiceUnavailable) Interlocked.Increment(ref unavailable);
                else if (response.StatusCode != HttpStatusCode.OK) throw new InvalidOperationException($"unexpected {(int)response.StatusCode}: {text}");
                if (response.StatusCode == HttpStatusCode.OK && (response.Headers.Contains("X-Failed") || text != "ok")) Interlocked.Increment(ref leaked);
            }
        }));
        return (unavailable, leaked);
    }
}
