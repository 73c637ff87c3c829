using System.Diagnostics;
using System.Net.Http.Json;
using System.Text;
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
        using var quickstart = Script.Start(Path.Combine(root, "examples", "quickstart", "run.sh"), root, environment);
        using var admin = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{environment["ADMIN_PORT"]}"), Timeout = TimeSpan.FromSeconds(10) };
        try
        {
            // run.sh builds the CLI first (up to minutes on a busy machine), then serves.
            await Eventually.TrueAsync(async () =>
            {
                Assert.False(quickstart.HasExited, $"run.sh exited: {quickstart.Output}");
                try
                {
                    return (await admin.GetAsync("/admin/advice")).IsSuccessStatusCode;
                }
                catch (HttpRequestException)
                {
                    return false;
                }
            }, "the quickstart's admin API answers /admin/advice", TimeSpan.FromMinutes(5));
            var key = quickstart.Output.Split('\n').Select(l => l.Trim()).Where(l => l.Contains("X-Api-Key: pck_", StringComparison.Ordinal))
                .Select(l => l[(l.IndexOf("pck_", StringComparison.Ordinal))..].Split('\'')[0]).FirstOrDefault();
            Assert.NotNull(key);

            using var traffic = Script.Start(Path.Combine(root, "examples", "quickstart", "traffic.sh"), root,
                new Dictionary<string, string>(environment) { ["DEMO_KEY"] = key, ["TRAFFIC_WAIT"] = "300" });
            Assert.True(await traffic.WaitForExitAsync(TimeSpan.FromMinutes(6)), $"traffic.sh still running:\n{traffic.Output}");
            output.WriteLine(traffic.Output);
            Assert.True(traffic.ExitCode == 0, $"traffic.sh exited {traffic.ExitCode}:\n{traffic.Output}\nquickstart:\n{Tail(quickstart.Output)}");
            Assert.Contains("finding after", traffic.Output, StringComparison.Ordinal);

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
            quickstart.Signal("TERM"); // run.sh's trap stops the gateway and the echo upstreams
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

    /// <summary>A bash script as a child process with its output collected; its whole process tree is killed on Dispose.</summary>
    private sealed class Script : IDisposable
    {
        private readonly Process _process;
        private readonly StringBuilder _output = new();
        private readonly Lock _lock = new();

        private Script(Process process) => _process = process;

        public string Output
        {
            get
            {
                lock (_lock) return _output.ToString();
            }
        }

        public bool HasExited => _process.HasExited;

        public int ExitCode => _process.ExitCode;

        public static Script Start(string path, string workingDirectory, IDictionary<string, string> environment)
        {
            var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = workingDirectory };
            start.ArgumentList.Add(path);
            foreach (var (name, value) in environment) start.Environment[name] = value;
            start.Environment["DOTNET_NOLOGO"] = "1";
            var process = new Process { StartInfo = start };
            var script = new Script(process);
            void Collect(object _, DataReceivedEventArgs e)
            {
                if (e.Data is null) return;
                lock (script._lock) script._output.AppendLine(e.Data);
            }

            process.OutputDataReceived += Collect;
            process.ErrorDataReceived += Collect;
            process.Start();
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            return script;
        }

        public async Task<bool> WaitForExitAsync(TimeSpan timeout)
        {
            using var cts = new CancellationTokenSource(timeout);
            try
            {
                await _process.WaitForExitAsync(cts.Token);
                return true;
            }
            catch (OperationCanceledException)
            {
                return false;
            }
        }

        public void Signal(string signal)
        {
            if (_process.HasExited) return;
            using var kill = Process.Start(new ProcessStartInfo("kill", ["-" + signal, _process.Id.ToString()]) { UseShellExecute = false })!;
            kill.WaitForExit(5000);
        }

        public void Dispose()
        {
            try
            {
                if (!_process.HasExited) _process.Kill(entireProcessTree: true);
                _process.WaitForExit(5000);
            }
            catch (InvalidOperationException)
            {
            }

            _process.Dispose();
        }
    }
}
