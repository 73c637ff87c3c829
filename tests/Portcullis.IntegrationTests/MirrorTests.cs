using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text;
using Microsoft.AspNetCore.Http;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.IntegrationTests.Observability;
using Portcullis.Testing;

namespace Portcullis.IntegrationTests;

/// <summary>
/// routes[].mirror end to end on real sockets: the mirror gets every request (or its share) with the same method,
/// path, query and body and a marker header; a body over the bound is not copied; a mirror that never answers
/// changes nothing for clients (latency measured against a route without a mirror in the same test) and never
/// holds more than maxConcurrent copies.
/// </summary>
public sealed class MirrorTests : IAsyncLifetime
{
    private TestUpstream _primary = null!;
    private TestUpstream _shadow = null!;
    private TestUpstream _hanging = null!;
    private TestGateway _gateway = null!;
    private readonly ConcurrentQueue<(string Method, string Target, string Body, string? Marker)> _copies = new();
    private int _hangingOpen;
    private int _hangingPeak;
    private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public async Task InitializeAsync()
    {
        _primary = await TestUpstream.StartAsync("primary");
        _shadow = await TestUpstream.StartAsync("shadow");
        _shadow.Handler = async context =>
        {
            using var reader = new StreamReader(context.Request.Body, Encoding.UTF8);
            var body = await reader.ReadToEndAsync();
            _copies.Enqueue((context.Request.Method, context.Request.Path + context.Request.QueryString, body, context.Request.Headers["X-Portcullis-Mirror"]));
            context.Response.StatusCode = 500; // whatever the mirror says is discarded
        };
        _hanging = await TestUpstream.StartAsync("hanging");
        _hanging.Handler = async context =>
        {
            var open = Interlocked.Increment(ref _hangingOpen);
            InterlockedMax(ref _hangingPeak, open);
            try
            {
                await _release.Task.WaitAsync(context.RequestAborted);
            }
            catch (OperationCanceledException)
            {
            }
            finally
            {
                Interlocked.Decrement(ref _hangingOpen);
            }
        };
        _gateway = await TestGateway.StartAsync(Config(halfPercent: 50));
    }

    private string Config(int halfPercent) => $$"""
        routes:
          - { name: all, match: { pathPrefix: /all }, mirror: { cluster: shadow, maxBodySize: 1KiB }, cluster: primary }
          - { name: half, match: { pathPrefix: /half }, mirror: { cluster: shadow, percent: {{halfPercent}} }, cluster: primary }
          - { name: slow-mirror, match: { pathPrefix: /hang }, mirror: { cluster: hanging, maxConcurrent: 4, timeout: 60s }, cluster: primary }
          - { name: no-mirror, match: { pathPrefix: /plain }, cluster: primary }
        clusters:
          primary: { destinations: [{{_primary.Url}}] }
          shadow: { destinations: [{{_shadow.Url}}] }
          hanging: { destinations: [{{_hanging.Url}}] }
        """;

    private static void InterlockedMax(ref int target, int value)
    {
        var seen = Volatile.Read(ref target);
        while (value > seen && Interlocked.CompareExchange(ref target, value, seen) is var now && now != seen) seen = now;
    }

    public async Task DisposeAsync()
    {
        _release.TrySetResult();
        await _gateway.DisposeAsync();
        await _hanging.DisposeAsync();
        await _shadow.DisposeAsync();
        await _primary.DisposeAsync();
    }

    [Fact]
    public async Task Every_request_is_copied_with_its_method_path_query_and_body_and_a_large_body_is_not()
    {
        for (var i = 0; i < 10; i++)
        {
            using var get = await _gateway.Client.GetAsync($"/all/items/{i}?q={i}");
            Assert.Equal(HttpStatusCode.OK, get.StatusCode);
            using var post = await _gateway.Client.PostAsync($"/all/orders", new StringContent($"{{\"n\":{i}}}", Encoding.UTF8, "application/json"));
            Assert.Equal(HttpStatusCode.OK, post.StatusCode); // the mirror answers 500: the client never sees it
            Assert.Equal($"{{\"n\":{i}}}".Length, (await UpstreamAnswer.ReadAsync(post)).BodyBytes);
        }

        await Eventually.TrueAsync(() => _copies.Count >= 20, "the mirror gets 20 copies");
        Assert.Equal(10, _copies.Count(c => c.Method == "GET"));
        Assert.All(Enumerable.Range(0, 10), i => Assert.Contains(_copies, c => c.Target == $"/all/items/{i}?q={i}"));
        Assert.All(Enumerable.Range(0, 10), i => Assert.Contains(_copies, c => c.Method == "POST" && c.Body == $"{{\"n\":{i}}}"));
        Assert.All(_copies, c => Assert.Equal("1", c.Marker));

        // 2 KiB over the 1 KiB bound: the upstream gets all of it, the mirror nothing.
        var before = _copies.Count;
        using var large = await _gateway.Client.PostAsync("/all/upload", new ByteArrayContent(new byte[2048]));
        Assert.Equal(2048, (await UpstreamAnswer.ReadAsync(large)).BodyBytes);
        using var marker = await _gateway.Client.GetAsync("/all/after-large");
        await Eventually.TrueAsync(() => _copies.Any(c => c.Target == "/all/after-large"), "the next request is copied");
        Assert.DoesNotContain(_copies, c => c.Target == "/all/upload");
        Assert.Equal(before + 1, _copies.Count);

        // On /metrics: 21 copies sent, the large body dropped, none failed (the mirror's 500s are answers, discarded).
        var samples = await PrometheusText.ScrapeAsync(_gateway.Admin);
        double Mirror(string outcome) => samples.Sum("portcullis_mirror_requests_total", ("route", "all"), ("outcome", outcome));
        Assert.Equal((21, 1, 0, 0), (Mirror("sent"), Mirror("dropped_body"), Mirror("dropped_concurrency"), Mirror("failed")));
    }

