using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Portcullis.Advice;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.Testing;

namespace Portcullis.IntegrationTests.Advice;

/// <summary>
/// advice.webhook against a real Kestrel receiver on 127.0.0.1: each new finding is POSTed as JSON, failed
/// attempts are retried with backoff until one succeeds, a receiver that never succeeds is given up after
/// maxAttempts and counted in portcullis_advice_webhook_failures_total; /metrics has the open findings and run time.
/// </summary>
public sealed class AdviceWebhookTests
{
    private static string Config(string url, int maxAttempts) => $$"""
        advice:
          interval: 5s
          webhook: { url: "{{url}}", timeout: 2s, maxAttempts: {{maxAttempts}} }
        routes:
          - { name: reports, match: { pathPrefix: /reports }, respond: { status: 200 } }
        """;

    private static Task<TestGateway> StartAsync(string yaml) =>
        TestGateway.StartAsync(yaml, configureServices: services => services.AddSingleton<IAdviceDetector, AdviceApiTests.FixedDetector>());

    [Fact]
    public async Task EachNewFindingIsPostedOnceTheReceiverRecoversAfterFailedAttempts()
    {
        var attempts = new ConcurrentDictionary<string, int>();
        var delivered = new ConcurrentDictionary<string, JsonElement>();
        await using var receiver = await TestUpstream.StartAsync("hook");
        receiver.Handler = async context =>
        {
            var id = context.Request.Headers["X-Portcullis-Finding"].ToString();
            var body = await JsonDocument.ParseAsync(context.Request.Body);
            // The first two attempts per finding fail: one 503, one reset without an answer.
            var attempt = attempts.AddOrUpdate(id, 1, (_, n) => n + 1);
            if (attempt == 1)
            {
                context.Response.StatusCode = StatusCodes.Status503ServiceUnavailable;
                return;
            }

            if (attempt == 2)
            {
                context.Abort();
                return;
            }

            delivered[id] = body.RootElement.Clone();
            context.Response.StatusCode = StatusCodes.Status204NoContent;
        };

        await using var gateway = await StartAsync(Config(receiver.Url + "/hook", maxAttempts: 4));
        await Eventually.TrueAsync(() => delivered.Count == 2, "both findings delivered", context: () => Task.FromResult(gateway.Logs.ToString()));

        foreach (var (id, body) in delivered)
        {
            Assert.Equal(3, attempts[id]);
            Assert.Equal("finding.new", body.GetProperty("event").GetString());
            Assert.Equal(id, body.GetProperty("finding").GetProperty("id").GetString());
            Assert.Equal("open", body.GetProperty("finding").GetProperty("state").GetString());
        }

        // Later runs find the same findings: not new, not sent again.
        var runs = gateway.Services.GetRequiredService<AdviceEngine>().Current.GeneratedAt;
        await Eventually.TrueAsync(() => gateway.Services.GetRequiredService<AdviceEngine>().Current.GeneratedAt > runs, "another run", TimeSpan.FromSeconds(60));
        Assert.Equal(6, attempts.Values.Sum());

        var metrics = await gateway.Admin.GetStringAsync("/metrics");
        Assert.Matches(@"(?m)^portcullis_advice_findings\{[^}]*kind=""traffic.scanner""[^}]*severity=""warning""[^}]*\} 1$", metrics);
        Assert.Matches(@"(?m)^portcullis_advice_run_duration_seconds_count\{?[^ ]*\}? [1-9]", metrics);
        Assert.Matches(@"(?m)^portcullis_advice_webhook_failures_total\{[^}]*reason=""attempts""[^}]*\} 0$", metrics);
    }

    [Fact]
    public async Task AReceiverThatNeverSucceedsIsGivenUpAfterMaxAttemptsAndCounted()
    {
        var attempts = 0;
        await using var receiver = await TestUpstream.StartAsync("hook");
        receiver.Handler = context =>
        {
            Interlocked.Increment(ref attempts);
            context.Response.StatusCode = StatusCodes.Status500InternalServerError;
            return Task.CompletedTask;
        };

        await using var gateway = await StartAsync(Config(receiver.Url + "/hook", maxAttempts: 2));
        var webhook = gateway.Services.GetRequiredService<AdviceWebhook>();
        await Eventually.TrueAsync(() => webhook.GaveUp == 2, "both findings given up", context: () => Task.FromResult(gateway.Logs.ToString()));
        Assert.Equal(4, Volatile.Read(ref attempts));
        Assert.Contains(gateway.Logs.Lines, l => l.Contains("webhook gave up on finding", StringComparison.Ordinal) && l.Contains("after 2 attempt(s): HTTP 500", StringComparison.Ordinal));
        var metrics = await gateway.Admin.GetStringAsync("/metrics");
        Assert.Matches(@"(?m)^portcullis_advice_webhook_failures_total\{[^}]*reason=""attempts""[^}]*\} 2$", metrics);

        // The engine was never held up by the failing receiver: its runs go on.
        Assert.NotNull(gateway.Services.GetRequiredService<AdviceEngine>().Current.LastRun);
    }
}
