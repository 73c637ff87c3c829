using System.Collections.Frozen;
using Portcullis.Configuration;

namespace Portcullis.Analytics;

/// <summary>Validation and compilation of `analytics` (the store's keys; analytics.fleetPath is the export's).</summary>
internal static class AnalyticsCompiler
{
    internal const long MinMaxSize = 1024 * 1024;
    internal static readonly TimeSpan MaxFlushInterval = TimeSpan.FromHours(1);
    internal static readonly TimeSpan MinRetention = TimeSpan.FromHours(1);

    /// <summary>Above the export's closing delay (flushInterval + 1m, at most 1h1m): an hour is exported per minute before it is compacted.</summary>
    internal static readonly TimeSpan MinHourlyAfter = TimeSpan.FromHours(2);

    private const string Section = "analytics";

    internal static CompiledAnalytics? Compile(CompileContext context, AnalyticsOptions options, IReadOnlyList<RouteOptions> routes)
    {
        if (options.Path is null)
        {
            foreach (var key in (string[])["flushInterval", "retention", "maxSize", "samples", "export", "compaction"])
            {
                if (context.Loaded.Locations.Has($"{Section}.{key}")) context.Warning($"{Section}.{key}", "analytics is off without a path", "add path: data/analytics.duckdb");
            }

            return null;
        }

        var ok = true;
        void Error(string key, string message, string hint)
        {
            context.Error($"{Section}.{key}", message, hint);
            ok = false;
        }

        if (options.FlushInterval <= TimeSpan.Zero || options.FlushInterval > MaxFlushInterval)
        {
            Error("flushInterval", $"flushInterval must be above 0 and at most 1h (it is {options.FlushInterval})", "a crash loses at most one interval: e.g. flushInterval: 5s");
        }

        if (options.Retention < MinRetention)
        {
            Error("retention", $"retention must be at least 1h (it is {options.Retention})", "rollups are per minute and kept for hours to days: e.g. retention: 30d");
        }

        if (options.MaxSize.Bytes < MinMaxSize)
        {
            Error("maxSize", $"maxSize must be at least 1MiB (it is {options.MaxSize})", "e.g. maxSize: 2GiB");
        }

        var compaction = options.Compaction;
        if (compaction.HourlyAfter < MinHourlyAfter)
        {
            Error("compaction.hourlyAfter", $"hourlyAfter must be at least 2h (it is {compaction.HourlyAfter})",
                "minutes are kept per minute this long, and an hour must be closed and exported first: e.g. hourlyAfter: 48h");
        }
        else if (compaction.DailyAfter <= compaction.HourlyAfter)
        {
            Error("compaction.dailyAfter", $"dailyAfter must be longer than hourlyAfter ({compaction.DailyAfter} ≤ {compaction.HourlyAfter})",
                "rows become hourly first, then daily: e.g. hourlyAfter: 48h, dailyAfter: 7d");
        }

        var samples = options.Samples;
        if (double.IsNaN(samples.SuccessRate) || samples.SuccessRate is < 0 or > 1)
        {
            Error("samples.successRate", $"successRate must be between 0 and 1 (it is {samples.SuccessRate})", "a share: 0.01 keeps one success in a hundred, 0 none, 1 all");
        }

        if (samples.QueueSize < 1)
        {
            Error("samples.queueSize", $"queueSize must be at least 1 (it is {samples.QueueSize})", "e.g. queueSize: 10000; beyond it samples are dropped and counted");
        }

        var file = CompilePath(context, options.Path, ref ok);
        var export = ParquetExportCompiler.Compile(context, options);
        if (options.Export is not null && export is null) ok = false;
        var fleet = ParquetExportCompiler.CompileFleetPath(context, options);
        if (options.FleetPath is not null && fleet is null) ok = false;

        if (!ok || file is null) return null;
        return new CompiledAnalytics
        {
            Path = file,
            FlushInterval = options.FlushInterval,
            Retention = options.Retention,
            MaxSize = options.MaxSize.Bytes,
            HourlyAfter = compaction.HourlyAfter,
            DailyAfter = compaction.DailyAfter,
            SuccessRate = samples.SuccessRate,
            QueueSize = samples.QueueSize,
            RawPaths = samples.RawPaths,
            ExportPath = export?.Path,
            ExportInstance = export?.Instance,
            FleetPath = fleet,
            RouteTemplates = Templates(routes),
        };
    }

    // The store file: its directory must exist and be writable by the gateway (it creates the file and DuckDB's WAL next to it).
    private static string? CompilePath(CompileContext context, string path, ref bool ok)
    {
        const string key = Section + ".path";
        if (string.IsNullOrWhiteSpace(path))
        {
            context.Error(key, "path cannot be empty", "e.g. path: data/analytics.duckdb, or remove it to turn analytics off");
            ok = false;
            return null;
        }

        var file = context.Loaded.Resolve(path);
        var directory = System.IO.Path.GetDirectoryName(file);
        if (Directory.Exists(file))
        {
            context.Error(key, $"'{path}' is a directory", "name a file, e.g. data/analytics.duckdb");
            ok = false;
        }
        else if (string.IsNullOrEmpty(directory) || !Directory.Exists(directory))
        {
            context.Error(key, $"the directory of '{path}' does not exist ({directory})", "create it first; the gateway creates only the file");
            ok = false;
        }
        else if (!IsWritable(directory))
        {
            context.Error(key, $"the directory of '{path}' is not writable ({directory})", "DuckDB writes the file and its .wal next to it: give the gateway's user write access");
            ok = false;
        }

        return file;
    }

    // A probe file, because permission bits do not tell (ACLs, read-only mounts, root).
    private static bool IsWritable(string directory)
    {
        try
        {
            using var probe = new FileStream(System.IO.Path.Combine(directory, $".portcullis-probe-{Guid.NewGuid():N}"), FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose);
            return true;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    // The route's path pattern: its template, or its prefix with the rest as a catch-all.
    private static FrozenDictionary<string, string> Templates(IReadOnlyList<RouteOptions> routes)
    {
        var templates = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var route in routes)
        {
            if (string.IsNullOrEmpty(route.Name)) continue;
            var match = route.Match;
            templates[route.Name] = match.Path ?? (match.PathPrefix is { } prefix ? prefix.TrimEnd('/') + "/{**rest}" : "/{**rest}");
        }

        return templates.ToFrozenDictionary(StringComparer.Ordinal);
    }
}
