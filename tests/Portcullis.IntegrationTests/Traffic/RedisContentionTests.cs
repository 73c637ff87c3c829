using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.IntegrationTests.Observability;
using Xunit.Abstractions;

namespace Portcullis.IntegrationTests.Traffic;

/// <summary>
/// Issue 14, item 1: a shared limit holds while the machine's CPUs are contended. Busy child processes
/// (one more than there are cores, twice over) starve the gateways' thread pools; the limit must stay
/// within its documented bound — before the fix late answers opened the circuit and fail-open admitted
/// 1,162 of 300 here (13,412 in the longer run).
/// </summary>
public sealed class RedisContentionTests(ITestOutputHelper output) : IAsyncLifetime
{
    private TestUpstream _upstream = null!;
    private readonly List<IAsyncDisposable> _disposables = [];

    public async Task InitializeAsync() => _upstream = await TestUpstream.StartAsync("api");

    public async Task DisposeAsync()
    {
        for (var i = _disposables.Count - 1; i >= 0; i--) await _disposables[i].DisposeAsync();
        await _upstream.DisposeAsync();
    }

    [Fact]
    public async Task Three_gateways_hold_a_shared_sliding_window_while_a_cpu_hog_saturates_the_cores()
    {
        var redis = await RedisServer.StartAsync();
        _disposables.Add(redis);
        // The setting (timeout 100 ms, retryAfter 2 s) with the default onStoreFailure: local. Calls
        // that still time out on the busy machine are decided by the instance's share (100), which also
        // counts what Redis admitted there, so they add little. With onStoreFailure: open this admitted
        // 1,162 of 300 on a 2-core machine.
        var yaml = """
            stores:
              redis: { connection: "{{REDIS}}", timeout: 100ms, retryAfter: 2s, instances: 3 }
            rateLimits:
              shared: { key: [route], algorithm: slidingWindow, limit: 300, per: 1h, store: redis }
            routes:
              - { name: shared, match: { pathPrefix: /shared }, cluster: api, rateLimits: [shared] }
            clusters: { api: { destinations: [{{UPSTREAM}}] } }
            """.Replace("{{UPSTREAM}}", _upstream.Url, StringComparison.Ordinal).Replace("{{REDIS}}", redis.ConnectionString, StringComparison.Ordinal);
        var gateways = new List<TestGateway>();
        for (var i = 0; i < 3; i++)
        {
            var gateway = await TestGateway.StartAsync(yaml);
            _disposables.Add(gateway);
            gateways.Add(gateway);
            var clock = Stopwatch.StartNew();
            while (JsonDocument.Parse(await gateway.Admin.GetStringAsync("/readyz")).RootElement.GetProperty("redis").GetProperty("state").GetString() != "up")
            {
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), "redis did not come up");
                await Task.Delay(50);
            }
        }

        await using var hog = CpuHog.Start(2 * (Environment.ProcessorCount + 1));
        var admitted = 0;
        var sent = 0;
        var watch = Stopwatch.StartNew();
        // 24 clients × 3 gateways, 2,400 requests against a limit of 300 (bounded in time for a very slow machine).
        await Task.WhenAll(gateways.Select(async gateway =>
        {
            var remaining = 800;
            await Task.WhenAll(Enumerable.Range(0, 24).Select(async _ =>
            {
                while (Interlocked.Decrement(ref remaining) >= 0 && watch.Elapsed < TimeSpan.FromSeconds(60))
                {
                    using var response = await gateway.Client.GetAsync("/shared");
                    Interlocked.Increment(ref sent);
                    if (response.StatusCode == HttpStatusCode.OK) Interlocked.Increment(ref admitted);
                    else Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
                }
            }));
        }));

        await hog.DisposeAsync();
        var opened = gateways.Sum(g => g.Logs.Lines.Count(l => l.Contains("Redis store unavailable", StringComparison.Ordinal)));
        double fallback = 0;
        foreach (var gateway in gateways)
        {
            fallback += (await PrometheusText.ScrapeAsync(gateway.Admin)).Sum("portcullis_traffic_store_unavailable_total", ("route", "shared"), ("decision", "ratelimit.store-unavailable.local"));
        }

        output.WriteLine($"cpu hog of {hog.Count} processes: {sent} requests in {watch.Elapsed.TotalSeconds:0.0} s, {admitted} admitted of 300 ({fallback} by the local share); circuit opened {opened} times");
        Assert.True(sent > 900, $"only {sent} requests were sent");
        // Issue 14's target, ±10 %. Measured 300–312 on a shared 2-core machine (6 runs). Structurally at most
        // twice the limit (Redis admits at most the limit, the local shares at most limit ÷ instances each on
        // top); without the breaker's grace for late answers this measured 376–412, with fail-open 1,162.
        Assert.InRange(admitted, 270, 330);
    }
}

/// <summary>Busy-looping child processes (plain sh), stopped by their process ids.</summary>
internal sealed class CpuHog : IAsyncDisposable
{
    private readonly List<Process> _processes = [];
    private int _disposed;

    public int Count => _processes.Count;

    public static CpuHog Start(int processes)
    {
        var hog = new CpuHog();
        for (var i = 0; i < processes; i++)
        {
            var start = new ProcessStartInfo("/bin/sh", ["-c", "while :; do :; done"]) { UseShellExecute = false };
            hog._processes.Add(Process.Start(start)!);
        }

        return hog;
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        foreach (var process in _processes)
        {
            try
            {
                process.Kill();
                await process.WaitForExitAsync();
            }
            catch (InvalidOperationException)
            {
                // Already gone.
            }

            process.Dispose();
        }
    }
}
