using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests;

public sealed class SmokeTests
{
    [Fact]
    public async Task Proxy_RoundRobin_AlternatesBetweenTwoUpstreams()
    {
        await using var a = await TestUpstream.StartAsync("a");
        await using var b = await TestUpstream.StartAsync("b");
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                destinations: [{{a.Url}}, {{b.Url}}]
            """);

        var servers = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            servers.Add((await UpstreamAnswer.ReadAsync(await gateway.Client.GetAsync("/x"))).Server);
        }

        Assert.Equal(2, servers.Count(s => s == "a"));
        Assert.Equal(2, servers.Count(s => s == "b"));
        Assert.NotEqual(servers[0], servers[1]);
    }
}
