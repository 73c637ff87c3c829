using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests;

/// <summary>HTTP/2 rapid reset against the real gateway: Kestrel refuses it, and the log stays small.</summary>
public sealed class Http2FloodLogTests(Xunit.Abstractions.ITestOutputHelper output)
{
    [Fact]
    public async Task RapidReset_IsRefused_AndLoggedAsABoundedSummary()
    {
        await using var upstream = await TestUpstream.StartAsync("h2-flood");
        await using var gateway = await TestGateway.StartAsync($$$"""
            listeners:
              - { name: public, address: "127.0.0.1:{{PORT}}", protocols: http2 }
              - { name: admin, address: "127.0.0.1:{{ADMIN_PORT}}", admin: true }
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                destinations: [{{{upstream.Url}}}]
            """);

        // Three attacking connections, one after the other.
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (var i = 0; i < 3; i++)
        {
            var result = await RapidResetClient.AttackAsync(gateway.Port, 20_000, "/flood", TimeSpan.FromSeconds(30));
            output.WriteLine($"observed: attack {i}: {result.StreamsSent} streams sent, GOAWAY {result.GoAwayCode?.ToString() ?? "none"}");
        }

        // The gateway still serves HTTP/2 afterwards.
        using (var h2 = new HttpClient { BaseAddress = new Uri(gateway.Url), DefaultRequestVersion = System.Net.HttpVersion.Version20, DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact })
        using (var ok = await h2.GetAsync("/after-flood"))
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, ok.StatusCode);
        }

        var kestrel = gateway.Logs.Lines.Where(l => l.Contains("Microsoft.AspNetCore.Server.Kestrel.Http2", StringComparison.Ordinal)).ToList();
        var flood = gateway.Logs.Lines.Where(l => l.Contains("Http2FloodLog", StringComparison.Ordinal)).ToList();
        foreach (var line in kestrel.Concat(flood).Take(10)) output.WriteLine($"observed log: {line}");
        output.WriteLine($"observed: {kestrel.Count} Kestrel HTTP/2 lines, {flood.Count} summary lines");

        // Kestrel's per-operation Critical lines (dozens per connection) become at most two lines per interval begun.
        var intervals = (int)(clock.Elapsed / Portcullis.Listeners.Http2FloodLog.Interval) + 1;
        Assert.Empty(kestrel);
        Assert.InRange(flood.Count, 1, 2 * intervals);
        Assert.Contains(flood, l => l.StartsWith("Warning:", StringComparison.Ordinal) && l.Contains("HTTP/2 flood refused by Kestrel", StringComparison.Ordinal) && l.Contains("from 127.0.0.1", StringComparison.Ordinal));
    }
}
