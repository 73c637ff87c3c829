using Portcullis.Cli;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Install;

/// <summary>`portcullis health --url`: the container HEALTHCHECK (no curl in the runtime images).</summary>
public sealed class HealthCommandTests
{
    private static async Task<(int Code, string Stdout, string Stderr)> RunAsync(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var code = await PortcullisCli.RunAsync(args, stdout, stderr, timeout.Token);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Fact]
    public async Task Health_Is0On200_And1OnAnyOtherStatusOrNoListener()
    {
        await using var upstream = await TestUpstream.StartAsync("probed");
        var url = upstream.Url + "/healthz";

        var healthy = await RunAsync("health", "--url", url, "--timeout", "00:00:30");
        Assert.Equal((PortcullisCli.Ok, $"{url}: 200 OK"), (healthy.Code, healthy.Stdout.Trim()));

        upstream.Healthy = false;
        var unhealthy = await RunAsync("health", "--url", url, "--timeout", "00:00:30");
        Assert.Equal(PortcullisCli.Invalid, unhealthy.Code);
        Assert.Contains("503", unhealthy.Stderr, StringComparison.Ordinal);

        var closed = await RunAsync("health", "--url", $"http://127.0.0.1:{Ports.GetFree()}/healthz", "--timeout", "00:00:30");
        Assert.Equal(PortcullisCli.Invalid, closed.Code);
        Assert.Contains("unhealthy", closed.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Health_NotAnHttpUrl_IsAUsageErrorWithoutAStackTrace()
    {
        var result = await RunAsync("health", "--url", "not a url");

        Assert.Equal(PortcullisCli.Usage, result.Code);
        Assert.Contains("--url must be an absolute http(s) URL", result.Stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", result.Stderr, StringComparison.Ordinal);
    }
}
