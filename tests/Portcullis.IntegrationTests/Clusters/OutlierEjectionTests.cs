using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Portcullis.IntegrationTests.Infrastructure;
using Xunit.Abstractions;

namespace Portcullis.IntegrationTests.Clusters;

/// <summary>
/// Issue 19, item 5: healthCheck.outlierDetection against four real upstreams on loopback. A destination that
/// answers 500 to 60 % of its requests is ejected (clients stop seeing its 5xx); when three of four do, no more
/// than maxEjectionPercent are ejected; an ejected destination returns after its ejection time. Short intervals,
/// conditions polled (no fixed sleeps).
/// </summary>
public sealed class OutlierEjectionTests(ITestOutputHelper output)
{
    private static string Yaml(TestUpstream[] upstreams, string outlierDetection) => $$"""
        routes:
          - { name: all, cluster: web }
        clusters:
          web:
            retries: 0
            destinations: [{{string.Join(", ", upstreams.Select(u => $"{{ name: {u.Name}, address: \"{u.Url}\" }}"))}}]
            healthCheck:
              outlierDetection: {{outlierDetection}}
        """;

    [Fact]
    public async Task A_destination_answering_500_to_60_percent_is_ejected_and_clients_stop_seeing_5xx()
    {
        var upstreams = await StartAsync(4);
        await using var _ = new Disposables(upstreams);
        upstreams[3].Handler = Failing(60);
        await using var gateway = await TestGateway.StartAsync(Yaml(upstreams,
            "{ interval: 500ms, baseEjectionTime: 5m, maxEjectionPercent: 50, failurePercentage: { threshold: 50, minRequests: 10, minDestinations: 3 } }"));

        var before = new Tally();
        await Eventually.TrueAsync(async () =>
        {
            await SendAsync(gateway, 40, before);
            return Outlier(await DestinationAsync(gateway, "d")).State == "ejected";
        }, "d to be ejected", context: gateway.ClustersAndLogDump());

        var d = Outlier(await DestinationAsync(gateway, "d"));
        Assert.Equal("outlier.failure-percentage", d.Reason);
        Assert.True(d.Until - d.Since >= TimeSpan.FromMinutes(5) - TimeSpan.FromSeconds(1), $"ejected for {d.Until - d.Since}");
        foreach (var name in new[] { "a", "b", "c" }) Assert.Equal("in", Outlier(await DestinationAsync(gateway, name)).State);
        Assert.Contains(gateway.Logs.Lines, l => l.Contains("Destination d of cluster web ejected as an outlier (outlier.failure-percentage)", StringComparison.Ordinal));
        output.WriteLine($"before ejection: {before.Errors} of {before.Total} answers were 5xx");
        Assert.True(before.Errors > 0, "d's 500s reached clients before its ejection");

        var after = new Tally();
        var dRequests = upstreams[3].Requests;
        await SendAsync(gateway, 200, after);
        Assert.Equal((200, 0), (after.Total, after.Errors));
        Assert.Equal(dRequests, upstreams[3].Requests);

        var metrics = await gateway.Admin.GetStringAsync("/metrics");
        Assert.Matches(@"(?m)^portcullis_upstream_outlier_ejections_total\{(?=[^}]*cluster=""web"")(?=[^}]*reason=""outlier.failure-percentage"")[^}]*\} 1$", metrics);
        Assert.Matches(@"(?m)^portcullis_upstream_outlier_ejected\{(?=[^}]*cluster=""web"")[^}]*\} 1$", metrics);
    }

