using DuckDB.NET.Data;

namespace Portcullis.Analytics;

/// <summary>Rows in the column order of <see cref="AnalyticsSchema"/> (the Appender appends by position).</summary>
internal static class AnalyticsRows
{
    public static void AppendRollup(DuckDBAppender appender, in RollupKey key, RollupCell cell)
    {
        var (latencyBuckets, latencyCounts) = cell.Latency.ToSparse();
        var (upstreamBuckets, upstreamCounts) = cell.Upstream.ToSparse();
        appender.CreateRow()
            .AppendValue(new DateTime(key.MinuteTicks, DateTimeKind.Utc))
            .AppendValue(key.Route)
            .AppendValue(key.Cluster)
            .AppendValue(key.Consumer)
            .AppendValue(key.ConsumerGroup)
            .AppendValue(key.Status)
            .AppendValue(key.Reason)
            .AppendValue(cell.Requests)
            .AppendValue(cell.BytesIn)
            .AppendValue(cell.BytesOut)
            .AppendValue(cell.LatencySum)
            .AppendValue(cell.UpstreamSum)
            .AppendValue(latencyBuckets)
            .AppendValue(latencyCounts)
            .AppendValue(upstreamBuckets)
            .AppendValue(upstreamCounts)
            .EndRow();
    }

    public static void AppendSample(DuckDBAppender appender, in AnalyticsSample sample)
    {
        appender.CreateRow()
            .AppendValue(sample.Time.UtcDateTime)
            .AppendValue(sample.RequestId)
            .AppendValue(sample.TraceId == default ? null : sample.TraceId.ToHexString())
            .AppendValue(sample.Route)
            .AppendValue(sample.Cluster)
            .AppendValue(sample.Consumer)
            .AppendValue(sample.ConsumerGroup)
            .AppendValue(sample.Client)
            .AppendValue(sample.Method)
            .AppendValue(sample.Host)
            .AppendValue(sample.Path)
            .AppendValue(sample.Status)
            .AppendValue(sample.Reason)
            .AppendValue(sample.Auth)
            .AppendValue(sample.Traffic)
            .AppendValue((sbyte)Math.Clamp(sample.Attempts, 0, sbyte.MaxValue))
            .AppendValue(sample.BytesIn)
            .AppendValue(sample.BytesOut)
            .AppendValue(sample.LatencyUs)
            .AppendValue(sample.UpstreamUs < 0 ? null : (long?)sample.UpstreamUs)
            .EndRow();
    }
}
