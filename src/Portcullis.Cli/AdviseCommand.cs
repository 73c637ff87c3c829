using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Portcullis.Advice;
using Portcullis.Analytics;
using Portcullis.Configuration;
using Yarp.ReverseProxy.Configuration;

namespace Portcullis.Cli;

/// <summary>
/// `portcullis advise -c FILE [--store PATH] [--since 7d] [--format text|json|patch] [--apply ID]`: one advisor run
/// offline, with the gateway's own engine and detectors, over the config and the analytics store (read-only;
/// without one, the config-only checks, and it says so). --apply writes a finding's patch into the config file
/// after a backup, only if the result validates, and prints what a reload would change. Never silent.
/// </summary>
internal static class AdviseCommand
{
    public static Command Create(TextWriter output, TextWriter errors)
    {
        var config = new Option<string[]>("--config", "-c") { Description = "The YAML configuration file; repeat -c to add overlays (later files override earlier ones by name).", Required = true, Arity = ArgumentArity.OneOrMore };
        var store = new Option<string?>("--store") { Description = "The analytics store file (default: analytics.path of the config), opened read-only." };
        var since = new Option<string>("--since") { Description = "How much history to learn from, e.g. 1h, 24h, 7d (default: advice.window, 7d).", };
        var format = new Option<string>("--format") { Description = "text (default), json (the admin API's JSON) or patch (the YAML patches).", DefaultValueFactory = _ => "text" };
        format.AcceptOnlyFromAmong("text", "json", "patch");
        var apply = new Option<string?>("--apply") { Description = "Apply this finding's patch to the config file (backup first; refused if the result would not validate)." };
        var command = new Command("advise", "Run the traffic advisor offline over the config and the analytics store; print or apply its findings.") { config, store, since, format, apply };
        command.SetAction(result => Run(result.GetRequiredValue(config), result.GetValue(store), result.GetValue(since), result.GetValue(format)!, result.GetValue(apply), TimeProvider.System, output, errors));
        return command;
    }

    /// <param name="configureServices">Tests add a detector of their own here, as the gateway's test host does.</param>
    internal static int Run(string configPath, string? storePath, string? since, string format, string? applyId, TimeProvider time, TextWriter output, TextWriter errors, Action<IServiceCollection>? configureServices = null) =>
        Run([configPath], storePath, since, format, applyId, time, output, errors, configureServices);

    /// <param name="configPaths">The main file, then each overlay.</param>
    internal static int Run(IReadOnlyList<string> configPaths, string? storePath, string? since, string format, string? applyId, TimeProvider time, TextWriter output, TextWriter errors, Action<IServiceCollection>? configureServices = null)
    {
        TimeSpan? window = null;
        if (since is not null)
        {
            if (!DurationFormat.TryParse(since, out var parsed, out var error) || parsed < AdviceCompiler.MinWindow)
            {
                errors.WriteLine($"error: --since '{since}': {error ?? "at least 1h"} (e.g. --since 24h or --since 7d)");
                return PortcullisCli.Usage;
            }

            window = parsed;
        }

        var configPath = configPaths[0];
        var built = PortcullisCli.Build(configPaths);
        if (built.Snapshot is not { } snapshot)
        {
            foreach (var diagnostic in built.Errors) errors.WriteLine(diagnostic);
            errors.WriteLine($"{configPath}: the configuration is not valid; fix it first (portcullis validate -c {configPath}).");
            return PortcullisCli.Invalid;
        }

        var settings = snapshot.Advice;
        if (settings is null)
        {
            errors.WriteLine($"note: advice.enabled is false in {configPath}; running with the default settings.");
            settings = new CompiledAdvice { Interval = TimeSpan.FromMinutes(1), Window = TimeSpan.FromDays(7) };
        }

        if (window is { } w) settings = settings with { Window = w };
        var source = OpenStore(storePath ?? snapshot.Analytics?.Path, errors);

        var collection = new ServiceCollection()
            .AddLogging(logging => logging.AddProvider(new WriterLoggerProvider(errors)))
            .AddSingleton(time)
            .AddAdviceDetectors()
            .AddPortcullisProxy();
        configureServices?.Invoke(collection);
        using var services = collection.BuildServiceProvider();
        var validator = new AdvicePatchValidator(null, services.GetRequiredService<IConfigValidator>(), time);
        var engine = new AdviceEngine(services.GetServices<IAdviceDetector>(), validator, services.GetRequiredService<ILogger<AdviceEngine>>());
        var set = engine.Run(new AdviceContext
        {
            Now = time.GetUtcNow().UtcDateTime,
            Snapshot = snapshot,
            Settings = settings,
            Analytics = source,
            Runtime = OfflineAdviceRuntime.Instance, // no live health, certificates or JWKS offline: those checks skip themselves
        });
        var decisions = new AdviceStateStore(settings.StatePath, services.GetRequiredService<ILogger<AdviceStateStore>>());

        if (applyId is not null) return Apply(configPaths, snapshot, set, validator, applyId, output, errors);
        switch (format)
        {
            case "json":
                WriteJson(set, decisions, output);
                break;
            case "patch":
                WritePatches(set, output, errors);
                break;
            default:
                WriteText(configPath, set, decisions, source, output);
                break;
        }

        return PortcullisCli.Ok;
    }