    [Fact]
    public async Task When_three_of_four_fail_at_most_maxEjectionPercent_are_ejected_and_the_cluster_is_never_emptied()
    {
        var upstreams = await StartAsync(4);
        await using var _ = new Disposables(upstreams);
        for (var i = 1; i < 4; i++) upstreams[i].Handler = Failing(60);
        await using var gateway = await TestGateway.StartAsync(Yaml(upstreams,
            "{ interval: 500ms, baseEjectionTime: 5m, maxEjectionPercent: 50, failurePercentage: { threshold: 50, minRequests: 10, minDestinations: 2 } }"));

        var ejectedCounts = new List<int>();
        await Eventually.TrueAsync(async () =>
        {
            await SendAsync(gateway, 40, new Tally());
            var cluster = await ClusterAsync(gateway);
            var ejected = Destinations(cluster).Count(d => Outlier(d).State == "ejected");
            ejectedCounts.Add(ejected);
            Assert.True(cluster.GetProperty("availableDestinations").GetInt32() >= 2, $"cluster down to {cluster.GetProperty("availableDestinations")} available destinations");

            // Two out, and the detector has since found a third outlier it had to leave in.
            return ejected == 2 && gateway.Logs.Lines.Any(l => l.Contains("but stays in service", StringComparison.Ordinal));
        }, "two of the three failing destinations ejected and the third kept in by maxEjectionPercent", context: gateway.ClustersAndLogDump());

        // More intervals with the same failures change nothing: never more than half out.
        var capLines = CapLines(gateway);
        await Eventually.TrueAsync(async () =>
        {
            await SendAsync(gateway, 40, new Tally());
            ejectedCounts.Add(Destinations(await ClusterAsync(gateway)).Count(d => Outlier(d).State == "ejected"));
            return CapLines(gateway) >= capLines + 2;
        }, "two more evaluations that kept the third failing destination in", context: gateway.ClustersAndLogDump());
        output.WriteLine($"ejected per check: {string.Join(",", ejectedCounts)}");
        Assert.All(ejectedCounts, count => Assert.InRange(count, 0, 2));
        var final = await ClusterAsync(gateway);
        Assert.Equal("in", Outlier(Destinations(final).Single(d => d.GetProperty("name").GetString() == "a")).State);
        Assert.Equal(2, final.GetProperty("availableDestinations").GetInt32());
        Assert.Matches(@"(?m)^portcullis_upstream_outlier_capped_total\{[^}]*cluster=""web""[^}]*\} [1-9]", await gateway.Admin.GetStringAsync("/metrics"));
    }

    [Fact]
    public async Task An_ejected_destination_gets_traffic_again_after_its_ejection_time()
    {
        var upstreams = await StartAsync(4);
        await using var _ = new Disposables(upstreams);
        upstreams[3].Handler = Failing(100);
        await using var gateway = await TestGateway.StartAsync(Yaml(upstreams,
            "{ interval: 300ms, baseEjectionTime: 3s, maxEjectionPercent: 50, failurePercentage: { threshold: 50, minRequests: 5, minDestinations: 3 } }"));

        await Eventually.TrueAsync(async () =>
        {
            await SendAsync(gateway, 24, new Tally());
            return Outlier(await DestinationAsync(gateway, "d")).State == "ejected";
        }, "d to be ejected", context: gateway.ClustersAndLogDump());
        var ejection = Outlier(await DestinationAsync(gateway, "d"));
        Assert.Equal(TimeSpan.FromSeconds(3), ejection.Until - ejection.Since);
        upstreams[3].Handler = null; // healthy from now on

        var dRequests = upstreams[3].Requests;
        await Eventually.TrueAsync(async () =>
        {
            await SendAsync(gateway, 8, new Tally());
            return upstreams[3].Requests > dRequests;
        }, "d to get traffic again", context: gateway.ClustersAndLogDump());
        var back = DateTimeOffset.UtcNow;
        output.WriteLine($"d back {(back - ejection.Since).TotalMilliseconds:0} ms after its ejection (until {ejection.Until:O})");
        Assert.True(back >= ejection.Until - TimeSpan.FromMilliseconds(200), $"d got traffic at {back:O}, before its ejection ended at {ejection.Until:O}");
        await Eventually.TrueAsync(async () => Outlier(await DestinationAsync(gateway, "d")).State == "in", "d shown back in service", context: gateway.ClustersAndLogDump());
        Assert.NotEqual("unhealthy", (await DestinationAsync(gateway, "d")).GetProperty("passive").GetString());
    }

    [Fact]
    public async Task A_destination_much_slower_than_the_others_is_ejected_for_latency()
    {
        var upstreams = await StartAsync(4);
        await using var _ = new Disposables(upstreams);
        // 2 s against loopback answers: the others' p90 would have to pass 666 ms (a loaded machine) to hide it.
        upstreams[2].Delay = TimeSpan.FromSeconds(2);
        await using var gateway = await TestGateway.StartAsync(Yaml(upstreams,
            "{ interval: 3s, baseEjectionTime: 5m, latency: { factor: 3, minRequests: 3, minDestinations: 3, minLatency: 200ms } }"));

        await Eventually.TrueAsync(async () =>
        {
            await SendAsync(gateway, 24, new Tally());
            return Outlier(await DestinationAsync(gateway, "c")).State == "ejected";
        }, "c to be ejected for latency", context: gateway.ClustersAndLogDump());
        Assert.Equal("outlier.latency", Outlier(await DestinationAsync(gateway, "c")).Reason);
        foreach (var name in new[] { "a", "b", "d" }) Assert.Equal("in", Outlier(await DestinationAsync(gateway, name)).State);
        var line = Assert.Single(gateway.Logs.Lines, l => l.Contains("ejected as an outlier (outlier.latency)", StringComparison.Ordinal));
        output.WriteLine(line);
    }

