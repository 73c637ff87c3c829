using System.Buffers;
using Portcullis.Configuration;

namespace Portcullis.Analytics;

/// <summary>What the hourly Parquet export needs, compiled from `analytics` (read at start).</summary>
/// <param name="Path">The export folder, absolute.</param>
/// <param name="Instance">This instance's partition segment (instance=ID), a safe path segment.</param>
/// <param name="FlushInterval">analytics.flushInterval: rows of a minute reach the store at most this late.</param>
/// <param name="Retention">analytics.retention: hours older than this are gone from the store, so never caught up.</param>
internal sealed record ParquetExportSettings(string Path, string Instance, TimeSpan FlushInterval, TimeSpan Retention)
{
    /// <summary>Time after the flush interval for rows still in flight (a request that ends after the hour, a slow flush).</summary>
    public static readonly TimeSpan Grace = TimeSpan.FromMinutes(1);

    /// <summary>An hour is closed (exported) once now ≥ its end + this.</summary>
    public TimeSpan CloseDelay => FlushInterval + Grace;

    /// <summary>How often a failing export (unwritable folder, store error) is retried.</summary>
    public TimeSpan RetryInterval { get; init; } = TimeSpan.FromSeconds(30);
}

/// <summary>
/// Validation and compilation of `analytics.export` and `analytics.fleetPath` (the store's compiler calls
/// these two; everything else under `analytics` is validated there).
/// </summary>
internal static class ParquetExportCompiler
{
    private const int MaxInstanceLength = 63;

    // The fleet path goes into a DuckDB glob with hive partitioning: glob characters would change which
    // files match, and a key=value segment would become a column.
    internal static readonly SearchValues<char> FleetPathRefused = SearchValues.Create("*?[]{}=");

    /// <summary>
    /// The export settings, or null when `analytics.export` is absent or wrong (errors reported at its keys).
    /// <paramref name="hostName"/> is the default instance id (tests pass their own).
    /// </summary>
    public static ParquetExportSettings? Compile(CompileContext context, AnalyticsOptions analytics, string? hostName = null)
    {
        const string at = "analytics.export";
        if (analytics.Export is not { } export) return null;

        var ok = true;
        if (string.IsNullOrWhiteSpace(analytics.Path))
        {
            context.Error(at, "analytics.export needs analytics.path: the export copies closed hours from the store", "add analytics.path: data/analytics.duckdb");
            ok = false;
        }

        string? folder = null;
        if (string.IsNullOrWhiteSpace(export.Path))
        {
            context.Error(context.Loaded.Locations.Has(at + ".path") ? at + ".path" : at, "export.path cannot be empty", "e.g. path: /shared/portcullis-analytics (a shared volume or bucket mount), or remove export to turn it off");
            ok = false;
        }
        else
        {
            folder = context.Loaded.Resolve(export.Path);
            if (File.Exists(folder))
            {
                context.Error(at + ".path", $"'{export.Path}' is a file ({folder})", "name a folder; it is created if missing");
                ok = false;
            }
        }

        var instance = export.Instance ?? hostName ?? Environment.MachineName;
        if (!IsSafeSegment(instance))
        {
            var explicitly = export.Instance is not null;
            context.Error(explicitly ? at + ".instance" : at,
                explicitly ? $"instance '{export.Instance}' is not a safe path segment" : $"the host name '{instance}' is not a safe path segment for the default instance id",
                "use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit, unique per instance, e.g. instance: gw-1");
            ok = false;
        }

        return ok && folder is not null ? new ParquetExportSettings(folder, instance, analytics.FlushInterval, analytics.Retention) : null;
    }

    /// <summary>The fleet folder, absolute; null when `analytics.fleetPath` is absent or wrong (error reported).</summary>
    public static string? CompileFleetPath(CompileContext context, AnalyticsOptions analytics)
    {
        const string at = "analytics.fleetPath";
        if (analytics.FleetPath is null) return null;
        if (string.IsNullOrWhiteSpace(analytics.FleetPath))
        {
            context.Error(at, "fleetPath cannot be empty", "name the folder the fleet exports to (analytics.export.path of every instance), or remove fleetPath");
            return null;
        }

        var folder = context.Loaded.Resolve(analytics.FleetPath);
        var refused = folder.AsSpan().IndexOfAny(FleetPathRefused);
        if (refused >= 0)
        {
            context.Error(at, $"fleetPath cannot contain '{folder[refused]}' ({folder})", "the folder is read with a glob and key=value partitions; rename or link the folder");
            return null;
        }

        if (File.Exists(folder))
        {
            context.Error(at, $"'{analytics.FleetPath}' is a file ({folder})", "name the folder the fleet exports to");
            return null;
        }

        return folder;
    }

    /// <summary>A partition value that is one plain path segment: no separators, no '=', no '..', not hidden.</summary>
    public static bool IsSafeSegment(string value)
    {
        if (value.Length is 0 or > MaxInstanceLength || !char.IsAsciiLetterOrDigit(value[0])) return false;
        foreach (var c in value)
        {
            if (!char.IsAsciiLetterOrDigit(c) && c is not ('.' or '_' or '-')) return false;
        }

        return true;
    }
}
