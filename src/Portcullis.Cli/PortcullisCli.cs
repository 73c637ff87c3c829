using System.CommandLine;
using System.Reflection;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Portcullis.Configuration;
using Yarp.ReverseProxy.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Cli;

/// <summary>The `portcullis` command. Exit codes: 0 ok, 1 invalid config or failure, 2 usage error, 3 diff found changes (with --exit-code).</summary>
public static class PortcullisCli
{
    public const int Ok = 0;
    public const int Invalid = 1;
    public const int Usage = 2;
    public const int Changes = 3;

    public static async Task<int> RunAsync(string[] args, TextWriter? stdout = null, TextWriter? stderr = null, CancellationToken cancellationToken = default)
    {
        var output = stdout ?? Console.Out;
        var errors = stderr ?? Console.Error;

        var runConfig = ConfigsOption();
        var run = new Command("run", "Run the gateway with a configuration file.") { runConfig };
        run.SetAction((result, ct) => RunGatewayAsync(result.GetRequiredValue(runConfig), output, errors, ct));

        var validateConfig = ConfigsOption();
        var validate = new Command("validate", "Check a configuration file (like haproxy -c): prints every problem as file:line:column.") { validateConfig };
        validate.SetAction(result => Validate(result.GetRequiredValue(validateConfig), output, errors));

        var diffConfig = ConfigsOption("The current configuration file (repeat -c for overlays: later files override earlier ones by name).");
        var diffNew = new Argument<string[]>("NEW") { Description = "The configuration file to compare it with (several: a main file and its overlays, in order).", Arity = ArgumentArity.OneOrMore };
        var exitCode = new Option<bool>("--exit-code") { Description = "Exit with 3 when there are changes." };
        var diff = new Command("diff", "Show what a reload from the current to the new file would change.") { diffConfig, diffNew, exitCode };
        diff.SetAction(result => Diff(result.GetRequiredValue(diffConfig), result.GetRequiredValue(diffNew), result.GetValue(exitCode), output, errors));

        var echoPort = new Option<int>("--port", "-p") { Description = "Port to listen on.", Required = true };
        var echoAddress = new Option<string>("--address") { Description = "Address to bind.", DefaultValueFactory = _ => "127.0.0.1" };
        var echoName = new Option<string?>("--name") { Description = "Name reported in every answer (default: echo-PORT)." };
        var echoH2c = new Option<bool>("--h2c") { Description = "Speak cleartext HTTP/2 (prior knowledge) only." };
        var echo = new Command("echo", "Run a small upstream that answers every request with the request it saw, as JSON (WebSocket: echoes messages).")
        {
            echoPort, echoAddress, echoName, echoH2c,
        };
        echo.SetAction((result, ct) => EchoServer.RunAsync(result.GetValue(echoAddress)!, result.GetValue(echoPort), result.GetValue(echoName), result.GetValue(echoH2c), output, errors, ct));

        var schema = new Command("schema", "Print the JSON Schema of the configuration file.");
        schema.SetAction(_ =>
        {
            output.Write(ConfigSchema.Generate());
            return Ok;
        });

        var root = new RootCommand("Portcullis: an identity-aware API gateway on YARP and Kestrel.") { run, validate, diff, echo, schema, KeysCommand.Create(output, errors), CertsCommand.Create(output, errors), AuditCommand.Create(output, errors), AnalyticsCommand.Create(output, errors), AdviseCommand.Create(output, errors), ExplainCommand.Create(output, errors), HealthCommand.Create(output, errors) };
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0) return await UsageErrorAsync(parsed, errors);