    // The store to read, read-only; null (config-only checks, said on stderr) when there is none or it cannot be opened.
    private static AnalyticsSource? OpenStore(string? path, TextWriter errors)
    {
        if (path is null)
        {
            errors.WriteLine("note: no analytics store (no --store, no analytics.path): only the config checks run.");
            return null;
        }

        if (!File.Exists(path))
        {
            errors.WriteLine($"note: no analytics store at {path}: only the config checks run.");
            return null;
        }

        var source = AnalyticsSource.ReadOnlyFile(path);
        try
        {
            using var probe = source.OpenConnection();
            return source;
        }
        catch (Exception ex) when (ex is DuckDB.NET.Data.DuckDBException or IOException or UnauthorizedAccessException)
        {
            var locked = ex.Message.Contains("lock", StringComparison.OrdinalIgnoreCase);
            errors.WriteLine(locked
                ? $"note: {path} is in use by a running gateway (ask it: GET /admin/advice); only the config checks run."
                : $"note: cannot open {path} ({ex.Message}); only the config checks run.");
            return null;
        }
    }

    private static int Apply(IReadOnlyList<string> configPaths, GatewaySnapshot before, FindingSet set, AdvicePatchValidator validator, string id, TextWriter output, TextWriter errors)
    {
        var configPath = configPaths[0];
        if (!set.ById.TryGetValue(id, out var entry))
        {
            errors.WriteLine($"error: no finding '{id}' in this run ({set.Entries.Count} finding(s); list them with portcullis advise -c {configPath}). {configPath} is unchanged.");
            return PortcullisCli.Usage;
        }

        if (entry.Finding.Patch is not { } patch)
        {
            errors.WriteLine($"error: finding {id} ({entry.Finding.Kind}) has no patch to apply. {configPath} is unchanged.");
            return PortcullisCli.Usage;
        }

        // The files as they are now (read for this run), the patch merged into the one that defines what it changes, compiled in memory first.
        var check = validator.Check(before.Source, patch);
        var target = check.TargetFile is { } full ? ConfigProvenance.DisplayRelativeTo(Path.GetFullPath(configPath), full) : configPath;
        if (!check.Valid || check.TargetFile is null)
        {
            foreach (var error in check.Errors) errors.WriteLine(error);
            errors.WriteLine($"error: the patch of finding {id} would not validate; {target} is unchanged.");
            return PortcullisCli.Usage;
        }

        var file = check.TargetFile;
        var backup = $"{file}.bak-{DateTime.UtcNow.ToString("yyyyMMddHHmmss", CultureInfo.InvariantCulture)}";
        File.Copy(file, backup, overwrite: false);
        var temporary = file + ".advise-tmp";
        File.WriteAllText(temporary, check.PatchedText);
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(temporary, File.GetUnixFileMode(file));
        File.Move(temporary, file, overwrite: true);

        // The files as written, through the real validate path.
        var after = PortcullisCli.Build(configPaths);
        if (after.Snapshot is null)
        {
            File.Copy(backup, file, overwrite: true);
            foreach (var diagnostic in after.Errors) errors.WriteLine(diagnostic);
            errors.WriteLine($"error: the written file did not validate; {target} was restored from {backup}.");
            return PortcullisCli.Invalid;
        }

        output.WriteLine($"Applied finding {id} ({entry.Finding.Kind}): {patch.Summary}");
        output.WriteLine($"  {(file == Path.GetFullPath(configPath) ? configPath : target)} written (backup of the previous file: {backup}; comments are not kept, the backup has them).");
        output.WriteLine("What a reload would change (portcullis diff):");
        output.Write(ConfigDiff.Compare(before, after.Snapshot).Format());
        output.WriteLine("Reload the gateway to use it (SIGHUP or POST /admin/reload).");
        return PortcullisCli.Ok;
    }

