using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Portcullis.Configuration;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.Routing;

namespace Portcullis.IntegrationTests.Routing;

/// <summary>
/// Issue 20: a reload rebuilds the endpoints of the routes it changed, not all of them. YARP keeps the endpoint of
/// a route whose YARP settings are unchanged, and the gateway moves that endpoint's binding to the new generation,
/// so what changed outside YARP's view (a fixed answer, auth) still applies, and no older snapshot stays alive
/// through the endpoints YARP kept.
/// </summary>
[Collection(WholeHeapCollection.Name)]
public sealed class EndpointReuseTests
{
    private static string Config(string upstream, string pathOfA, string answerOfC, bool authOnB) => $$"""
        advice: { enabled: false }
        routes:
          - { name: a, match: { path: {{pathOfA}} }, respond: { body: a } }
          - { name: b, match: { pathPrefix: /b }, cluster: up{{(authOnB ? ", auth: { apiKey: true }" : "")}} }
          - { name: c, match: { path: /c }, respond: { body: {{answerOfC}} } }
        identity: { apiKeys: { file: keys.yaml } }
        clusters:
          up: { destinations: [{{upstream}}] }
        """;

    private static Dictionary<string, Endpoint> RouteEndpoints(TestGateway gateway) =>
        gateway.Services.GetRequiredService<EndpointDataSource>().Endpoints
            .Where(e => e.Metadata.GetMetadata<RouteBindingSlot>() is not null)
            .ToDictionary(e => e.Metadata.GetMetadata<RouteBindingSlot>()!.Current.RouteId, StringComparer.Ordinal);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static WeakReference<GatewaySnapshot> Weakly(TestGateway gateway) => new(gateway.Services.GetRequiredService<SnapshotStore>().Current);

    [Fact]
    public async Task OnlyChangedRoutesGetNewEndpoints_KeptOnesServeTheNewGeneration_AndOldSnapshotsAreReleased()
    {
        await using var up = await TestUpstream.StartAsync("up");
        await using var gateway = await TestGateway.StartAsync(Config(up.Url, "/a", "c1", authOnB: false), new Dictionary<string, string> { ["keys.yaml"] = "consumers: {}\n" });
        Assert.Equal("c1", await gateway.Client.GetStringAsync("/c"));
        var first = RouteEndpoints(gateway);

        // a: its path changes (YARP's config of it changes); b: auth on (only the gateway's own compiled route);
        // c: its fixed answer changes (idem).
        var generation = gateway.Generation;
        await gateway.WriteConfigAsync(Config(up.Url, "/a2", "c2", authOnB: true));
        var (status, _) = await gateway.ReloadAsync();
        Assert.Equal(200, status);
        await gateway.WaitForGenerationAsync(generation);

        Assert.Equal("c2", await gateway.Client.GetStringAsync("/c"));
        using (var refused = await gateway.Client.GetAsync("/b/x"))
        {
            Assert.Equal(System.Net.HttpStatusCode.Unauthorized, refused.StatusCode);
        }

        Assert.Equal("a", await gateway.Client.GetStringAsync("/a2"));
        var second = RouteEndpoints(gateway);
        Assert.NotSame(first["a"], second["a"]);
        Assert.Same(first["b"], second["b"]);
        Assert.Same(first["c"], second["c"]);
        Assert.All(second.Values, e => Assert.Equal(gateway.Generation, e.Metadata.GetMetadata<RouteBindingSlot>()!.Current.Snapshot.Generation));

        // Two more reloads that change only c: the second generation's snapshot (the first stays referenced, by
        // design, to tell which read-at-start settings changed since start) is released, although b's endpoint,
        // kept all along, still holds the route config YARP was given in the first.
        var secondSnapshot = Weakly(gateway);
        foreach (var answer in new[] { "c3", "c4" })
        {
            generation = gateway.Generation;
            await gateway.WriteConfigAsync(Config(up.Url, "/a2", answer, authOnB: true));
            (status, _) = await gateway.ReloadAsync();
            Assert.Equal(200, status);
            await gateway.WaitForGenerationAsync(generation);
            Assert.Equal(answer, await gateway.Client.GetStringAsync("/c"));
        }

        Assert.Same(first["b"], RouteEndpoints(gateway)["b"]);
        for (var i = 0; i < 3; i++)
        {
            GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
            GC.WaitForPendingFinalizers();
        }

        Assert.False(secondSnapshot.TryGetTarget(out _), "the second generation's snapshot is still reachable two reloads later");
    }
}
