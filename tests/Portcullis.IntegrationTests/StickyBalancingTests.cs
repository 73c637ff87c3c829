using System.Net;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests;

/// <summary>
/// Consistent-hash balancing and cookie session affinity on real sockets: a key keeps its destination,
/// adding a destination by reload moves about 1/N of the keys (all to the new one), and an affinity
/// cookie brings a client back to the destination that served it.
/// </summary>
public sealed class StickyBalancingTests : IAsyncLifetime
{
    private readonly List<TestUpstream> _upstreams = [];
    private TestGateway _gateway = null!;

    private string Config(int hashed) => $$"""
        routes:
          - { name: hashed, match: { pathPrefix: /hashed }, cluster: hashed }
          - { name: sticky, match: { pathPrefix: /sticky }, cluster: sticky }
        clusters:
          hashed:
            destinations: [{{string.Join(", ", _upstreams.Take(hashed).Select(u => u.Url))}}]
            loadBalancing: consistentHash
            consistentHash: { key: "header:X-User", balanceFactor: 0 }
          sticky:
            destinations: [{{string.Join(", ", _upstreams.Take(3).Select(u => u.Url))}}]
            affinity: { cookie: backend }
        """;

    public async Task InitializeAsync()
    {
        for (var i = 1; i <= 5; i++) _upstreams.Add(await TestUpstream.StartAsync($"u{i}"));
        _gateway = await TestGateway.StartAsync(Config(4));
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        foreach (var upstream in _upstreams) await upstream.DisposeAsync();
    }

    private async Task<string> ServerAsync(string user)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, _gateway.Url + "/hashed/x");
        request.Headers.Add("X-User", user);
        using var response = await _gateway.Client.SendAsync(request);
        return (await UpstreamAnswer.ReadAsync(response)).Server;
    }

    [Fact]
    public async Task A_key_keeps_its_destination_and_adding_one_of_five_moves_about_a_fifth_of_the_keys_to_it()
    {
        var users = Enumerable.Range(0, 400).Select(i => $"user-{i}").ToList();
        var before = new Dictionary<string, string>();
        foreach (var user in users)
        {
            before[user] = await ServerAsync(user);
            Assert.Equal(before[user], await ServerAsync(user));
        }

        Assert.Equal(4, before.Values.Distinct().Count()); // every destination has keys

        var generation = _gateway.Generation;
        await _gateway.WriteConfigAsync(Config(5));
        await _gateway.WaitForGenerationAsync(generation);

        var moved = 0;
        foreach (var user in users)
        {
            var now = await ServerAsync(user);
            if (now == before[user]) continue;
            moved++;
            Assert.Equal("u5", now); // a key only moves to the new destination
        }

        Assert.InRange(moved / 400.0, 0.10, 0.32); // 1/5 expected
    }

    [Fact]
    public async Task An_affinity_cookie_brings_a_client_back_to_the_destination_that_served_it()
    {
        var seen = new HashSet<string>();
        for (var client = 0; client < 12; client++)
        {
            var cookies = new CookieContainer();
            using var handler = new HttpClientHandler { CookieContainer = cookies };
            using var http = new HttpClient(handler);
            using var first = await http.GetAsync(_gateway.Url + "/sticky/a");
            var home = (await UpstreamAnswer.ReadAsync(first)).Server;
            Assert.Contains(first.Headers.GetValues("Set-Cookie"), c => c.StartsWith("backend=", StringComparison.Ordinal) && c.Contains("httponly", StringComparison.OrdinalIgnoreCase));
            for (var i = 0; i < 6; i++)
            {
                using var again = await http.GetAsync(_gateway.Url + $"/sticky/{i}");
                Assert.Equal(home, (await UpstreamAnswer.ReadAsync(again)).Server);
            }

            seen.Add(home);
        }

        Assert.True(seen.Count >= 2, "every new client landed on one destination: affinity is not balancing new clients");
    }
}