        var configuration = new InvocationConfiguration { Output = output, Error = errors };
        return await parsed.InvokeAsync(configuration, cancellationToken);
    }

    /// <summary>
    /// Prints a parse failure: only the words the parser did not know when there are any (a mistyped
    /// command also leaves "Required command was not provided"), and the help of the command that was meant.
    /// </summary>
    internal static async Task<int> UsageErrorAsync(ParseResult parsed, TextWriter errors)
    {
        var unmatched = parsed.UnmatchedTokens;
        var shown = parsed.Errors.Where(e => unmatched.Count == 0 || unmatched.Any(t => e.Message.Contains($"'{t}'", StringComparison.Ordinal))).ToList();
        if (shown.Count == 0) shown = [.. parsed.Errors];
        foreach (var error in shown) await errors.WriteLineAsync("error: " + error.Message);
        var names = new List<string>();
        for (var result = parsed.CommandResult; result is not null; result = result.Parent as System.CommandLine.Parsing.CommandResult)
        {
            if (result.Command is not RootCommand) names.Insert(0, result.Command.Name);
        }

        await errors.WriteLineAsync($"Run '{string.Join(' ', ["portcullis", .. names])} --help' for usage.");
        return Usage;
    }

    private static Option<string> ConfigOption(string description = "The YAML configuration file.") =>
        new("--config", "-c") { Description = description, Required = true };

    // -c base.yaml -c prod.yaml: a main file and overlays, each overriding the ones before it by name.
    private static Option<string[]> ConfigsOption(string description = "The YAML configuration file; repeat -c to add overlays (later files override earlier ones by name).") =>
        new("--config", "-c") { Description = description, Required = true, Arity = ArgumentArity.OneOrMore };

    private static string Name(IReadOnlyList<string> paths) => string.Join(" + ", paths);

    internal static string Version =>
        typeof(PortcullisCli).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.0.0";

    internal static BuildResult Build(string path) => Build([path]);

    internal static BuildResult Build(IReadOnlyList<string> paths)
    {
        // YARP's own validator checks what only it knows (route template syntax), as a reload would.
        using var services = new ServiceCollection().AddLogging().AddPortcullisProxy().BuildServiceProvider();
        return new SnapshotBuilder(proxyValidator: services.GetRequiredService<IConfigValidator>()).Build(paths);
    }

    private static int Validate(string[] paths, TextWriter output, TextWriter errors)
    {
        var path = Name(paths);
        var result = Build(paths);
        foreach (var diagnostic in result.Diagnostics) errors.WriteLine(diagnostic);
        if (result.Snapshot is not { } snapshot)
        {
            errors.WriteLine($"{path}: {result.Errors.Count()} error(s); the configuration is not valid.");
            return Invalid;
        }

        output.WriteLine($"{path}: OK ({snapshot.Routes.Count} routes, {snapshot.Clusters.Count} clusters, {snapshot.Maps.Count} maps, {snapshot.Listeners.Count} listeners)");
        return Ok;
    }

    private static int Diff(string[] currentPath, string[] newPath, bool exitCode, TextWriter output, TextWriter errors)
    {
        var current = Build(currentPath);
        var next = Build(newPath);
        var failed = false;
        foreach (var result in new[] { current, next })
        {
            if (result.Snapshot is not null) continue;
            foreach (var diagnostic in result.Errors) errors.WriteLine(diagnostic);
            failed = true;
        }

        if (failed)
        {
            errors.WriteLine("diff needs two valid configurations.");
            return Invalid;
        }

        var changes = ConfigDiff.Compare(current.Snapshot!, next.Snapshot!);
        output.Write(changes.Format());
        return exitCode && changes.HasChanges ? Changes : Ok;
    }

    private static async Task<int> RunGatewayAsync(string[] paths, TextWriter output, TextWriter errors, CancellationToken cancellationToken)
    {
        var path = Name(paths);
        var builder = WebApplication.CreateBuilder(HostDefaults.Options());
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(options =>
        {
            options.SingleLine = true;
            options.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
            options.UseUtcTimestamp = true;
        });
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        builder.Logging.AddFilter("Yarp", LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.AspNetCore.DataProtection", LogLevel.Error);
        // The OIDC handler logs every provider error at Error level; the session code logs each once, with its code.
        builder.Logging.AddFilter("Microsoft.AspNetCore.Authentication.OpenIdConnect", LogLevel.Critical);
        // Start-up failures are reported below as one line; the host's own log would add a stack trace.
        builder.Logging.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.None);
        try
        {
            builder.Services.AddPortcullis(options =>
            {
                options.ConfigPath = paths[0];
                foreach (var overlay in paths.Skip(1)) options.Overlays.Add(overlay);
            });
        }
        catch (ConfigException ex)
        {
            foreach (var diagnostic in ex.Diagnostics) await errors.WriteLineAsync(diagnostic.ToString());
            await errors.WriteLineAsync($"{path}: not started; fix the configuration and try again.");
            return Invalid;
        }

        var app = builder.Build();
        app.UsePortcullis();
        try
        {
            await app.StartAsync(cancellationToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // Address in use and the like: say which, without a stack trace.
            await errors.WriteLineAsync(ex is IOException ? $"error: cannot listen: {ex.Message}" : $"error: cannot start: {ex.Message}");
            // Background services that had started (analytics, advisor, health probes) are stopped before the
            // container is disposed: disposed first, a loop still running logs ObjectDisposedException traces.
            using (var stopping = new CancellationTokenSource(TimeSpan.FromSeconds(5)))
            {
                try
                {
                    await app.StopAsync(stopping.Token);
                }
                catch (Exception stopError) when (stopError is OperationCanceledException or ObjectDisposedException or InvalidOperationException)
                {
                    // Best effort: the process exits next either way.
                }
            }

            await app.DisposeAsync();
            return Invalid;
        }

        var store = app.Services.GetRequiredService<Portcullis.Configuration.SnapshotStore>();
        foreach (var warning in store.StartupDiagnostics) await errors.WriteLineAsync(warning.ToString());
        var snapshot = store.Current;
        await output.WriteLineAsync($"Portcullis {Version} serving {path}: {snapshot.Routes.Count} routes, {snapshot.Clusters.Count} clusters");
        foreach (var listener in snapshot.Listeners)
        {
            await output.WriteLineAsync($"  {(listener.Admin ? "admin " : "listener")} {listener.Name}: {(listener.Tls is null ? "http" : "https")}://{listener.Address}");
        }

        await output.FlushAsync(cancellationToken);
        try
        {
            await app.WaitForShutdownAsync(cancellationToken);
        }
        finally
        {
            await app.DisposeAsync();
        }

        return Ok;
    }
}
