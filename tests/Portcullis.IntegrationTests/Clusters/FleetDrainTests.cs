using Microsoft.Extensions.DependencyInjection;
using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.Testing;

namespace Portcullis.IntegrationTests.Clusters;

/// <summary>
/// Issue 18, item 9: drains optionally fleet-wide. A drain with scope=fleet on one gateway is kept in the
/// shared Redis and applied by every gateway (pub/sub, a poll as fallback, read at start); an undrain on
/// another gateway lifts it everywhere. Observed with real upstreams: which one answers.
/// </summary>
public sealed class FleetDrainTests : IAsyncLifetime
{
    private readonly List<IAsyncDisposable> _disposables = [];
    private readonly string _directory = Directory.CreateTempSubdirectory("portcullis-fleet-drain-").FullName;
    private TestUpstream _one = null!;
    private TestUpstream _two = null!;

    public async Task InitializeAsync()
    {
        _one = await TestUpstream.StartAsync("one");
        _two = await TestUpstream.StartAsync("two");
    }

    public async Task DisposeAsync()
    {
        for (var i = _disposables.Count - 1; i >= 0; i--) await _disposables[i].DisposeAsync();
        await _one.DisposeAsync();
        await _two.DisposeAsync();
        Directory.Delete(_directory, recursive: true);
    }

    private string Yaml(RedisServer redis, string audit) => $$"""
        stores:
          redis: { connection: "{{redis.ConnectionString}}", timeout: 2s }
        routes:
          - { name: api, match: { pathPrefix: / }, cluster: api }
        clusters:
          api:
            loadBalancing: roundRobin
            destinations:
              - { name: one, address: "{{_one.Url}}" }
              - { name: two, address: "{{_two.Url}}" }
        observability:
          audit: { path: "{{Path.Combine(_directory, audit)}}" }
        """;

    private async Task<TestGateway> StartAsync(string yaml)
    {
        var gateway = await TestGateway.StartAsync(yaml);
        _disposables.Add(gateway);
        return gateway;
    }

