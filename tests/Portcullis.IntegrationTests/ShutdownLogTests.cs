using System.Net;
using Microsoft.AspNetCore.Http;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests;

/// <summary>A shutdown says what it does: "stopping" with the requests in flight, then finished or cut (issue 18, item 13).</summary>
public sealed class ShutdownLogTests
{
    [Fact]
    public async Task Stop_LogsStopping_WithTheRequestInFlight_ThenThatItFinished()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var arrived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var upstream = await TestUpstream.StartAsync("slow");
        upstream.Handler = async context =>
        {
            arrived.TrySetResult();
            await release.Task;
            await context.Response.WriteAsync("done");
        };
        await using var gateway = await TestGateway.StartAsync($$"""
            limits: { shutdownTimeout: 60s }
            routes:
              - { name: all, cluster: slow }
            clusters:
              slow: { destinations: [{{upstream.Url}}] }
            """);

        var pending = gateway.Client.GetAsync("/slow");
        await arrived.Task.WaitAsync(TimeSpan.FromSeconds(30));
        var stopping = gateway.StopAsync();

        await Eventually.TrueAsync(() => Lines(gateway, "Stopping: ").Count > 0, "the stopping line", context: () => Task.FromResult(gateway.Logs.ToString()));
        var line = Assert.Single(Lines(gateway, "Stopping: "));
        Assert.Contains("1 proxied request(s) in flight get up to 00:01:00", line, StringComparison.Ordinal);
        Assert.Empty(Lines(gateway, "Stopped"));

        release.SetResult();
        using (var response = await pending) Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await stopping.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Single(Lines(gateway, "every in-flight request finished"));
        Assert.Empty(Lines(gateway, "were cut"));
    }

    [Fact]
    public async Task Stop_AtTheShutdownTimeout_LogsHowManyRequestsWereCut()
    {
        var arrived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var upstream = await TestUpstream.StartAsync("stuck");
        upstream.Handler = async context =>
        {
            arrived.TrySetResult();
            await Task.Delay(Timeout.Infinite, context.RequestAborted);
        };
        await using var gateway = await TestGateway.StartAsync($$"""
            limits: { shutdownTimeout: 1s }
            routes:
              - { name: all, cluster: stuck }
            clusters:
              stuck: { destinations: [{{upstream.Url}}] }
            """);

        var pending = gateway.Client.GetAsync("/stuck");
        await arrived.Task.WaitAsync(TimeSpan.FromSeconds(30));
        await gateway.StopAsync();

        var cut = Assert.Single(Lines(gateway, "were cut"));
        Assert.StartsWith("Warning:", cut, StringComparison.Ordinal);
        Assert.Contains("Stopped at the shutdown timeout (00:00:01): 1 proxied request(s) still running were cut", cut, StringComparison.Ordinal);
        Assert.Empty(Lines(gateway, "every in-flight request finished"));
        try
        {
            using var response = await pending;
        }
        catch (HttpRequestException)
        {
            // cut: the connection closed without an answer
        }
    }

    private static List<string> Lines(TestGateway gateway, string text) =>
        gateway.Logs.Lines.Where(l => l.Contains(text, StringComparison.Ordinal)).ToList();
}