    [Fact]
    public async Task Outlier_detection_added_by_a_reload_ejects_without_a_restart()
    {
        var upstreams = await StartAsync(4);
        await using var _ = new Disposables(upstreams);
        upstreams[1].Handler = Failing(100);
        var yaml = Yaml(upstreams, "{ interval: 300ms, baseEjectionTime: 5m, failurePercentage: { threshold: 50, minRequests: 5 } }");
        await using var gateway = await TestGateway.StartAsync(yaml.Replace("    healthCheck:\n      outlierDetection:", "    #", StringComparison.Ordinal));
        await SendAsync(gateway, 40, new Tally());
        var b = await DestinationAsync(gateway, "b");
        Assert.False(b.TryGetProperty("outlier", out var none), $"no outlier detection configured, yet: {none}");

        await gateway.WriteConfigAsync(yaml);
        var (status, body) = await gateway.ReloadAsync();
        Assert.True(status == 200, body.ToString());
        await Eventually.TrueAsync(async () =>
        {
            await SendAsync(gateway, 24, new Tally());
            return Outlier(await DestinationAsync(gateway, "b")).State == "ejected";
        }, "b to be ejected after the reload", context: gateway.ClustersAndLogDump());
    }

    private static int CapLines(TestGateway gateway) => gateway.Logs.Lines.Count(l => l.Contains("but stays in service", StringComparison.Ordinal));

    /// <summary>Answers 500 to <paramref name="percent"/> % of requests (evenly spread: every tenth request decides).</summary>
    private static Func<HttpContext, Task> Failing(int percent)
    {
        var count = 0;
        return context =>
        {
            var n = Interlocked.Increment(ref count);
            if (n % 10 < percent / 10)
            {
                context.Response.StatusCode = StatusCodes.Status500InternalServerError;
                return Task.CompletedTask;
            }

            return context.Response.WriteAsync("ok");
        };
    }

    private static async Task<TestUpstream[]> StartAsync(int count)
    {
        var upstreams = new TestUpstream[count];
        for (var i = 0; i < count; i++) upstreams[i] = await TestUpstream.StartAsync(((char)('a' + i)).ToString());
        return upstreams;
    }

    /// <summary>Sends <paramref name="requests"/> GETs, four at a time, counting 5xx answers.</summary>
    private static async Task SendAsync(TestGateway gateway, int requests, Tally tally)
    {
        var next = 0;
        await Task.WhenAll(Enumerable.Range(0, 4).Select(async _ =>
        {
            while (Interlocked.Increment(ref next) <= requests)
            {
                using var response = await gateway.Client.GetAsync("/o");
                tally.Add(response.StatusCode);
            }
        }));
    }

    private static async Task<JsonElement> ClusterAsync(TestGateway gateway)
    {
        using var json = JsonDocument.Parse(await gateway.Admin.GetStringAsync("/admin/clusters"));
        return json.RootElement.GetProperty("clusters").EnumerateArray().Single(c => c.GetProperty("name").GetString() == "web").Clone();
    }

    private static JsonElement.ArrayEnumerator Destinations(JsonElement cluster) => cluster.GetProperty("destinations").EnumerateArray();

    private static async Task<JsonElement> DestinationAsync(TestGateway gateway, string name) =>
        Destinations(await ClusterAsync(gateway)).Single(d => d.GetProperty("name").GetString() == name);

    private static (string State, string? Reason, DateTimeOffset Since, DateTimeOffset Until) Outlier(JsonElement destination)
    {
        var outlier = destination.GetProperty("outlier");
        var state = outlier.GetProperty("state").GetString()!;
        return state == "ejected"
            ? (state, outlier.GetProperty("reason").GetString(), outlier.GetProperty("since").GetDateTimeOffset(), outlier.GetProperty("until").GetDateTimeOffset())
            : (state, null, default, default);
    }

    private sealed class Tally
    {
        private int _total;
        private int _errors;

        public int Total => Volatile.Read(ref _total);

        public int Errors => Volatile.Read(ref _errors);

        public void Add(HttpStatusCode status)
        {
            Interlocked.Increment(ref _total);
            if ((int)status >= 500) Interlocked.Increment(ref _errors);
        }
    }

    private sealed class Disposables(TestUpstream[] upstreams) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            foreach (var upstream in upstreams) await upstream.DisposeAsync();
        }
    }
}
