using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Portcullis.Cli;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests;

public sealed class CliTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("portcullis-cli-").FullName;

    public void Dispose()
    {
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    // ---- in-process ----

    [Fact]
    public async Task Validate_ValidConfig_Returns0AndOk()
    {
        var path = Write("valid.yaml", ValidConfig(Ports.GetFree(), "v1"));

        var (code, stdout, stderr) = await RunCliAsync("validate", "-c", path);

        Assert.Equal(PortcullisCli.Ok, code);
        Assert.Contains("OK", stdout, StringComparison.Ordinal);
        Assert.Contains(path, stdout, StringComparison.Ordinal);
        Assert.Equal("", stderr);
    }

    [Fact]
    public async Task Validate_InvalidConfig_Returns1WithFileLineColumnAndNoStackTrace()
    {
        var path = Write("invalid.yaml", """
            listeners:
              - { name: public, address: "127.0.0.1:18080" }
            limits:
              maxRequestHeaderCount: -1
            routes:
              - name: orders
                match: { pathPrefix: /orders }
                cluster: nowhere
            """);

        var (code, stdout, stderr) = await RunCliAsync("validate", "--config", path);

        Assert.Equal(PortcullisCli.Invalid, code);
        var errors = ErrorLines(stderr, path);
        Assert.True(errors.Count >= 2, $"expected an error per problem, got:\n{stderr}");
        Assert.Contains(errors, e => e.Line == 4 && e.Message.Contains("maxRequestHeaderCount", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Line == 8 && e.Message.Contains("nowhere", StringComparison.Ordinal));
        Assert.DoesNotContain("OK", stdout, StringComparison.Ordinal);
        AssertNoStackTrace(stdout + stderr);
    }

    [Theory]
    [InlineData("syntax", "routes: [ { name: a, cluster: b }\nclusters: {\n")]
    [InlineData("type", "limits:\n  maxRequestBodySize: lots\n")]
    [InlineData("unknown key", "listeners:\n  - { name: p, address: \"127.0.0.1:18080\", protocol: http2 }\n")]
    [InlineData("tab", "listeners:\n\t- name: p\n")]
    public async Task Validate_BrokenYaml_Returns1WithFileLineColumnAndNoStackTrace(string kind, string yaml)
    {
        var path = Write($"broken-{kind.Replace(' ', '-')}.yaml", yaml);

        var (code, stdout, stderr) = await RunCliAsync("validate", "-c", path);

        Assert.Equal(PortcullisCli.Invalid, code);
        Assert.NotEmpty(ErrorLines(stderr, path));
        AssertNoStackTrace(stdout + stderr);
    }

    [Fact]
    public async Task Validate_MissingFile_Returns1WithoutStackTrace()
    {
        var path = Path.Combine(_directory, "does-not-exist.yaml");

        var (code, stdout, stderr) = await RunCliAsync("validate", "-c", path);

        Assert.Equal(PortcullisCli.Invalid, code);
        Assert.Contains(path, stderr, StringComparison.Ordinal);
        AssertNoStackTrace(stdout + stderr);
    }

    [Theory]
    [InlineData("frobnicate")]
    [InlineData("validate")]
    [InlineData("validate", "-c")]
    [InlineData("run")]
    [InlineData("diff", "-c", "a.yaml")]
    [InlineData("validate", "-c", "a.yaml", "--bogus")]
    [InlineData("echo")]
    [InlineData("echo", "--port", "abc")]
    public async Task UsageErrors_Return2WithoutStackTrace(params string[] args)
    {
        var (code, stdout, stderr) = await RunCliAsync(args);

        Assert.Equal(PortcullisCli.Usage, code);
        Assert.NotEqual("", stderr);
        AssertNoStackTrace(stdout + stderr);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-1")]
    [InlineData("70000")]
    public async Task Echo_BadPort_Returns2(string port)
    {
        var (code, stdout, stderr) = await RunCliAsync("echo", "--port", port);

        Assert.Equal(PortcullisCli.Usage, code);
        Assert.Contains("port", stderr, StringComparison.OrdinalIgnoreCase);
        AssertNoStackTrace(stdout + stderr);
    }

    [Fact]
    public async Task Echo_BadAddress_Returns2()
    {
        var (code, stdout, stderr) = await RunCliAsync("echo", "--port", "8080", "--address", "not-an-ip");

        Assert.Equal(PortcullisCli.Usage, code);
        Assert.Contains("not-an-ip", stderr, StringComparison.Ordinal);
        AssertNoStackTrace(stdout + stderr);
    }

    [Fact]
    public async Task Echo_PortInUse_Returns1WithoutStackTrace()
    {
        using var taken = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port;

        var (code, stdout, stderr) = await RunCliAsync("echo", "--port", port.ToString());

        Assert.Equal(PortcullisCli.Invalid, code);
        Assert.Contains(port.ToString(), stderr, StringComparison.Ordinal);
        AssertNoStackTrace(stdout + stderr);
    }

    [Fact]
    public async Task Schema_PrintsJsonSchema()
    {
        var (code, stdout, _) = await RunCliAsync("schema");

        Assert.Equal(PortcullisCli.Ok, code);
        using var schema = JsonDocument.Parse(stdout);
        var properties = schema.RootElement.GetProperty("properties");
        foreach (var key in new[] { "listeners", "limits", "trustedProxies", "maps", "routes", "clusters" })
        {
            Assert.True(properties.TryGetProperty(key, out _), $"schema lacks '{key}'");
        }
    }

    [Fact]
    public async Task Diff_ExitCode_Returns3WhenFilesDiffer_And0WhenEqual()
    {
        var port = Ports.GetFree();
        var a = Write("a.yaml", ValidConfig(port, "v1"));
        var same = Write("same.yaml", ValidConfig(port, "v1"));
        var b = Write("b.yaml", ValidConfig(port, "v2") + "\n" + """
              - name: extra
                match: { path: /extra }
                respond: { status: 204 }
            """);

        var (changed, changedOut, changedErr) = await RunCliAsync("diff", "-c", a, b, "--exit-code");
        Assert.Equal(PortcullisCli.Changes, changed);
        Assert.Contains("extra", changedOut, StringComparison.Ordinal);
        Assert.Contains("hello", changedOut, StringComparison.Ordinal);
        AssertNoStackTrace(changedOut + changedErr);

        var (equal, equalOut, _) = await RunCliAsync("diff", "-c", a, same, "--exit-code");
        Assert.Equal(PortcullisCli.Ok, equal);
        Assert.Contains("No changes", equalOut, StringComparison.Ordinal);

        // Without --exit-code, changes are not a failure.
        var (plain, _, _) = await RunCliAsync("diff", "-c", a, b);
        Assert.Equal(PortcullisCli.Ok, plain);
    }

    [Fact]
    public async Task Validate_and_diff_take_overlays_and_name_the_overlay_in_errors()
    {
        var port = Ports.GetFree();
        var baseFile = Write("compose-base.yaml", ValidConfig(port, "v1"));
        var staging = Write("compose-staging.yaml", "routes:\n  - { name: hello, respond: { status: 200, body: staging } }\n");
        var prod = Write("compose-prod.yaml", "routes:\n  - { name: hello, respond: { status: 200, body: prod } }\n");
        var broken = Write("compose-broken.yaml", "routes:\n  - { name: hello, respond: { status: 2000 } }\n");

        var (ok, okOut, okErr) = await RunCliAsync("validate", "-c", baseFile, "-c", staging);
        Assert.Equal(PortcullisCli.Ok, ok);
        Assert.Contains($"{baseFile} + {staging}: OK (1 routes", okOut, StringComparison.Ordinal);
        Assert.Equal("", okErr);

        var (bad, _, badErr) = await RunCliAsync("validate", "-c", baseFile, "-c", broken);
        Assert.Equal(PortcullisCli.Invalid, bad);
        var error = Assert.Single(ErrorLines(badErr, broken));
        Assert.Equal(2, error.Line);
        Assert.Empty(ErrorLines(badErr, baseFile));

        // Staging's composition against production's: the overlays' difference, nothing else.
        var (changed, changedOut, changedErr) = await RunCliAsync("diff", "-c", baseFile, "-c", staging, baseFile, prod, "--exit-code");
        Assert.Equal(PortcullisCli.Changes, changed);
        Assert.Contains("hello", changedOut, StringComparison.Ordinal);
        AssertNoStackTrace(changedOut + changedErr);
        var (same, sameOut, _) = await RunCliAsync("diff", "-c", baseFile, "-c", prod, baseFile, prod, "--exit-code");
        Assert.Equal(PortcullisCli.Ok, same);
        Assert.Contains("No changes", sameOut, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Explain_shows_each_stages_decision_for_staging_and_prod_without_proxying()
    {
        var (created, createdOut, _) = await RunCliAsync("keys", "create", "--file", Path.Combine(_directory, "explain-keys.yaml"), "--consumer", "alice");
        Assert.Equal(PortcullisCli.Ok, created);
        var key = Regex.Match(createdOut, @"key: (\S+)").Groups[1].Value;
        File.WriteAllText(Path.Combine(_directory, "explain-versions.map"), "1 orders-v1\n2 orders-v2\n");
        var audit = Path.Combine(_directory, "explain-audit.log");
        var analytics = Path.Combine(_directory, "explain-analytics.duckdb");
        var baseFile = Write("explain.yaml", $$"""
            listeners:
              - { name: public, address: "127.0.0.1:{{Ports.GetFree()}}" }
            identity:
              apiKeys: { file: explain-keys.yaml }
            maps:
              versions: { file: explain-versions.map, default: orders-v1 }
            rateLimits:
              per-consumer: { key: consumer, algorithm: tokenBucket, limit: 10, per: 1s }
            routes:
              - name: orders
                match: { pathPrefix: /orders }
                cluster: "${map:versions(header:Api-Version)}"
                auth: { apiKey: true }
                rateLimits: [per-consumer]
            clusters:
              orders-v1: { destinations: ["http://10.255.0.7:8080"] }
              orders-v2: { destinations: ["http://10.255.0.8:8080"] }
            observability:
              audit: { path: {{audit}} }
            analytics: { path: {{analytics}} }
            """);
        var prod = Write("explain-prod.yaml", """
            clusters:
              orders-v2: { destinations: ["http://10.255.9.9:8080"] }
            """);

        var (code, stdout, stderr) = await RunCliAsync("explain", "-c", baseFile, "--request", "GET http://api.example.com/orders/42?x=1", "-H", $"X-Api-Key: {key}", "-H", "Api-Version: 2");

        Assert.Equal(PortcullisCli.Ok, code);
        Assert.Equal("", stderr);
        Assert.Contains("route      orders (order 0; match {\"pathPrefix\":\"/orders\"})", stdout, StringComparison.Ordinal);
        Assert.Contains("maps       cluster ${map:versions(header:Api-Version)} → orders-v2", stdout, StringComparison.Ordinal);
        Assert.Contains("auth       allowed via apikey (apikey.valid); consumer alice", stdout, StringComparison.Ordinal);
        Assert.Contains("limits     per-consumer (TokenBucket 10/1s, key consumer) — admitted", stdout, StringComparison.Ordinal);
        Assert.Contains("upstream   GET http://10.255.0.8:8080/orders/42?x=1", stdout, StringComparison.Ordinal);
        Assert.Contains("X-Consumer-Id: alice", stdout, StringComparison.Ordinal);
        Assert.DoesNotContain(key, stdout, StringComparison.Ordinal); // the key never reaches the upstream, nor the output
        Assert.Contains("decision   proxied", stdout, StringComparison.Ordinal);
        // Nothing written: no audit record, no analytics store.
        Assert.False(File.Exists(audit));
        Assert.False(File.Exists(analytics));

        // The production overlay decides the same, to another destination.
        var (_, prodOut, _) = await RunCliAsync("explain", "-c", baseFile, "-c", prod, "-r", "GET http://api.example.com/orders/42", "-H", $"X-Api-Key: {key}", "-H", "Api-Version: 2");
        Assert.Contains("upstream   GET http://10.255.9.9:8080/orders/42", prodOut, StringComparison.Ordinal);

        // Refused: the stage and reason, with the problem body the client would get.
        var (_, refusedOut, _) = await RunCliAsync("explain", "-c", baseFile, "-r", "GET /orders/42", "--json");
        using var refused = System.Text.Json.JsonDocument.Parse(refusedOut);
        Assert.Equal("Unauthenticated", refused.RootElement.GetProperty("auth").GetProperty("result").GetString());
        Assert.Equal(401, refused.RootElement.GetProperty("decision").GetProperty("status").GetInt32());
        Assert.Equal("auth.missing", refused.RootElement.GetProperty("decision").GetProperty("reason").GetString());

        // Bad usage: a clear message, exit 2.
        var (bad, _, badErr) = await RunCliAsync("explain", "-c", baseFile, "-r", "FETCH ftp://x/");
        Assert.Equal(PortcullisCli.Usage, bad);
        Assert.Contains("expected 'METHOD URL'", badErr, StringComparison.Ordinal);
        AssertNoStackTrace(badErr);
    }

    [Fact]
    public async Task Diff_InvalidSide_Returns1WithoutStackTrace()
    {
        var a = Write("diff-a.yaml", ValidConfig(Ports.GetFree(), "v1"));
        var broken = Write("diff-broken.yaml", "routes:\n  - { name: r, cluster: missing }\n");

        var (code, stdout, stderr) = await RunCliAsync("diff", "-c", a, broken, "--exit-code");

        Assert.Equal(PortcullisCli.Invalid, code);
        Assert.NotEmpty(ErrorLines(stderr, broken));
        AssertNoStackTrace(stdout + stderr);
    }

    [Fact]
    public async Task Run_InvalidConfig_InProcess_Returns1WithoutStackTrace()
    {
        var path = Write("run-invalid.yaml", "routes:\n  - { name: r, cluster: missing }\n");

        var (code, stdout, stderr) = await RunCliAsync("run", "-c", path);

        Assert.Equal(PortcullisCli.Invalid, code);
        Assert.NotEmpty(ErrorLines(stderr, path));
        AssertNoStackTrace(stdout + stderr);
    }

    // ---- the real executable ----

    [Fact]
    public async Task Process_Run_ServesFixedResponse_ReloadsOnSighup_KeepsLastGoodConfig()
    {
        var port = Ports.GetFree();

        // The config path is a symlink into another directory, and the edit keeps the file's size and mtime:
        // file watching and stat polling cannot see it, so only SIGHUP can make the gateway pick it up.
        var realDirectory = Directory.CreateDirectory(Path.Combine(_directory, "real")).FullName;
        var linkDirectory = Directory.CreateDirectory(Path.Combine(_directory, "etc")).FullName;
        var target = Path.Combine(realDirectory, "portcullis.yaml");
        await File.WriteAllTextAsync(target, ValidConfig(port, "v1"));
        var configPath = Path.Combine(linkDirectory, "portcullis.yaml");
        File.CreateSymbolicLink(configPath, target);

        using var gateway = CliProcess.Start("run", "-c", configPath);
        using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(5) };
        await gateway.WaitForOutputAsync("serving", TimeSpan.FromSeconds(20));

        using (var first = await client.GetAsync("/hello"))
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
            Assert.Equal("v1", await first.Content.ReadAsStringAsync());
            Assert.Equal("yes", first.Headers.GetValues("X-Fixed").Single());
        }

        await RewriteKeepingStampAsync(target, ValidConfig(port, "v2"));
        gateway.Signal("HUP");
        await gateway.WaitForOutputAsync("Configuration reloaded (SIGHUP)", TimeSpan.FromSeconds(10));
        Assert.Equal("v2", await client.GetStringAsync("/hello"));

        // A broken file on SIGHUP is rejected: the last good configuration keeps serving.
        await RewriteKeepingStampAsync(target, ValidConfig(port, "v3").Replace("status: 200", "status: 999", StringComparison.Ordinal));
        gateway.Signal("HUP");
        await gateway.WaitForOutputAsync("rejected", TimeSpan.FromSeconds(10));
        Assert.Equal("v2", await client.GetStringAsync("/hello"));
        Assert.False(gateway.HasExited);

        // SIGTERM stops it cleanly.
        gateway.Signal("TERM");
        Assert.True(await gateway.WaitForExitAsync(TimeSpan.FromSeconds(15)), "did not stop on SIGTERM");
        Assert.Equal(0, gateway.ExitCode);
        AssertNoStackTrace(gateway.Stdout + gateway.Stderr);
    }

    [Fact]
    public async Task Process_Run_UnderNohup_ReloadsOnSighup()
    {
        var port = Ports.GetFree();

        // As in the SIGHUP test above: an edit neither the watcher nor the poll can see.
        var realDirectory = Directory.CreateDirectory(Path.Combine(_directory, "real")).FullName;
        var linkDirectory = Directory.CreateDirectory(Path.Combine(_directory, "etc")).FullName;
        var target = Path.Combine(realDirectory, "portcullis.yaml");
        await File.WriteAllTextAsync(target, ValidConfig(port, "v1"));
        var configPath = Path.Combine(linkDirectory, "portcullis.yaml");
        File.CreateSymbolicLink(configPath, target);

        // nohup sets SIGHUP to "ignore" and execs the gateway, which inherits it.
        using var gateway = CliProcess.StartUnder("nohup", "run", "-c", configPath);
        using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(5) };
        await gateway.WaitForOutputAsync("serving", TimeSpan.FromSeconds(20));
        Assert.Equal("v1", await client.GetStringAsync("/hello"));

        await RewriteKeepingStampAsync(target, ValidConfig(port, "v2"));
        gateway.Signal("HUP");
        await gateway.WaitForOutputAsync("Configuration reloaded (SIGHUP)", TimeSpan.FromSeconds(10));
        Assert.Equal("v2", await client.GetStringAsync("/hello"));
        Assert.False(gateway.HasExited);
        Assert.Contains("SIGHUP was ignored when the gateway started", gateway.Stdout, StringComparison.Ordinal);

        gateway.Signal("TERM");
        Assert.True(await gateway.WaitForExitAsync(TimeSpan.FromSeconds(15)), "did not stop on SIGTERM");
        Assert.Equal(0, gateway.ExitCode);
    }

    [Fact]
    public async Task Process_Run_BrokenConfig_Exits1WithErrorsAndNoStackTrace()
    {
        var path = Write("broken-run.yaml", $$"""
            listeners:
              - { name: public, address: "127.0.0.1:{{Ports.GetFree()}}" }
            routes:
              - { name: r, match: { path: /x }, cluster: ghost }
            limits:
              maxRequestBodySize: lots
            """);

        using var gateway = CliProcess.Start("run", "-c", path);
        Assert.True(await gateway.WaitForExitAsync(TimeSpan.FromSeconds(20)), "run with a broken config must exit");

        Assert.Equal(PortcullisCli.Invalid, gateway.ExitCode);
        var errors = ErrorLines(gateway.Stderr, path);
        Assert.Contains(errors, e => e.Line == 4);
        Assert.Contains(errors, e => e.Line == 6);
        AssertNoStackTrace(gateway.Stdout + gateway.Stderr);
    }

    [Fact]
    public async Task Process_Run_WritesNoKeyMaterialToDisk()
    {
        // ASP.NET Core's default Data Protection writes its key ring, unencrypted, to ~/.aspnet/DataProtection-Keys
        // when the host starts. The gateway's keys stay in memory: with HOME pointed at an empty folder, a gateway
        // that started, served and stopped has left no file in it.
        var home = Directory.CreateDirectory(Path.Combine(_directory, "home")).FullName;
        var port = Ports.GetFree();
        var path = Write("keys-at-rest.yaml", ValidConfig(port, "v1"));

        using var gateway = CliProcess.StartWith(new Dictionary<string, string> { ["HOME"] = home }, "run", "-c", path);
        await gateway.WaitForOutputAsync("serving", TimeSpan.FromSeconds(20));
        using (var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(5) })
        {
            Assert.Equal("v1", await client.GetStringAsync("/hello"));
        }

        gateway.Signal("TERM");
        Assert.True(await gateway.WaitForExitAsync(TimeSpan.FromSeconds(15)), "did not stop on SIGTERM");
        Assert.Empty(Directory.GetFiles(home, "*", SearchOption.AllDirectories));
    }

    [Fact]
    public async Task Process_Run_DoesNotWatchItsWorkingDirectory()
    {
        // ASP.NET Core's host watches appsettings.json (unused here) with a recursive inotify watch of the working
        // directory: started in /tmp, a gateway walked 10,596 directories at start. Only its own files are watched.
        var port = Ports.GetFree();
        var path = Write("no-watch.yaml", ValidConfig(port, "v1"));
        using var gateway = CliProcess.Start("run", "-c", path);
        await gateway.WaitForOutputAsync("serving", TimeSpan.FromSeconds(20));

        // The process runs in this test's output folder (CliProcess), which has dozens of folders below it.
        var directories = Directory.GetDirectories(AppContext.BaseDirectory, "*", SearchOption.AllDirectories).Length;
        Assert.True(directories >= 20, $"the working directory has only {directories} folders: the test proves nothing");
        var watches = InotifyWatches(gateway.Id);
        Assert.True(watches < 10, $"{watches} inotify watches in a working directory of {directories} folders");
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        Assert.Equal("v1", await client.GetStringAsync($"http://127.0.0.1:{port}/hello"));
    }

    // The inotify watches a process holds, from /proc/PID/fdinfo (one "inotify wd:" line per watch).
    private static int InotifyWatches(int pid) => Directory.GetFiles($"/proc/{pid}/fdinfo").Sum(file =>
    {
        try
        {
            return File.ReadLines(file).Count(line => line.StartsWith("inotify wd:", StringComparison.Ordinal));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return 0; // closed meanwhile
        }
    });

    [Fact]
    public async Task Process_Run_ListenerPortInUse_Exits1WithoutStackTrace()
    {
        using var taken = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port;
        var path = Write("busy.yaml", ValidConfig(port, "v1"));

        using var gateway = CliProcess.Start("run", "-c", path);
        Assert.True(await gateway.WaitForExitAsync(TimeSpan.FromSeconds(20)), "run on a busy port must exit");

        Assert.Equal(PortcullisCli.Invalid, gateway.ExitCode);
        Assert.Contains(port.ToString(), gateway.Stderr, StringComparison.Ordinal);
        AssertNoStackTrace(gateway.Stdout + gateway.Stderr);
    }

    // ---- helpers ----

    private static string ValidConfig(int port, string body) => $$"""
        listeners:
          - { name: public, address: "127.0.0.1:{{port}}" }
        routes:
          - name: hello
            match: { path: /hello }
            respond: { status: 200, body: "{{body}}", headers: { X-Fixed: "yes" } }
        """;

    /// <summary>Rewrites a file in place with content of the same length and restores its modification time.</summary>
    private static async Task RewriteKeepingStampAsync(string path, string content)
    {
        var stamp = File.GetLastWriteTimeUtc(path);
        var length = new FileInfo(path).Length;
        var bytes = Encoding.UTF8.GetBytes(content);
        Assert.True(bytes.Length <= length, "the replacement must not be longer");
        var padded = new byte[length];
        Array.Fill(padded, (byte)'\n');
        bytes.CopyTo(padded, 0);
        await File.WriteAllBytesAsync(path, padded);
        File.SetLastWriteTimeUtc(path, stamp);
    }

    private string Write(string name, string content)
    {
        var path = Path.Combine(_directory, name);
        File.WriteAllText(path, content);
        return path;
    }

    private static async Task<(int Code, string Stdout, string Stderr)> RunCliAsync(params string[] args)
    {
        using var stdout = new StringWriter();
        using var stderr = new StringWriter();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var code = await PortcullisCli.RunAsync(args, stdout, stderr, timeout.Token);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private static readonly Regex ErrorLine = new(@"^(?<file>.+):(?<line>\d+):(?<column>\d+): error: (?<message>.+)$", RegexOptions.Multiline);

    private static List<(int Line, int Column, string Message)> ErrorLines(string stderr, string path) =>
        ErrorLine.Matches(stderr.ReplaceLineEndings("\n"))
            .Where(m => m.Groups["file"].Value == path)
            .Select(m => (int.Parse(m.Groups["line"].Value), int.Parse(m.Groups["column"].Value), m.Groups["message"].Value))
            .Where(e => e.Item1 >= 1 && e.Item2 >= 1)
            .ToList();

    private static void AssertNoStackTrace(string text)
    {
        Assert.DoesNotContain("   at ", text, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled exception", text, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("Exception:", text, StringComparison.Ordinal);
    }
}

/// <summary>The built `portcullis` executable (portcullis.dll next to the tests) as a child process; killed on Dispose.</summary>
internal sealed class CliProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();
    private readonly Lock _lock = new();
    private readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private CliProcess(Process process)
    {
        _process = process;
    }

    public string Stdout
    {
        get
        {
            lock (_lock) return _stdout.ToString();
        }
    }

    public string Stderr
    {
        get
        {
            lock (_lock) return _stderr.ToString();
        }
    }

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    public int Id => _process.Id;

    public static CliProcess Start(params string[] args) => StartUnder(null, args);

    /// <summary>Starts it with extra environment variables.</summary>
    public static CliProcess StartWith(IReadOnlyDictionary<string, string> environment, params string[] args) => StartProcess(null, args, environment);

    /// <summary>Starts it through <paramref name="wrapper"/> (e.g. nohup), which execs the dotnet host: same pid.</summary>
    public static CliProcess StartUnder(string? wrapper, params string[] args) => StartProcess(wrapper, args, null);

    private static CliProcess StartProcess(string? wrapper, string[] args, IReadOnlyDictionary<string, string>? environment)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "portcullis.dll");
        Assert.True(File.Exists(dll), $"{dll} is missing: the test project must reference Portcullis.Cli");
        var start = new ProcessStartInfo(wrapper ?? DotnetHost())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        if (wrapper is not null) start.ArgumentList.Add(DotnetHost());
        start.ArgumentList.Add(dll);
        foreach (var arg in args) start.ArgumentList.Add(arg);
        start.Environment["DOTNET_ENVIRONMENT"] = "Production";
        start.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        start.Environment["DOTNET_NOLOGO"] = "1";
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) start.Environment[name] = value;

        return Launch(start);
    }

    /// <summary>A bash script (e.g. examples/quickstart/run.sh) in <paramref name="workingDirectory"/> with extra environment; its whole process tree is killed on Dispose.</summary>
    public static CliProcess StartScript(string path, string workingDirectory, IDictionary<string, string> environment)
    {
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = workingDirectory };
        start.ArgumentList.Add(path);
        foreach (var (name, value) in environment) start.Environment[name] = value;
        start.Environment["DOTNET_NOLOGO"] = "1";
        return Launch(start);
    }

    private static CliProcess Launch(ProcessStartInfo start)
    {
        var process = new Process { StartInfo = start, EnableRaisingEvents = true };
        var cli = new CliProcess(process);
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (cli._lock) cli._stdout.AppendLine(e.Data);
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (cli._lock) cli._stderr.AppendLine(e.Data);
        };
        process.Exited += (_, _) => cli._exited.TrySetResult();
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return cli;
    }

    public async Task WaitForOutputAsync(string text, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!Stdout.Contains(text, StringComparison.Ordinal))
        {
            if (_process.HasExited)
            {
                await WaitForExitAsync(TimeSpan.FromSeconds(2));
                throw new InvalidOperationException($"portcullis exited with {_process.ExitCode} before printing '{text}'.\nstdout:\n{Stdout}\nstderr:\n{Stderr}");
            }

            if (DateTime.UtcNow > deadline) throw new TimeoutException($"portcullis did not print '{text}'.\nstdout:\n{Stdout}\nstderr:\n{Stderr}");
            await Task.Delay(25);
        }
    }

    /// <summary>True when the process exited (and its output was drained) within <paramref name="timeout"/>.</summary>
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

    /// <summary>Sends a POSIX signal (HUP, TERM, ...) with kill(1).</summary>
    public void Signal(string signal)
    {
        var start = new ProcessStartInfo("kill") { UseShellExecute = false };
        start.ArgumentList.Add("-" + signal);
        start.ArgumentList.Add(_process.Id.ToString());
        using var kill = Process.Start(start)!;
        kill.WaitForExit(5000);
        Assert.Equal(0, kill.ExitCode);
    }

    private static string DotnetHost()
    {
        if (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host)) return host;
        if (Environment.ProcessPath is { } self && Path.GetFileNameWithoutExtension(self) == "dotnet") return self;
        return "dotnet";
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
