using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Portcullis.Analytics;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.Testing;
using static Portcullis.IntegrationTests.Analytics.AnalyticsTestSupport;

namespace Portcullis.IntegrationTests.Analytics;

/// <summary>
/// A store file that cannot be written — corrupt, locked by another gateway process, on a full disk: the
/// gateway keeps proxying, /readyz shows analytics unhealthy (as a degraded check: still ready), the error
/// is logged once, /metrics shows portcullis_analytics_up 0, and once the cause goes away the store is
/// written again with every request counted meanwhile.
/// </summary>
public sealed class AnalyticsBadInputTests : IAsyncLifetime
{
    private const string FixedConfig = """
        analytics:
          path: "{{DB}}"
          flushInterval: 100ms
        routes:
          - name: hello
            match: { path: /hello }
            respond: { status: 200, body: "hi\n" }
        """;

    private readonly string _directory = Directory.CreateTempSubdirectory("portcullis-analytics-bad-").FullName;

    private string Database => Path.Combine(_directory, "analytics.duckdb");

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync()
    {
        Directory.Delete(_directory, recursive: true);
        return Task.CompletedTask;
    }

    internal static async Task<JsonElement> AnalyticsCheckAsync(HttpClient admin)
    {
        using var response = await admin.GetAsync("/readyz");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode); // analytics never makes the gateway unready
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        return body.GetProperty("checks").GetProperty("analytics");
    }

    private static async Task SendHelloAsync(TestGateway gateway, int count)
    {
        for (var i = 0; i < count; i++) Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway.Client, "/hello"));
    }

    internal static async Task AssertDownLoggedOnceAsync(TestGateway gateway, string cause)
    {
        var writer = gateway.Services.GetRequiredService<AnalyticsWriter>();
        await Eventually.TrueAsync(async () => (await AnalyticsCheckAsync(gateway.Admin)).GetProperty("status").GetString() == "degraded", "analytics reported unhealthy",
            context: () => Task.FromResult(gateway.Logs.ToString()));
        var description = (await AnalyticsCheckAsync(gateway.Admin)).GetProperty("description").GetString()!;
        Assert.StartsWith("unhealthy: the analytics store cannot be written", description, StringComparison.Ordinal);
        Assert.Contains(cause, description, StringComparison.OrdinalIgnoreCase);
        var metrics = await gateway.Admin.GetStringAsync("/metrics");
        Assert.Matches(@"(?m)^portcullis_analytics_up\{[^}]*\} 0$", metrics);

        await SendHelloAsync(gateway, 5); // proxying goes on
        await Eventually.TrueAsync(() => writer.FailedAttempts >= 3, "three failed attempts (backoff 1 s, 2 s)");
        Assert.Single(gateway.Logs.Lines, l => l.Contains("cannot be written", StringComparison.Ordinal));
    }

    internal static async Task AssertRecoveredAsync(TestGateway gateway, long expected)
    {
        var database = gateway.Services.GetRequiredService<AnalyticsDatabase>();
        await Eventually.TrueAsync(async () => (await AnalyticsCheckAsync(gateway.Admin)).GetProperty("status").GetString() == "healthy", "analytics recovered",
            timeout: TimeSpan.FromSeconds(60), context: () => Task.FromResult(gateway.Logs.ToString()));
        await Eventually.TrueAsync(() => { using var c = database.OpenConnection(); return Requests(c) == expected; }, $"{expected} requests stored");
        Assert.Single(gateway.Logs.Lines, l => l.Contains("written again after", StringComparison.Ordinal));
        var metrics = await gateway.Admin.GetStringAsync("/metrics");
        Assert.Matches(@"(?m)^portcullis_analytics_up\{[^}]*\} 1$", metrics);
        Assert.Matches(@"(?m)^portcullis_analytics_rows_flushed_total\{[^}]*table=""rollups""\} [1-9]", metrics);
        Assert.Matches(@"(?m)^portcullis_analytics_flush_duration_seconds_count\{[^}]*\} [1-9]", metrics);
        Assert.Matches(@"(?m)^portcullis_analytics_file_size_bytes\{[^}]*\} [1-9]", metrics);
    }

    [Fact]
    public async Task Without_a_path_nothing_is_registered_no_completion_hook_no_writer_no_check_no_file()
    {
        await using var gateway = await TestGateway.StartAsync(FixedConfig.Replace("  path: \"{{DB}}\"\n", "", StringComparison.Ordinal).Replace("flushInterval: 100ms", "flushInterval: 1s", StringComparison.Ordinal));
        Assert.Null(gateway.Services.GetService<Portcullis.Observability.IRequestCompletionObserver>());
        Assert.Null(gateway.Services.GetService<AnalyticsWriter>());
        Assert.Null(gateway.Services.GetService<AnalyticsDatabase>());
        Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway.Client, "/hello"));
        using var ready = await gateway.Admin.GetAsync("/readyz");
        var checks = (await ready.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("checks");
        Assert.False(checks.TryGetProperty("analytics", out _));
        Assert.DoesNotContain("portcullis_analytics_", await gateway.Admin.GetStringAsync("/metrics"), StringComparison.Ordinal);
        // flushInterval without a path: a warning at its position, not an error.
        var warning = Assert.Single(gateway.Services.GetRequiredService<Portcullis.Configuration.SnapshotStore>().StartupDiagnostics, d => d.Message == "analytics is off without a path");
        Assert.Equal((5, 18), (warning.Line, warning.Column)); // the value, below the two listeners TestGateway adds
    }

    [Fact]
    public async Task A_corrupt_file_keeps_the_gateway_proxying_unhealthy_logged_once_and_recovers_when_replaced()
    {
        await File.WriteAllBytesAsync(Database, Enumerable.Range(0, 64 * 1024).Select(i => (byte)(i * 7)).ToArray());
        await using var gateway = await TestGateway.StartAsync(FixedConfig.Replace("{{DB}}", Database, StringComparison.Ordinal));

        await AssertDownLoggedOnceAsync(gateway, "database");
        File.Delete(Database); // the operator moves the broken file away
        await AssertRecoveredAsync(gateway, 5);
    }

    [Fact]
    public async Task A_file_on_a_full_disk_keeps_the_gateway_proxying_and_recovers_when_space_is_freed()
    {
        var mount = Directory.CreateDirectory(Path.Combine(_directory, "small")).FullName;
        if (!Run("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mount))
        {
            Assert.Fail("this test needs to mount a 4 MiB tmpfs (root in the test container)");
        }

        try
        {
            var database = Path.Combine(mount, "analytics.duckdb");
            await using var gateway = await TestGateway.StartAsync(FixedConfig.Replace("{{DB}}", database, StringComparison.Ordinal));
            await Eventually.TrueAsync(async () => (await AnalyticsCheckAsync(gateway.Admin)).GetProperty("status").GetString() == "healthy" && File.Exists(database), "store opened");

            // Fill the disk: every byte left goes to a filler file.
            var filler = Path.Combine(mount, "filler");
            await using (var stream = new FileStream(filler, FileMode.Create))
            {
                var block = new byte[64 * 1024];
                try
                {
                    while (true) stream.Write(block);
                }
                catch (IOException)
                {
                }
            }

            // Samples of many distinct requests need new blocks (DuckDB's WAL and data) the disk no longer has.
            await SendHelloAsync(gateway, 2);
            await AssertDownLoggedOnceAsync(gateway, "space");
            File.Delete(filler);
            await AssertRecoveredAsync(gateway, 7);
        }
        finally
        {
            Run("umount", "-l", mount);
        }
    }

    private static bool Run(string command, params string[] args)
    {
        var start = new System.Diagnostics.ProcessStartInfo(command) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var arg in args) start.ArgumentList.Add(arg);
        using var process = System.Diagnostics.Process.Start(start)!;
        process.WaitForExit(10_000);
        return process.ExitCode == 0;
    }
}
