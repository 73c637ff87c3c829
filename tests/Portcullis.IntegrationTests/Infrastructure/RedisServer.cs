using System.Diagnostics;
using System.Globalization;

namespace Portcullis.IntegrationTests.Infrastructure;

/// <summary>
/// A real redis-server process of the test's own on a free 127.0.0.1 port (no persistence unless asked),
/// which a test can kill, restart on the same port, or freeze with SIGSTOP to play a hung Redis.
/// Every process it starts is stopped when it is disposed.
/// </summary>
internal sealed class RedisServer : IAsyncDisposable
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(15);

    private readonly string[] _extraArguments;
    private readonly bool _persistence;
    private Process? _process;
    private bool _frozen;

    private RedisServer(int port, string directory, bool persistence, string? password, string[] extraArguments)
    {
        Port = port;
        Directory = directory;
        Password = password;
        _persistence = persistence;
        _extraArguments = extraArguments;
    }

    public int Port { get; }

    /// <summary>The server's working directory (cluster config, dumps): deleted on dispose.</summary>
    public string Directory { get; }

    public string? Password { get; }

    /// <summary>A StackExchange.Redis connection string for this server.</summary>
    public string ConnectionString => Password is null ? $"127.0.0.1:{Port}" : $"127.0.0.1:{Port},password={Password}";

    public bool IsRunning => _process is { HasExited: false };

    public int ProcessId => _process?.Id ?? 0;

    public static async Task<RedisServer> StartAsync(bool persistence = false, string? password = null, int? port = null, params string[] extraArguments)
    {
        var directory = System.IO.Directory.CreateTempSubdirectory("portcullis-redis-").FullName;
        var server = new RedisServer(port ?? Ports.GetFree(), directory, persistence, password, extraArguments);
        try
        {
            await server.StartAsync();
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }

        return server;
    }

    /// <summary>Starts the process (again, after <see cref="Kill"/>) on the same port and waits until PING answers.</summary>
    public async Task StartAsync()
    {
        if (IsRunning) throw new InvalidOperationException("redis-server is already running");
        var start = new ProcessStartInfo("redis-server")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = Directory,
        };
        foreach (var argument in Arguments()) start.ArgumentList.Add(argument);
        var process = Process.Start(start) ?? throw new InvalidOperationException("redis-server did not start");
        // Drain its output so a chatty server never blocks on a full pipe.
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;
        _frozen = false;
        await WaitUntilAsync(() => IsRunning, "PING", static answer => answer == "PONG");
    }

    private IEnumerable<string> Arguments()
    {
        yield return "--port";
        yield return Port.ToString(CultureInfo.InvariantCulture);
        yield return "--bind";
        yield return "127.0.0.1";
        yield return "--dir";
        yield return Directory;
        yield return "--daemonize";
        yield return "no";
        yield return "--loglevel";
        yield return "warning";
        // Persistence (when asked for): snapshot every second with a change, plus the append-only file.
        yield return "--save";
        if (_persistence)
        {
            yield return "1";
            yield return "1";
        }
        else
        {
            yield return "";
        }

        yield return "--appendonly";
        yield return _persistence ? "yes" : "no";
        if (Password is not null)
        {
            yield return "--requirepass";
            yield return Password;
        }

        foreach (var argument in _extraArguments) yield return argument;
    }

    /// <summary>Kills the process (SIGKILL): connections drop, new ones are refused.</summary>
    public void Kill()
    {
        var process = _process;
        if (process is null) return;
        _process = null;
        try
        {
            if (!process.HasExited)
            {
                process.Kill();
                process.WaitForExit(10_000);
            }
        }
        finally
        {
            process.Dispose();
        }
    }

    /// <summary>Kills and starts again on the same port.</summary>
    public async Task RestartAsync()
    {
        Kill();
        await StartAsync();
    }

    /// <summary>SIGSTOP: the server keeps its connections open and answers nothing, like a hung host.</summary>
    public void Freeze()
    {
        if (_process is null || _frozen) return;
        Signal("STOP");
        _frozen = true;
    }

    /// <summary>SIGCONT after <see cref="Freeze"/>.</summary>
    public void Thaw()
    {
        if (_process is null || !_frozen) return;
        Signal("CONT");
        _frozen = false;
    }

    private void Signal(string signal)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill", ["-" + signal, ProcessId.ToString(CultureInfo.InvariantCulture)]) { UseShellExecute = false })!;
        kill.WaitForExit();
        if (kill.ExitCode != 0) throw new InvalidOperationException($"kill -{signal} {ProcessId} failed");
    }

    /// <summary>Runs redis-cli against this server and returns its output (trimmed).</summary>
    public Task<string> CliAsync(params string[] arguments) => RedisCli.RunAsync(Port, Password, arguments);

    /// <summary>Polls a redis-cli command until its answer satisfies the condition.</summary>
    internal async Task WaitUntilAsync(Func<bool> alive, string command, Func<string, bool> done)
    {
        var deadline = Stopwatch.StartNew();
        var last = "";
        while (deadline.Elapsed < StartTimeout)
        {
            if (!alive()) throw new InvalidOperationException($"redis-server on port {Port} exited");
            try
            {
                last = await CliAsync(command.Split(' '));
                if (done(last)) return;
            }
            catch (InvalidOperationException ex)
            {
                last = ex.Message;
            }

            await Task.Delay(25);
        }

        throw new TimeoutException($"redis-server on port {Port}: '{command}' still answers '{last}'");
    }

    public ValueTask DisposeAsync()
    {
        if (_frozen) Thaw();
        Kill();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // A temp directory left behind is harmless.
        }

        return ValueTask.CompletedTask;
    }
}

