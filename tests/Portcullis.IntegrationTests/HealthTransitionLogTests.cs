using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests;

/// <summary>
/// A destination going down and coming back is logged both ways, once per transition (issue 14, item 4):
/// real upstreams stopped and restarted on their port, real probes and requests.
/// </summary>
public sealed class HealthTransitionLogTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task ActiveHealth_LogsTheRecoveryOfAStoppedAndRestartedUpstream_Once()
    {
        await using var a = await TestUpstream.StartAsync("a");
        await using var b = await TestUpstream.StartAsync("b");
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                destinations: {{Destinations(a, b)}}
                healthCheck:
                  active: { interval: 200ms, timeout: 200ms, unhealthyThreshold: 2, healthyThreshold: 2 }
            """);

        await WaitForActiveAsync(gateway, "b", "healthy");
        Assert.Empty(Recovered(gateway, "b")); // unknown → healthy at start is no recovery

        await b.StopAsync();
        await WaitForActiveAsync(gateway, "b", "unhealthy");
        Assert.Empty(Recovered(gateway, "b"));

        await b.StartAsync();
        await WaitForActiveAsync(gateway, "b", "healthy");
        await Eventually.TrueAsync(() => Task.FromResult(Recovered(gateway, "b").Count > 0), "the recovery line", context: gateway.ClustersAndLogDump());

        // Further good probes (several intervals) add no line: once per transition.
        var probesBefore = b.HealthProbes;
        await Eventually.TrueAsync(() => Task.FromResult(b.HealthProbes >= probesBefore + 3), "three more probes", context: gateway.ClustersAndLogDump());
        var lines = Recovered(gateway, "b");
        Assert.Single(lines);
        Assert.Contains("Information:", lines[0], StringComparison.Ordinal);
        Assert.Contains("cluster web is healthy again after 2 good probe(s)", lines[0], StringComparison.Ordinal);
        Assert.Empty(Recovered(gateway, "a"));
    }

    [Fact]
    public async Task PassiveHealth_LogsTheEjectionAndTheRecoveryOfAStoppedAndRestartedUpstream_Once()
    {
        await using var a = await TestUpstream.StartAsync("a");
        await using var b = await TestUpstream.StartAsync("b");
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                retries: 0
                loadBalancing: roundRobin
                destinations: {{Destinations(a, b)}}
                healthCheck:
                  passive: { failures: 2, reactivation: 500ms }
            """);

        await b.StopAsync();
        await Eventually.TrueAsync(async () =>
        {
            using var response = await gateway.Client.GetAsync("/p");
            return (await DestinationAsync(gateway, "b")).GetProperty("passive").GetString() == "unhealthy";
        }, "b passively ejected", context: gateway.ClustersAndLogDump());
        var ejected = Lines(gateway, "Destination b of cluster web ejected after 2 failed request(s) in a row; it is tried again in 00:00:00.5");
        Assert.Single(ejected);
        Assert.StartsWith("Warning:", ejected[0], StringComparison.Ordinal);
        Assert.Empty(Lines(gateway, "Destination b of cluster web answers again"));

        await b.StartAsync();
        await Eventually.TrueAsync(async () =>
        {
            using var response = await gateway.Client.GetAsync("/p");
            return response.StatusCode == HttpStatusCode.OK && b.Requests > 0;
        }, "b to get traffic again", context: gateway.ClustersAndLogDump());
        for (var i = 0; i < 6; i++)
        {
            using var response = await gateway.Client.GetAsync("/p");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        var recovered = Lines(gateway, "Destination b of cluster web answers again after its passive ejection");
        Assert.Single(recovered);
        Assert.StartsWith("Information:", recovered[0], StringComparison.Ordinal);
        Assert.Single(Lines(gateway, "Destination b of cluster web ejected"));
    }

    private static List<string> Recovered(TestGateway gateway, string destination) =>
        Lines(gateway, $"Destination {destination} of cluster web is healthy again");

    private static List<string> Lines(TestGateway gateway, string text) =>
        gateway.Logs.Lines.Where(l => l.Contains(text, StringComparison.Ordinal)).ToList();

    private static string Destinations(params TestUpstream[] upstreams) =>
        "[" + string.Join(", ", upstreams.Select(u => $"{{ name: {u.Name}, address: \"{u.Url}\" }}")) + "]";

    private static async Task<JsonElement> DestinationAsync(TestGateway gateway, string destination)
    {
        using var json = JsonDocument.Parse(await gateway.Admin.GetStringAsync("/admin/clusters"));
        var cluster = json.RootElement.GetProperty("clusters").EnumerateArray().Single(c => c.GetProperty("name").GetString() == "web");
        return cluster.GetProperty("destinations").EnumerateArray().Single(d => d.GetProperty("name").GetString() == destination).Clone();
    }

    private static Task WaitForActiveAsync(TestGateway gateway, string destination, string state) =>
        Eventually.TrueAsync(async () => (await DestinationAsync(gateway, destination)).GetProperty("active").GetString() == state, $"{destination} active {state}", context: gateway.ClustersAndLogDump());
}
