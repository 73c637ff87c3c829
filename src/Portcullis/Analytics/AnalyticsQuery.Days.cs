using DuckDB.NET.Data;

namespace Portcullis.Analytics;

/// <summary>Which rows a query reads: rollups, or for the whole days the day summaries cover, rollup_days (<see cref="AnalyticsDaySummaries"/>).</summary>
internal static partial class AnalyticsQuery
{
    private const string RollupColumns = "minute, route, cluster, consumer, consumer_group, status, reason, requests, bytes_in, bytes_out, " +
        "latency_us_sum, upstream_us_sum, latency_buckets, latency_counts, upstream_buckets, upstream_counts";

    /// <summary>The days [From, To) read from rollup_days, at grain <paramref name="Grain"/>.</summary>
    internal sealed record DayCover(DateTime From, DateTime To, int Grain);

    /// <summary>
    /// The covered whole days of the query's window when a grain keeps every dimension the query groups or filters
    /// by, and the query does not need finer than a day (a timeseries step of a day: a day's rows share its step).
    /// </summary>
    internal static DayCover? Cover(DuckDBConnection connection, AnalyticsQueryParameters p)
    {
        if (p.Kind == AnalyticsQueryKind.Samples || (p.Kind == AnalyticsQueryKind.Timeseries && p.Step < AnalyticsDaySummaries.Day)) return null;
        var dimensions = p.Filters.Select(f => Column(f.Column)).ToList();
        if (p.GroupBy is { } group) dimensions.Add(Column(group));
        if (AnalyticsDaySummaries.GrainFor(dimensions) is not { } grain) return null;
        return AnalyticsDaySummaries.Covered(connection, p.From, p.To) is { } days ? new DayCover(days.From, days.To, grain) : null;
    }

    /// <summary>
    /// The relation to read as `rollups`: the table, or (with a cover) its rows outside the covered days and the covered
    /// days' summaries at the cover's grain: each a plain time range, so each branch skips row groups by their minute
    /// range. The sums and merged sketches over it are those over rollups (a summary is its day's rows merged).
    /// </summary>
    private static string Rollups(DuckDBCommand command, DayCover? cover)
    {
        if (cover is null) return "rollups";
        if (!command.Parameters.Contains("days_from"))
        {
            command.Parameters.Add(new DuckDBParameter("days_from", cover.From));
            command.Parameters.Add(new DuckDBParameter("days_to", cover.To));
        }

        // The grain is 0..3 from AnalyticsDaySummaries.Grains, never a caller's value.
        return $"""
            (SELECT {RollupColumns} FROM rollups WHERE minute < $days_from
             UNION ALL SELECT {RollupColumns} FROM rollups WHERE minute >= $days_to
             UNION ALL SELECT {RollupColumns} FROM rollup_days WHERE grain = {cover.Grain} AND minute >= $days_from AND minute < $days_to) AS rollups
            """;
    }
}
