using System.Collections.Concurrent;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.IntegrationTests.Infrastructure;

/// <summary>
/// The real gateway (AddPortcullis + UsePortcullis on Kestrel) on free loopback ports, with its config
/// in a temporary directory the test can rewrite. {{PORT}} and {{ADMIN_PORT}} in the YAML are replaced.
/// </summary>
internal sealed class TestGateway : IAsyncDisposable
{
    private readonly WebApplication _app;

    private TestGateway(WebApplication app, string directory, int port, int adminPort, LogCollector logs)
    {
        _app = app;
        Directory = directory;
        Port = port;
        AdminPort = adminPort;
        Logs = logs;
        Client = new HttpClient { BaseAddress = new Uri(Url), Timeout = TimeSpan.FromSeconds(30) };
        Admin = new HttpClient { BaseAddress = new Uri(AdminUrl), Timeout = TimeSpan.FromSeconds(30) };
    }

    public string Directory { get; }

    public int Port { get; }

    public int AdminPort { get; }

    public string Url => $"http://127.0.0.1:{Port}";

    public string AdminUrl => $"http://127.0.0.1:{AdminPort}";

    public string ConfigPath => Path.Combine(Directory, "portcullis.yaml");

    public HttpClient Client { get; }

    public HttpClient Admin { get; }

    public LogCollector Logs { get; }

    public IServiceProvider Services => _app.Services;

    public long Generation => Services.GetRequiredService<SnapshotStore>().Current.Generation;

    /// <summary>Listeners public ({{PORT}}) and admin ({{ADMIN_PORT}}) are prepended unless the YAML has its own.</summary>
    /// <param name="configureServices">Runs after AddPortcullis (e.g. to replace a service with a test double).</param>
    /// <param name="overlays">Files (written by <paramref name="files"/>) applied after portcullis.yaml, as `-c portcullis.yaml -c OVERLAY`.</param>
    public static async Task<TestGateway> StartAsync(string yaml, IDictionary<string, string>? files = null, Func<string, string?>? environment = null, Action<IServiceCollection>? configureServices = null, IReadOnlyList<string>? overlays = null)
    {
        var directory = System.IO.Directory.CreateTempSubdirectory("portcullis-it-").FullName;
        var port = Ports.GetFree();
        var adminPort = Ports.GetFree();
        foreach (var (name, content) in files ?? new Dictionary<string, string>())
        {
            var file = Path.Combine(directory, name);
            System.IO.Directory.CreateDirectory(Path.GetDirectoryName(file)!);
            await File.WriteAllTextAsync(file, content);
        }

        var configPath = Path.Combine(directory, "portcullis.yaml");
        await File.WriteAllTextAsync(configPath, Expand(yaml, port, adminPort));

        var logs = new LogCollector();
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [] });
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(logs);
        builder.Services.AddPortcullis(options =>
        {
            options.ConfigPath = configPath;
            options.Environment = environment;
            foreach (var overlay in overlays ?? []) options.Overlays.Add(Path.Combine(directory, overlay));
        });
        configureServices?.Invoke(builder.Services);
        var app = builder.Build();
        app.UsePortcullis();
        await app.StartAsync();
        return new TestGateway(app, directory, port, adminPort, logs);
    }

    public static string Expand(string yaml, int port, int adminPort)
    {
        if (!yaml.Contains("listeners:", StringComparison.Ordinal))
        {
            yaml = "listeners:\n  - { name: public, address: \"127.0.0.1:{{PORT}}\" }\n  - { name: admin, address: \"127.0.0.1:{{ADMIN_PORT}}\", admin: true }\n" + yaml;
        }

        return yaml.Replace("{{PORT}}", port.ToString(), StringComparison.Ordinal)
            .Replace("{{ADMIN_PORT}}", adminPort.ToString(), StringComparison.Ordinal);
    }

    /// <summary>Rewrites the config file atomically (write + rename, as editors and deploy tools do).</summary>
    public async Task WriteConfigAsync(string yaml) => await WriteFileAsync("portcullis.yaml", Expand(yaml, Port, AdminPort));

    public async Task WriteFileAsync(string name, string content)
    {
        var target = Path.Combine(Directory, name);
        System.IO.Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        var temporary = target + ".tmp-" + Guid.NewGuid().ToString("N");
        await File.WriteAllTextAsync(temporary, content);
        File.Move(temporary, target, overwrite: true);
    }

    /// <summary>POST /admin/reload; returns the status and the JSON answer.</summary>
    public async Task<(int Status, JsonElement Body)> ReloadAsync()
    {
        using var response = await Admin.PostAsync("/admin/reload", null);
        var body = await response.Content.ReadFromJsonAsync<JsonElement>();
        return ((int)response.StatusCode, body);
    }

    /// <summary>Waits until the gateway serves a generation above <paramref name="generation"/>.</summary>
    public async Task WaitForGenerationAsync(long generation, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(10));
        while (Generation <= generation)
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"gateway still at generation {Generation}; logs:\n{Logs}");
            await Task.Delay(25);
        }

        // YARP applies the new routes asynchronously after the swap.
        await Task.Delay(100);
    }

    /// <summary>Stops the host as SIGTERM would (its clients stay usable); DisposeAsync still cleans up.</summary>
    public Task StopAsync() => _app.StopAsync();

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        Admin.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>Keeps log lines in memory so tests can assert on them.</summary>
internal sealed class LogCollector : ILoggerProvider
{
    private readonly ConcurrentQueue<string> _lines = new();

    public IReadOnlyCollection<string> Lines => _lines;

    public ILogger CreateLogger(string categoryName) => new Collector(this, categoryName);

    public void Dispose()
    {
    }

    public override string ToString() => string.Join("\n", _lines);

    private sealed class Collector(LogCollector owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information && (category.StartsWith("Portcullis", StringComparison.Ordinal) || logLevel >= LogLevel.Warning);

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel)) owner._lines.Enqueue($"{logLevel}: {category}: {formatter(state, exception)}{(exception is null ? "" : " " + exception)}");
        }
    }
}