    private static void WriteText(string configPath, FindingSet set, AdviceStateStore decisions, AnalyticsSource? source, TextWriter output)
    {
        var run = set.LastRun!;
        output.WriteLine($"{set.Entries.Count} finding(s) over {(source is null ? "the config only (no analytics store)" : "the config and the analytics store")}, in {run.Duration.TotalMilliseconds:0} ms.");
        foreach (var detector in run.Detectors.Where(d => d.Error is not null)) output.WriteLine($"  detector {detector.Name} failed: {detector.Error}");
        foreach (var entry in set.Entries)
        {
            var f = entry.Finding;
            var state = FindingJson.StateOf(entry, decisions.Get(f.Id));
            output.WriteLine();
            output.WriteLine($"[{FindingJson.Name(f.Severity)}] {f.Title}");
            output.WriteLine($"  id {f.Id} · {f.Kind} · {FindingJson.SubjectKindName(f.Subject.Kind)} {f.Subject.Name}{(f.Subject.Route is { } r ? $" on route {r}" : "")} · confidence {f.Confidence.ToString().ToLowerInvariant()}{(state == FindingState.Open ? "" : " · " + FindingJson.Name(state))}");
            output.WriteLine($"  {f.Explanation}");
            output.WriteLine($"  evidence {f.Evidence.From:yyyy-MM-ddTHH:mm:ssZ} .. {f.Evidence.To:yyyy-MM-ddTHH:mm:ssZ}{(f.Evidence.Basis is { } b ? $" ({b})" : "")}:");
            foreach (var value in f.Evidence.Values)
            {
                output.WriteLine($"    {value.Name}: {value.Value.ToString("0.###", CultureInfo.InvariantCulture)}{(value.Unit is { } u ? " " + u : "")}{(value.Baseline is { } bl ? $" (baseline {bl.ToString("0.###", CultureInfo.InvariantCulture)})" : "")}");
            }

            if (f.Evidence.DashboardLink is { } link) output.WriteLine($"  dashboard: {link}");
            if (f.Patch is { } patch) output.WriteLine($"  patch{(patch.File is { } file ? $" ({file})" : "")}: {patch.Summary} — portcullis advise -c {configPath} --apply {f.Id}");
        }
    }

    private static void WriteJson(FindingSet set, AdviceStateStore decisions, TextWriter output)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            FindingJson.WriteHeader(w, set, enabled: true);
            w.WriteStartArray("findings");
            foreach (var entry in set.Entries) FindingJson.Write(w, entry, decisions.Get(entry.Finding.Id));
            w.WriteEndArray();
            w.WriteEndObject();
        }

        output.WriteLine(System.Text.Encoding.UTF8.GetString(buffer.ToArray()));
    }

    private static void WritePatches(FindingSet set, TextWriter output, TextWriter errors)
    {
        var patched = set.Entries.Where(e => e.Finding.Patch is not null).ToList();
        if (patched.Count == 0) errors.WriteLine($"note: none of the {set.Entries.Count} finding(s) has a patch.");
        foreach (var entry in patched)
        {
            output.WriteLine($"# {entry.Finding.Id} {entry.Finding.Kind}: {entry.Finding.Patch!.Summary}{(entry.Finding.Patch.File is { } file ? $" (file {file})" : "")}");
            output.Write(entry.Finding.Patch.Yaml.TrimEnd('\n') + "\n");
            output.WriteLine();
        }
    }

    /// <summary>Warnings and errors of the run (a detector that failed, a patch dropped) on stderr.</summary>
    private sealed class WriterLoggerProvider(TextWriter writer) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => new WriterLogger(writer);

        public void Dispose()
        {
        }

        private sealed class WriterLogger(TextWriter writer) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                if (IsEnabled(logLevel)) writer.WriteLine($"{(logLevel >= LogLevel.Error ? "error" : "warning")}: {formatter(state, exception)}");
            }
        }
    }
}
