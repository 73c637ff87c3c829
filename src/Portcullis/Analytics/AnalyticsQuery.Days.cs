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
        if (ConsumerSketches(p))
        {
            return AnalyticsDaySummaries.Covered(connection, p.From, p.To, consumers: true) is { } consumerDays
                ? new DayCover(consumerDays.From, consumerDays.To, AnalyticsDaySummaries.ConsumerGrain) : null;
        }

        var dimensions = p.Filters.Select(f => Column(f.Column)).ToList();
        if (p.GroupBy is { } group) dimensions.Add(Column(group));
        if (AnalyticsDaySummaries.GrainFor(dimensions) is not { } grain) return null;
        return AnalyticsDaySummaries.Covered(connection, p.From, p.To) is { } days ? new DayCover(days.From, days.To, grain) : null;
    }

    /// <summary>
    /// Top by consumer ordered by p99 with no filter but the consumer: the only query that needs every consumer's
    /// merged sketch; its sketches are read from consumer_days (<see cref="AnalyticsDaySummaries"/>), its counters from rollups.
    /// </summary>
    private static bool ConsumerSketches(AnalyticsQueryParameters p) =>
        p is { Kind: AnalyticsQueryKind.Top, GroupBy: AnalyticsGroup.Consumer, OrderBy: AnalyticsOrder.P99, Status: null, MinStatus: null }
        && p.Filters.All(f => f.Column == AnalyticsGroup.Consumer);

    /// <summary>The cover for the query's counters: consumer_days has none, so with its cover every row of rollups.</summary>
    private static DayCover? Counters(DayCover? cover) => cover?.Grain == AnalyticsDaySummaries.ConsumerGrain ? null : cover;

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

        if (cover.Grain == AnalyticsDaySummaries.ConsumerGrain)
        {
            // Only the columns a consumer's sketch query reads (the window and the consumer filter, the latency lists).
            const string columns = "minute, consumer, latency_buckets, latency_counts";
            return $"""
                (SELECT {columns} FROM rollups WHERE minute < $days_from
                 UNION ALL SELECT {columns} FROM rollups WHERE minute >= $days_to
                 UNION ALL SELECT {columns} FROM consumer_days WHERE minute >= $days_from AND minute < $days_to) AS rollups
                """;
        }

        // The grain is 0..3 from AnalyticsDaySummaries.Grains, never a caller's value.
        return $"""
            (SELECT {RollupColumns} FROM rollups WHERE minute < $days_from
             UNION ALL SELECT {RollupColumns} FROM rollups WHERE minute >= $days_to
             UNION ALL SELECT {RollupColumns} FROM rollup_days WHERE grain = {cover.Grain} AND minute >= $days_from AND minute < $days_to) AS rollups
            """;
    }
}
