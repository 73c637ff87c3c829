using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Portcullis.Configuration;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.Testing;

namespace Portcullis.IntegrationTests;

/// <summary>
/// The gateway gives a large build's memory back (issue 20): at start, before anything listens, and after a reload
/// once the quiet period passed. The threshold is lowered to one byte here so a small config counts as large.
/// The trims are real collections of this whole test process, so the test runs alone (<see cref="WholeHeapCollection"/>).
/// </summary>
[Collection(WholeHeapCollection.Name)]
public sealed class HeapTrimIntegrationTests
{
    private static string Config(TestUpstream upstream, string limits) => $$"""
        advice: { enabled: false }
        {{limits}}
        routes:
          - { name: a, match: { pathPrefix: /a }, cluster: c }
        clusters:
          c: { destinations: [{{upstream.Url}}] }
        """;

    // The gateway's trim, reading limits.trimHeapAfterBuilds from its store, with a threshold of one byte (every
    // build counts as large) and a short quiet period.
    private static Task<TestGateway> StartAsync(string yaml) => TestGateway.StartAsync(yaml, configureServices: services =>
        services.Replace(ServiceDescriptor.Singleton(sp => new HeapTrim(sp.GetRequiredService<ILogger<HeapTrim>>(), TimeProvider.System,
            threshold: 1, quietPeriod: TimeSpan.FromMilliseconds(300), store: sp.GetRequiredService<SnapshotStore>()))));

    [Fact]
    public async Task The_start_and_a_reload_are_trimmed_after_and_requests_keep_being_served()
    {
        await using var upstream = await TestUpstream.StartAsync("u");
        var yaml = Config(upstream, "");
        await using var gateway = await StartAsync(yaml);
        var trim = gateway.Services.GetRequiredService<HeapTrim>();
        // At start, before the listeners opened: done by the time the gateway answers.
        Assert.Equal(1, trim.Trims);
        Assert.Contains("Heap trimmed after start", gateway.Logs.ToString(), StringComparison.Ordinal);

        await gateway.WriteConfigAsync(yaml.Replace("pathPrefix: /a", "pathPrefix: /b", StringComparison.Ordinal));
        var (status, _) = await gateway.ReloadAsync();
        Assert.Equal(200, status);
        await Eventually.TrueAsync(() => trim.Trims >= 2, "the trim after the reload", context: () => Task.FromResult(gateway.Logs.ToString()));
        Assert.Contains("Heap trimmed after the reload to generation", gateway.Logs.ToString(), StringComparison.Ordinal);
        using var response = await gateway.Client.GetAsync("/b/x");
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task Turned_off_in_the_file_nothing_is_trimmed_until_a_reload_turns_it_on()
    {
        await using var upstream = await TestUpstream.StartAsync("u");
        var yaml = Config(upstream, "limits: { trimHeapAfterBuilds: false }");
        await using var gateway = await StartAsync(yaml);
        var trim = gateway.Services.GetRequiredService<HeapTrim>();
        Assert.Equal(0, trim.Trims);

        // A reload that keeps it off: nothing waits to be trimmed after it.
        await gateway.WriteConfigAsync(yaml.Replace("pathPrefix: /a", "pathPrefix: /b", StringComparison.Ordinal));
        var (status, body) = await gateway.ReloadAsync();
        Assert.Equal(200, status);
        Assert.False(trim.Pending);
        Assert.Equal(0, trim.Trims);

        // Turned on by a reload, with no restart: the build after it counts, and is trimmed.
        await gateway.WriteConfigAsync(yaml.Replace("trimHeapAfterBuilds: false", "trimHeapAfterBuilds: true", StringComparison.Ordinal));
        (status, body) = await gateway.ReloadAsync();
        Assert.Equal(200, status);
        Assert.Empty(body.GetProperty("restartRequired").EnumerateArray());
        await Eventually.TrueAsync(() => trim.Trims >= 1, "the trim after the reload that turned it on", context: () => Task.FromResult(gateway.Logs.ToString()));
        using var response = await gateway.Client.GetAsync("/a/x");
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
    }
}
