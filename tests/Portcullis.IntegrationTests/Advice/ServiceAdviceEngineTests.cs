using System.Diagnostics;
using System.Text.Json;
using Portcullis.Advice;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Advice;

/// <summary>
/// The service findings end to end: a real gateway with its analytics store and the advisor's engine running every
/// 5 s, real upstreams and real traffic; the findings are read from GET /admin/advice, with the patches the engine
/// validated against the running config.
/// </summary>
public sealed class ServiceAdviceEngineTests : IDisposable
{
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("portcullis-advice-services-engine-");

    public void Dispose() => _directory.Delete(recursive: true);

    private string Database => Path.Combine(_directory.FullName, "analytics.duckdb");

    private static async Task<JsonElement> WaitForAsync(TestGateway gateway, string kind, Func<Task> drive, TimeSpan? timeout = null)
    {
        var watch = Stopwatch.StartNew();
        var limit = timeout ?? TimeSpan.FromSeconds(120);
        while (true)
        {
            await drive();
            using var response = await gateway.Admin.GetAsync("/admin/advice?kind=" + kind);
            var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
            var findings = body.GetProperty("findings");
            if (findings.GetArrayLength() > 0) return findings[0];
            Assert.True(watch.Elapsed < limit, $"no {kind} finding on /admin/advice within {limit}: {body}");
        }
    }

    private static async Task SendAsync(HttpClient client, string path, int count)
    {
        await Task.WhenAll(Enumerable.Range(0, count).Select(async _ =>
        {
            using var response = await client.GetAsync(path);
            await response.Content.ReadAsByteArrayAsync();
        }));
    }

    [Fact]
    public async Task FailingUpstreamAndFlappingDestinationAreOnTheAdviceApi()
    {
        await using var orders = await TestUpstream.StartAsync("orders");
        await using var steady = await TestUpstream.StartAsync("steady");
        await using var flaky = await TestUpstream.StartAsync("flaky");
        await using var gateway = await TestGateway.StartAsync($$"""
            analytics: { path: "{{Database}}", flushInterval: 200ms }
            advice:
              interval: 5s
              services: { errorWindow: 30s, sustainedFor: 3s, flapWindow: 1m }
            routes:
              - { name: orders, match: { pathPrefix: /orders }, cluster: orders }
              - { name: api, match: { pathPrefix: /api }, cluster: api }
            clusters:
              orders: { destinations: [{{orders.Url}}] }
              api:
                destinations: [{ name: steady, address: "{{steady.Url}}" }, { name: flaky, address: "{{flaky.Url}}" }]
                healthCheck: { active: { interval: 100ms, timeout: 100ms, path: /healthz, unhealthyThreshold: 1, healthyThreshold: 1 } }
            """);

        orders.Handler = context =>
        {
            context.Response.StatusCode = 503;
            return Task.CompletedTask;
        };
        using var stop = new CancellationTokenSource();
        var toggler = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                flaky.Healthy = !flaky.Healthy;
                await Task.Delay(400);
            }
        });
        try
        {
            var errors = await WaitForAsync(gateway, FindingKinds.UpstreamErrors, () => SendAsync(gateway.Client, "/orders/1", 10));
            Assert.Equal("cluster", errors.GetProperty("subject").GetProperty("kind").GetString());
            Assert.Equal("orders", errors.GetProperty("subject").GetProperty("name").GetString());
            Assert.Equal("critical", errors.GetProperty("severity").GetString());
            Assert.StartsWith("/ui/samples?", errors.GetProperty("evidence").GetProperty("dashboardLink").GetString(), StringComparison.Ordinal);

            var flapping = await WaitForAsync(gateway, FindingKinds.DestinationFlapping, () => Task.Delay(500));
            Assert.Equal("api/flaky", flapping.GetProperty("subject").GetProperty("name").GetString());

            // The engine kept the patch: it validated against the running config.
            Assert.Contains("healthyThreshold: 3", flapping.GetProperty("patch").GetProperty("yaml").GetString(), StringComparison.Ordinal);
        }
        finally
        {
            stop.Cancel();
            await toggler;
        }
    }

    [Fact]
    public async Task UpstreamSlowerThanItsTimeoutGivesTimeoutsAndATooTightTimeoutWithAPatch()
    {
        await using var slow = await TestUpstream.StartAsync("slow");
        slow.Delay = TimeSpan.FromMilliseconds(900);
        await using var gateway = await TestGateway.StartAsync($$"""
            analytics: { path: "{{Database}}", flushInterval: 200ms }
            advice:
              interval: 5s
              services: { errorWindow: 30s, sustainedFor: 3s, latencyWindow: 1m, minLatencyRequests: 20 }
            routes:
              - { name: slow, match: { pathPrefix: /slow }, cluster: slow }
            clusters:
              slow: { destinations: [{{slow.Url}}], timeouts: { request: 1s } }
            """);

        // Most answers take 900 ms (90 % of the timeout); every other round the upstream hangs past it: 504s.
        var round = 0;
        Task Drive()
        {
            slow.Delay = round++ % 2 == 0 ? TimeSpan.FromMilliseconds(900) : TimeSpan.FromMilliseconds(1500);
            return SendAsync(gateway.Client, "/slow/x", 15);
        }

        var tight = await WaitForAsync(gateway, FindingKinds.TimeoutTooTight, Drive);
        Assert.Equal("slow", tight.GetProperty("subject").GetProperty("name").GetString());
        // Raised above the 1s timeout: at least 1.5 × it, rounded up to whole seconds.
        Assert.Matches(@"timeouts:\n\s+request: ([2-9]|\d\d+)s", tight.GetProperty("patch").GetProperty("yaml").GetString());
        var timeouts = await WaitForAsync(gateway, FindingKinds.UpstreamTimeouts, Drive);
        Assert.Equal("slow", timeouts.GetProperty("subject").GetProperty("name").GetString());
    }
}
