using System.Net;
using Portcullis.Cli;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests;

/// <summary>
/// routes[].split end to end on real sockets: shares within ±2 % of the weights over 10,000 requests, sticky
/// consumers (API keys) and cookies never switching side, and a weight change by reload that drops nothing.
/// </summary>
public sealed class WeightedSplitTests : IAsyncLifetime
{
    private const int Consumers = 40;

    private TestUpstream _v1 = null!;
    private TestUpstream _v2 = null!;
    private TestGateway _gateway = null!;
    private readonly List<(string Consumer, string Key)> _keys = [];

    private string Config(int v1, int v2) => $$"""
        identity:
          apiKeys: { file: keys.yaml }
        routes:
          - name: random
            match: { pathPrefix: /random }
            split: { clusters: [{ cluster: v1, weight: {{v1}} }, { cluster: v2, weight: {{v2}} }] }
          - name: by-consumer
            match: { pathPrefix: /orders }
            auth: { apiKey: true }
            split:
              clusters:
                - { cluster: v1, weight: {{v1}} }
                - { cluster: v2, weight: {{v2}} }
              sticky: consumer
          - name: by-cookie
            match: { pathPrefix: /web }
            split: { clusters: [{ cluster: v1, weight: {{v1}} }, { cluster: v2, weight: {{v2}} }], sticky: "cookie:canary" }
        clusters:
          v1: { destinations: [{{_v1.Url}}] }
          v2: { destinations: [{{_v2.Url}}] }
        """;

    public async Task InitializeAsync()
    {
        _v1 = await TestUpstream.StartAsync("v1");
        _v2 = await TestUpstream.StartAsync("v2");
        var directory = Directory.CreateTempSubdirectory("portcullis-split-keys-");
        var keyFile = Path.Combine(directory.FullName, "keys.yaml");
        await File.WriteAllTextAsync(keyFile, "consumers: {}\n");
        for (var i = 0; i < Consumers; i++)
        {
            using var output = new StringWriter();
            using var errors = new StringWriter();
            var code = await PortcullisCli.RunAsync(["keys", "create", "--file", keyFile, "--consumer", $"shop-{i}"], output, errors);
            Assert.True(code == 0, errors.ToString());
            var key = output.ToString().Split('\n').Select(l => l.TrimEnd('\r')).Single(l => l.StartsWith("key: ", StringComparison.Ordinal))[5..];
            _keys.Add(($"shop-{i}", key));
        }

        _gateway = await TestGateway.StartAsync(Config(90, 10), new Dictionary<string, string> { ["keys.yaml"] = await File.ReadAllTextAsync(keyFile) });
        directory.Delete(recursive: true);
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _v1.DisposeAsync();
        await _v2.DisposeAsync();
    }

    private async Task<string> ServerAsync(string path, string? key = null, string? cookie = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, _gateway.Url + path);
        if (key is not null) request.Headers.Add("X-Api-Key", key);
        if (cookie is not null) request.Headers.Add("Cookie", $"canary={cookie}");
        using var response = await _gateway.Client.SendAsync(request);
        return (await UpstreamAnswer.ReadAsync(response)).Server;
    }

    [Fact]
    public async Task Ten_thousand_requests_land_within_two_percent_of_the_weights()
    {
        var counts = new Dictionary<string, int> { ["v1"] = 0, ["v2"] = 0 };
        // 8 callers at once: the gateway's share must hold under concurrency, not only in a sequence.
        await Parallel.ForEachAsync(Enumerable.Range(0, 10_000), new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (_, _) =>
        {
            var server = await ServerAsync("/random/x");
            lock (counts) counts[server]++;
        });

        Assert.InRange(counts["v2"] / 10_000.0, 0.08, 0.12);
        Assert.Equal(10_000, counts["v1"] + counts["v2"]);
        Assert.Equal(counts["v2"], _v2.Requests);
    }

    [Fact]
    public async Task Sticky_consumers_and_cookies_never_switch_side_and_a_reload_only_moves_callers_toward_the_canary()
    {
        var before = new Dictionary<string, string>();
        foreach (var (consumer, key) in _keys)
        {
            var first = await ServerAsync("/orders/1", key: key);
            for (var i = 0; i < 5; i++) Assert.Equal(first, await ServerAsync($"/orders/{i}", key: key));
            before[consumer] = first;
        }

        var cookies = Enumerable.Range(0, 200).ToDictionary(i => $"c{i}", _ => "");
        foreach (var cookie in cookies.Keys.ToList())
        {
            cookies[cookie] = await ServerAsync("/web/", cookie: cookie);
            Assert.Equal(cookies[cookie], await ServerAsync("/web/again", cookie: cookie));
        }

        Assert.InRange(cookies.Values.Count(s => s == "v2"), 8, 40); // about 10 % of 200

        // Canary 10 % → 50 % while requests keep flowing: none fails, and nobody moves from v2 back to v1.
        using var flowing = new CancellationTokenSource();
        var failures = 0;
        var sent = 0;
        var traffic = Task.Run(async () =>
        {
            while (!flowing.IsCancellationRequested)
            {
                using var response = await _gateway.Client.GetAsync(_gateway.Url + "/random/during-reload");
                Interlocked.Increment(ref sent);
                if (response.StatusCode != HttpStatusCode.OK) Interlocked.Increment(ref failures);
            }
        });
        var generation = _gateway.Generation;
        await _gateway.WriteConfigAsync(Config(50, 50));
        await _gateway.WaitForGenerationAsync(generation);
        await flowing.CancelAsync();
        await traffic;
        Assert.True(sent > 0);
        Assert.Equal(0, failures);

        var moved = 0;
        foreach (var (consumer, key) in _keys)
        {
            var now = await ServerAsync("/orders/1", key: key);
            Assert.False(before[consumer] == "v2" && now == "v1", $"{consumer} moved back from the canary");
            if (now != before[consumer]) moved++;
        }

        foreach (var (cookie, was) in cookies)
        {
            var now = await ServerAsync("/web/", cookie: cookie);
            Assert.False(was == "v2" && now == "v1", $"cookie {cookie} moved back from the canary");
        }

        Assert.True(moved > 0, "raising the canary to 50 % moved no consumer");
    }

    [Fact]
    public async Task Explain_shows_the_split_and_the_cluster_a_request_gets()
    {
        using var output = new StringWriter();
        using var errors = new StringWriter();
        var code = await PortcullisCli.RunAsync(["explain", "-c", _gateway.ConfigPath, "--request", "GET http://localhost/web/", "-H", "Cookie: canary=c1"], output, errors);
        Assert.True(code == 0, errors.ToString());
        Assert.Contains("v1 90, v2 10 (sticky by cookie:canary) → v", output.ToString(), StringComparison.Ordinal);
    }
}
