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
    [Fact]
    public async Task The_start_and_a_reload_are_trimmed_after_and_requests_keep_being_served()
    {
        await using var upstream = await TestUpstream.StartAsync("u");
        var yaml = $$"""
            advice: { enabled: false }
            routes:
              - { name: a, match: { pathPrefix: /a }, cluster: c }
            clusters:
              c: { destinations: [{{upstream.Url}}] }
            """;
        await using var gateway = await TestGateway.StartAsync(yaml, configureServices: services =>
            services.Replace(ServiceDescriptor.Singleton(sp => new HeapTrim(sp.GetRequiredService<ILogger<HeapTrim>>(), TimeProvider.System,
                threshold: 1, quietPeriod: TimeSpan.FromMilliseconds(300)))));
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
}