/// <summary>
/// A Redis Cluster of the test's own: three primaries (no replicas) on free loopback ports, each a
/// <see cref="RedisServer"/> in cluster mode, joined with <c>redis-cli --cluster create</c>.
/// </summary>
internal sealed class RedisCluster : IAsyncDisposable
{
    private readonly List<RedisServer> _nodes = [];

    public IReadOnlyList<RedisServer> Nodes => _nodes;

    /// <summary>Every node as a seed: StackExchange.Redis discovers the slot map from any of them.</summary>
    public string ConnectionString => string.Join(",", _nodes.Select(n => $"127.0.0.1:{n.Port}"));

    public static async Task<RedisCluster> StartAsync(int primaries = 3)
    {
        var cluster = new RedisCluster();
        try
        {
            foreach (var port in ClusterPorts(primaries))
            {
                cluster._nodes.Add(await RedisServer.StartAsync(
                    port: port,
                    extraArguments: ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"]));
            }

            var create = new List<string> { "--cluster", "create" };
            create.AddRange(cluster._nodes.Select(n => $"127.0.0.1:{n.Port}"));
            create.AddRange(["--cluster-replicas", "0", "--cluster-yes"]);
            await RedisCli.RunAsync(cluster._nodes[0].Port, null, [.. create]);
            foreach (var node in cluster._nodes)
            {
                await node.WaitUntilAsync(() => node.IsRunning, "CLUSTER INFO", static info => info.Contains("cluster_state:ok", StringComparison.Ordinal));
            }
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }

        return cluster;
    }

    // A cluster node also listens on its port + 10000 (the cluster bus): both must be free.
    private static List<int> ClusterPorts(int count)
    {
        var ports = new List<int>();
        for (var attempt = 0; ports.Count < count && attempt < 1000; attempt++)
        {
            var port = Ports.GetFree();
            if (port + 10000 > 65535 || ports.Contains(port) || ports.Contains(port + 10000) || ports.Contains(port - 10000)) continue;
            try
            {
                using var bus = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, port + 10000);
                bus.Start();
            }
            catch (System.Net.Sockets.SocketException)
            {
                continue;
            }

            ports.Add(port);
        }

        if (ports.Count < count) throw new InvalidOperationException("no free ports for a Redis Cluster");
        return ports;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var node in _nodes) await node.DisposeAsync();
    }
}

/// <summary>redis-cli, the distribution's client, for fixture set-up and checks (never the code under test).</summary>
internal static class RedisCli
{
    public static async Task<string> RunAsync(int port, string? password, string[] arguments)
    {
        var start = new ProcessStartInfo("redis-cli")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("-h");
        start.ArgumentList.Add("127.0.0.1");
        start.ArgumentList.Add("-p");
        start.ArgumentList.Add(port.ToString(CultureInfo.InvariantCulture));
        if (password is not null) start.Environment["REDISCLI_AUTH"] = password;
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        using var process = Process.Start(start) ?? throw new InvalidOperationException("redis-cli did not start");
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var output = process.StandardOutput.ReadToEndAsync(timeout.Token);
        var error = process.StandardError.ReadToEndAsync(timeout.Token);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill();
            throw new InvalidOperationException($"redis-cli {string.Join(' ', arguments)} hung");
        }

        var text = (await output).Trim();
        if (process.ExitCode != 0) throw new InvalidOperationException($"redis-cli {string.Join(' ', arguments)} failed: {text} {(await error).Trim()}");
        return text;
    }
}