    [Fact]
    public async Task Half_the_requests_are_copied()
    {
        const int requests = 400;
        for (var i = 0; i < requests; i++)
        {
            using var response = await _gateway.Client.GetAsync($"/half/{i}");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        // Binomial(400, 0.5): standard deviation 10; ±100 is ten of them.
        await Eventually.TrueAsync(() => _copies.Count >= 100, "at least a quarter copied");
        using var last = await _gateway.Client.GetAsync("/plain/flush");
        Assert.InRange(_copies.Count(c => c.Target.StartsWith("/half/", StringComparison.Ordinal)), 100, 300);
    }

    [Fact]
    public async Task A_reload_changes_the_share_without_dropping_a_request()
    {
        using var stop = new CancellationTokenSource();
        var failures = new ConcurrentQueue<string>();
        var sent = 0;
        var load = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                var n = Interlocked.Increment(ref sent);
                using var response = await _gateway.Client.GetAsync($"/half/load-{n}");
                if (response.StatusCode != HttpStatusCode.OK) failures.Enqueue($"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
            }
        });
        await Eventually.TrueAsync(() => Volatile.Read(ref sent) >= 20, "traffic before the reload");

        // 50 % → 100 % while the traffic runs: every request answered, and from the new generation on every one copied.
        var generation = _gateway.Generation;
        await _gateway.WriteConfigAsync(Config(halfPercent: 100));
        var (status, body) = await _gateway.ReloadAsync();
        Assert.True(status == 200, body.ToString());
        await _gateway.WaitForGenerationAsync(generation);
        var during = Volatile.Read(ref sent);
        await Eventually.TrueAsync(() => Volatile.Read(ref sent) >= during + 20, "traffic after the reload");
        stop.Cancel();
        await load;
        Assert.Empty(failures);

        for (var i = 0; i < 50; i++)
        {
            using var response = await _gateway.Client.GetAsync($"/half/after-{i}");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        await Eventually.TrueAsync(() => _copies.Count(c => c.Target.StartsWith("/half/after-", StringComparison.Ordinal)) == 50, "all 50 copied at 100 %");
    }

    [Fact]
    public async Task A_mirror_that_never_answers_changes_nothing_for_clients_and_holds_at_most_max_concurrent_copies()
    {
        async Task<double> P99Async(string prefix)
        {
            var times = new List<double>();
            for (var i = 0; i < 200; i++)
            {
                var clock = Stopwatch.StartNew();
                using var response = await _gateway.Client.GetAsync($"{prefix}/{i}");
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                times.Add(clock.Elapsed.TotalMilliseconds);
            }

            times.Sort();
            return times[(int)(times.Count * 0.99) - 1];
        }

        var without = await P99Async("/plain");
        var with = await P99Async("/hang");
        // Generous for a loaded machine: the copies wait forever, so any coupling would show as seconds, not ms.
        Assert.True(with < Math.Max(2 * without, without + 250), $"p99 {with:0.0} ms with a hanging mirror against {without:0.0} ms without");
        await Eventually.TrueAsync(() => Volatile.Read(ref _hangingOpen) == 4, "the cap's 4 copies are open");
        Assert.Equal(4, Volatile.Read(ref _hangingPeak));
        var samples = await PrometheusText.ScrapeAsync(_gateway.Admin);
        Assert.Equal(4, samples.Sum("portcullis_mirror_requests_total", ("route", "slow-mirror"), ("outcome", "sent")));
        Assert.Equal(196, samples.Sum("portcullis_mirror_requests_total", ("route", "slow-mirror"), ("outcome", "dropped_concurrency")));
    }
}
