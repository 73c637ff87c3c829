using System.Net.Http.Json;
using System.Text.Json;
using Portcullis.IntegrationTests.Infrastructure;
using Xunit.Abstractions;

namespace Portcullis.IntegrationTests.Advice;

/// <summary>
/// The quickstart shows a live finding (issue 17, "done when"): examples/quickstart/run.sh as a user runs it (build,
/// echo upstreams, the gateway with analytics and the advisor on), then examples/quickstart/traffic.sh, whose scanner
/// must show up as a traffic.scanner finding in GET /admin/advice. Ports and the store are the test's own.
/// </summary>
public sealed class QuickstartAdviceTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _data = Directory.CreateTempSubdirectory("portcullis-quickstart-advice-").FullName;

    public void Dispose() => Directory.Delete(_data, recursive: true);

    [Fact]
    public async Task Traffic_script_makes_a_live_scanner_finding_on_the_running_quickstart()
    {
        var root = FindRepoRoot();
        var environment = new Dictionary<string, string>
        {
            ["GATEWAY_PORT"] = Ports.GetFree().ToString(),
            ["GATEWAY_TLS_PORT"] = Ports.GetFree().ToString(),
            ["ADMIN_PORT"] = Ports.GetFree().ToString(),
            ["ECHO_PORT_1"] = Ports.GetFree().ToString(),
            ["ECHO_PORT_2"] = Ports.GetFree().ToString(),
            ["ECHO_PORT_3"] = Ports.GetFree().ToString(),
            ["QUICKSTART_DATA"] = _data,
        };
        using var quickstart = CliProcess.StartScript(Path.Combine(root, "examples", "quickstart", "run.sh"), root, environment);
        using var admin = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{environment["ADMIN_PORT"]}"), Timeout = TimeSpan.FromSeconds(10) };
        try
        {
            // run.sh builds the CLI first (up to minutes on a busy machine), then serves.
            await Eventually.TrueAsync(async () =>
            {
                Assert.False(quickstart.HasExited, $"run.sh exited: {(quickstart.Stdout + quickstart.Stderr)}");
                try
                {
                    return (await admin.GetAsync("/admin/advice")).IsSuccessStatusCode;
                }
                catch (HttpRequestException)
                {
                    return false;
                }
            }, "the quickstart's admin API answers /admin/advice", TimeSpan.FromMinutes(5));
            var key = (quickstart.Stdout + quickstart.Stderr).Split('\n').Select(l => l.Trim()).Where(l => l.Contains("X-Api-Key: pck_", StringComparison.Ordinal))
                .Select(l => l[(l.IndexOf("pck_", StringComparison.Ordinal))..].Split('\'')[0]).FirstOrDefault();
            Assert.NotNull(key);

            using var traffic = CliProcess.StartScript(Path.Combine(root, "examples", "quickstart", "traffic.sh"), root,
                new Dictionary<string, string>(environment) { ["DEMO_KEY"] = key, ["TRAFFIC_WAIT"] = "300" });
            Assert.True(await traffic.WaitForExitAsync(TimeSpan.FromMinutes(6)), $"traffic.sh still running:\n{(traffic.Stdout + traffic.Stderr)}");
            output.WriteLine((traffic.Stdout + traffic.Stderr));
            Assert.True(traffic.ExitCode == 0, $"traffic.sh exited {traffic.ExitCode}:\n{(traffic.Stdout + traffic.Stderr)}\nquickstart:\n{Tail((quickstart.Stdout + quickstart.Stderr))}");
            Assert.Contains("finding after", (traffic.Stdout + traffic.Stderr), StringComparison.Ordinal);

            // The finding as the API gives it: the scanner's address, its probe paths in the evidence (the eight most
            // requested, ties by path: every probe is sent once, so /.env is always among them).
            var advice = await admin.GetFromJsonAsync<JsonElement>("/admin/advice?kind=traffic.scanner");
            var finding = advice.GetProperty("findings").EnumerateArray().Single();
            Assert.Equal("client", finding.GetProperty("subject").GetProperty("kind").GetString());
            Assert.Equal("127.0.0.1", finding.GetProperty("subject").GetProperty("name").GetString());
            Assert.Contains(finding.GetProperty("evidence").GetProperty("values").EnumerateArray(),
                v => v.GetProperty("name").GetString() == "path /.env");
        }
        finally
        {
            if (!quickstart.HasExited) quickstart.Signal("TERM"); // run.sh's trap stops the gateway and the echo upstreams
            if (!await quickstart.WaitForExitAsync(TimeSpan.FromSeconds(30))) output.WriteLine("run.sh did not stop on SIGTERM; killed");
        }
    }

    private static string Tail(string text) => text.Length > 4000 ? text[^4000..] : text;

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Portcullis.sln"))) return dir.FullName;
        }

        throw new InvalidOperationException($"Portcullis.sln not found above {AppContext.BaseDirectory}");
    }
}
