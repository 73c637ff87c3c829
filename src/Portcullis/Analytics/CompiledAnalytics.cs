using System.Collections.Frozen;

namespace Portcullis.Analytics;

/// <summary>The `analytics` section as the store runs it (compiled once per snapshot by <see cref="AnalyticsCompiler"/>).</summary>
internal sealed record CompiledAnalytics
{
    /// <summary>The DuckDB file (absolute). Read at start: a change needs a restart.</summary>
    public required string Path { get; init; }

    public required TimeSpan FlushInterval { get; init; }

    public required TimeSpan Retention { get; init; }

    /// <summary>Bytes.</summary>
    public required long MaxSize { get; init; }

    /// <summary>Minute rows older than this are merged per hour (AnalyticsCompaction).</summary>
    public TimeSpan HourlyAfter { get; init; } = TimeSpan.FromHours(48);

    /// <summary>Rows older than this are merged per day.</summary>
    public TimeSpan DailyAfter { get; init; } = TimeSpan.FromDays(7);

    /// <summary>How long the advisor's per-second arrivals are kept: advice.window (at most the retention); zero with the advisor off.</summary>
    public TimeSpan ArrivalRetention { get; init; }

    public required double SuccessRate { get; init; }

    /// <summary>Read at start: the sample queue is sized once.</summary>
    public required int QueueSize { get; init; }

    public required bool RawPaths { get; init; }

    /// <summary>Folder of the hourly Parquet export (absolute); null without export.</summary>
    public string? ExportPath { get; init; }

    public string? ExportInstance { get; init; }

    /// <summary>A fleet's export folder (absolute) the query API, dashboard and CLI read instead of this store; null without it.</summary>
    public string? FleetPath { get; init; }

    /// <summary>Route name → its path template (what samples store instead of the raw path).</summary>
    public FrozenDictionary<string, string> RouteTemplates { get; init; } = FrozenDictionary<string, string>.Empty;
}
