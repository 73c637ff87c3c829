using System.ComponentModel;

namespace Portcullis.Configuration;

/// <summary>The `analytics` section: every request's decisions kept in an embedded DuckDB store (docs/analytics.md).</summary>
internal sealed record AnalyticsOptions
{
    [Description("The DuckDB file, relative to the config file. Setting it turns analytics on; without it nothing is recorded and nothing costs.")]
    [FilePath]
    public string? Path { get; init; }

    [Description("How often the in-process rollups and queued samples are written to the store in one batch; a crash loses at most this much. Default 5s.")]
    public TimeSpan FlushInterval { get; init; } = TimeSpan.FromSeconds(5);

    [Description("Data older than this is deleted from the store and from this instance's Parquet exports. Default 30d.")]
    public TimeSpan Retention { get; init; } = TimeSpan.FromDays(30);

    [Description("The store file is kept below this size: the oldest data is deleted first. Default 2GiB.")]
    public ByteSize MaxSize { get; init; } = ByteSize.FromGiB(2);

    [Description("Tiered rollups: older rollups are merged to coarser time steps so long-range queries stay fast (totals and percentiles are unchanged).")]
    public AnalyticsCompactionOptions Compaction { get; init; } = new();

    [Description("Which individual requests are kept for drill-down besides the rollups.")]
    public AnalyticsSamplesOptions Samples { get; init; } = new();

    [Description("Write every closed hour as Parquet files for other engines and for the fleet view.")]
    public AnalyticsExportOptions? Export { get; init; }

    [Description("A folder of Parquet exports from many instances (the export paths of a fleet on a shared volume); when set, the query API, dashboard and CLI show the whole fleet from it instead of this instance's store.")]
    [FilePath]
    public string? FleetPath { get; init; }
}

internal sealed record AnalyticsSamplesOptions
{
    [Description("Share of successful (status < 400) requests kept as samples, 0 to 1. Refused and failed requests are always kept. Default 0.01.")]
    public double SuccessRate { get; init; } = 0.01;

    [Description("Samples queued for the background writer; beyond it samples are dropped and counted, requests never wait. Default 10000.")]
    public int QueueSize { get; init; } = 10_000;

    [Description("Keep the raw request path (without the query) instead of the route's path template. Raw paths can hold ids and personal data. Default false.")]
    public bool RawPaths { get; init; }
}

internal sealed record AnalyticsCompactionOptions
{
    [Description("Per-minute rollups older than this are merged into one row per hour. At least 2h. Default 48h.")]
    public TimeSpan HourlyAfter { get; init; } = TimeSpan.FromHours(48);

    [Description("Hourly rollups older than this are merged into one row per day. More than hourlyAfter. Default 7d.")]
    public TimeSpan DailyAfter { get; init; } = TimeSpan.FromDays(7);
}

internal sealed record AnalyticsExportOptions
{
    [Description("Folder the closed hours are written to, as dt=YYYY-MM-DD/hour=HH/instance=ID/{rollups,samples}.parquet; relative to the config file.")]
    [FilePath]
    public string Path { get; init; } = "";

    [Description("This instance's name in the partition path. Default: the host name.")]
    public string? Instance { get; init; }
}
