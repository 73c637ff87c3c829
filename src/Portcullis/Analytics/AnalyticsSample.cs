using System.Diagnostics;

namespace Portcullis.Analytics;

/// <summary>One `samples` row, copied from the request when it completed (strings and values only, never the pooled HttpContext).</summary>
internal readonly record struct AnalyticsSample
{
    public DateTimeOffset Time { get; init; }
    public string RequestId { get; init; }
    public ActivityTraceId TraceId { get; init; }
    public string? Route { get; init; }
    public string? Cluster { get; init; }
    public string? Consumer { get; init; }
    public string? ConsumerGroup { get; init; }
    public string? Client { get; init; }
    public string Method { get; init; }
    public string? Host { get; init; }
    public string Path { get; init; }
    public short Status { get; init; }
    public string? Reason { get; init; }
    public string? Auth { get; init; }
    public string? Traffic { get; init; }
    public int Attempts { get; init; }
    public long BytesIn { get; init; }
    public long BytesOut { get; init; }
    public long LatencyUs { get; init; }

    /// <summary>-1 when not proxied (NULL in the table).</summary>
    public long UpstreamUs { get; init; }
}