    // Which upstreams answer `count` requests through the gateway.
    private static async Task<HashSet<string>> AnsweringAsync(TestGateway gateway, int count = 8)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < count; i++)
        {
            using var response = await gateway.Client.GetAsync("/x");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            names.Add((await UpstreamAnswer.ReadAsync(response)).Server);
        }

        return names;
    }

    private static Portcullis.Clusters.FleetDrains Drains(TestGateway gateway) => gateway.Services.GetRequiredService<Portcullis.Clusters.FleetDrains>();

    private static async Task<JsonElement> DestinationAsync(TestGateway gateway, string name) =>
        JsonDocument.Parse(await gateway.Admin.GetStringAsync("/admin/clusters")).RootElement.GetProperty("clusters")[0]
            .GetProperty("destinations").EnumerateArray().Single(d => d.GetProperty("name").GetString() == name).Clone();

    private static async Task<List<JsonElement>> AuditAsync(string path)
    {
        if (!File.Exists(path)) return [];
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        using var reader = new StreamReader(stream);
        return [.. (await reader.ReadToEndAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement.Clone())];
    }

    [Fact]
    public async Task A_fleet_drain_on_one_gateway_stops_the_others_and_an_undrain_on_another_lifts_it()
    {
        var redis = await RedisServer.StartAsync();
        _disposables.Add(redis);
        var a = await StartAsync(Yaml(redis, "a-audit.log"));
        var b = await StartAsync(Yaml(redis, "b-audit.log"));
        Assert.Equal(["one", "two"], (await AnsweringAsync(b)).Order());

        // A message published before B listens cannot reach it (B would pick the drain up on a read instead, which
        // is not what this test is about): wait until both listen. On a loaded machine Redis connects late.
        await Eventually.TrueAsync(() => Drains(a).Subscribed && Drains(b).Subscribed, "A and B subscribe to the drains channel");

        // Drain "two" for the fleet through A: B stops sending to it without being told directly.
        using (var drain = await a.Admin.PostAsync("/admin/clusters/api/destinations/two/drain?scope=fleet", null))
        {
            Assert.Equal(HttpStatusCode.OK, drain.StatusCode);
            Assert.Equal("fleet", JsonDocument.Parse(await drain.Content.ReadAsStringAsync()).RootElement.GetProperty("scope").GetString());
        }

        var clock = Stopwatch.StartNew();
        await Eventually.TrueAsync(async () => (await DestinationAsync(b, "two")).GetProperty("drained").GetBoolean(), "B applies the fleet drain");
        var applied = clock.Elapsed;
        // The registry (what the admin view shows) changes a moment before the balancer's destination list is
        // rebuilt from it; on a loaded machine a request can fall into that moment, so wait for the traffic too.
        await Eventually.TrueAsync(async () => (await AnsweringAsync(b)).SetEquals(["one"]), "B stops sending to two");
        Assert.Equal(["one"], await AnsweringAsync(b));
        Assert.Equal(["one"], await AnsweringAsync(a));
        var listed = await DestinationAsync(b, "two");
        Assert.Equal(["fleet"], listed.GetProperty("drainedBy").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal("loopback", listed.GetProperty("fleetDrain").GetProperty("by").GetString());

        // A gateway started afterwards reads it at start; a reload keeps it.
        var c = await StartAsync(Yaml(redis, "c-audit.log"));
        await Eventually.TrueAsync(async () => (await DestinationAsync(c, "two")).GetProperty("drained").GetBoolean(), "a new gateway reads the fleet drain at start");
        await Eventually.TrueAsync(async () => (await AnsweringAsync(c)).SetEquals(["one"]), "C stops sending to two");
        Assert.Equal(["one"], await AnsweringAsync(c));
        Assert.Equal(200, (await b.ReloadAsync()).Status);
        Assert.Equal(["one"], await AnsweringAsync(b));

        // An instance-scoped undrain does not lift a fleet drain.
        using (var local = await b.Admin.PostAsync("/admin/clusters/api/destinations/two/undrain", null)) Assert.Equal(HttpStatusCode.OK, local.StatusCode);
        Assert.Equal(["one"], await AnsweringAsync(b));

        // Undrain for the fleet through B: A sends to "two" again.
        using (var undrain = await b.Admin.PostAsync("/admin/clusters/api/destinations/two/undrain?scope=fleet", null)) Assert.Equal(HttpStatusCode.OK, undrain.StatusCode);
        await Eventually.TrueAsync(async () => !(await DestinationAsync(a, "two")).GetProperty("drained").GetBoolean(), "A lifts the fleet drain");
        await Eventually.TrueAsync(async () => (await AnsweringAsync(a)).Contains("two"), "A sends to two again");
        Assert.Equal(["one", "two"], (await AnsweringAsync(a)).Order());
        Assert.False((await DestinationAsync(a, "two")).TryGetProperty("drainedBy", out _));

        // Audited where it was asked, with its scope.
        await Eventually.TrueAsync(async () => (await AuditAsync(Path.Combine(_directory, "a-audit.log"))).Any(r => r.GetProperty("type").GetString() == "admin.drain"), "drain audited on A");
        var drained = (await AuditAsync(Path.Combine(_directory, "a-audit.log"))).Single(r => r.GetProperty("type").GetString() == "admin.drain");
        Assert.Equal("fleet", drained.GetProperty("scope").GetString());
        await Eventually.TrueAsync(async () => (await AuditAsync(Path.Combine(_directory, "b-audit.log"))).Any(r => r.GetProperty("type").GetString() == "admin.undrain" && r.GetProperty("scope").GetString() == "fleet"), "undrain audited on B");

        // Pub/sub, not only the 5 s poll, carried it: B received the change messages (a count, not a timing, so a
        // loaded machine cannot fail it); the time stays as a loose sanity bound.
        // Handlers run on the client's own queue, so the count may trail the applied change by a moment.
        await Eventually.TrueAsync(() => Drains(b).MessagesReceived >= 2, "B receives the drain and undrain messages on the channel");
        Assert.True(applied < TimeSpan.FromSeconds(30), $"B applied the drain after {applied}");
    }

    [Fact]
    public async Task A_fleet_drain_without_redis_is_refused_and_a_bad_scope_is_a_400()
    {
        var gateway = await StartAsync($$"""
            routes:
              - { name: api, match: { pathPrefix: / }, cluster: api }
            clusters:
              api: { destinations: [{ name: one, address: "{{_one.Url}}" }] }
            """);
        using (var response = await gateway.Admin.PostAsync("/admin/clusters/api/destinations/one/drain?scope=fleet", null))
        {
            Assert.Equal(HttpStatusCode.Conflict, response.StatusCode);
            Assert.Equal("admin.fleet-store-missing", JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("reason").GetString());
        }

        using (var response = await gateway.Admin.PostAsync("/admin/clusters/api/destinations/one/drain?scope=everywhere", null))
        {
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Equal("admin.drain-scope-invalid", JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("reason").GetString());
        }

        Assert.False((await DestinationAsync(gateway, "one")).GetProperty("drained").GetBoolean());
    }
}
