using System.Globalization;
using DuckDB.NET.Data;
using Portcullis.Configuration;

namespace Portcullis.Advice;

/// <summary>
/// Robust statistics of the unusual-routes-and-callers checks: median, MAD and the robust z-score. The median and
/// the median absolute deviation ignore up to half of the values, so one past incident in the baseline (or a
/// heavy tail of busy minutes) neither moves the baseline nor widens it the way a mean and a standard deviation do.
/// </summary>
internal static class RobustStats
{
    /// <summary>1.4826·MAD estimates the standard deviation of normally distributed values.</summary>
    public const double MadScale = 1.4826;

    public static double Median(IReadOnlyList<double> values)
    {
        if (values.Count == 0) return 0;
        var sorted = values.ToArray();
        Array.Sort(sorted);
        var mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }

    public static double Mad(IReadOnlyList<double> values, double median)
    {
        if (values.Count == 0) return 0;
        var deviations = new double[values.Count];
        for (var i = 0; i < deviations.Length; i++) deviations[i] = Math.Abs(values[i] - median);
        return Median(deviations);
    }

    public static double Quantile(IReadOnlyList<double> values, double q)
    {
        if (values.Count == 0) return 0;
        var sorted = values.ToArray();
        Array.Sort(sorted);
        var position = q * (sorted.Length - 1);
        var low = (int)Math.Floor(position);
        var high = Math.Min(low + 1, sorted.Length - 1);
        return sorted[low] + ((sorted[high] - sorted[low]) * (position - low));
    }

    /// <summary>|x − median| / scale; scale is floored by the caller (a MAD of 0 would make any change infinite).</summary>
    public static double Z(double value, double median, double scale) => scale <= 0 ? double.PositiveInfinity : Math.Abs(value - median) / scale;
}

/// <summary>
/// A per-minute baseline of one series (a route's request rate, …): the level, the spread and where they came
/// from. Seasonal when at least <see cref="MinSeasonalDays"/> past days have the same hour of day (traffic at
/// 14:00 is compared with 14:00 of past days, not with the night); else the recent hours' minutes.
/// </summary>
internal sealed record Baseline(double Median, double Scale, bool Seasonal, int Days, int Minutes)
{
    public const int MinSeasonalDays = 3;

    /// <param name="seasonal">Per-minute rate of the same hour of day on each past day that has data.</param>
    /// <param name="recent">Per-minute values of the recent hours (zeros included).</param>
    public static Baseline Of(IReadOnlyList<double> seasonal, IReadOnlyList<double> recent)
    {
        var recentMedian = RobustStats.Median(recent);
        var recentScale = RobustStats.MadScale * RobustStats.Mad(recent, recentMedian);
        if (seasonal.Count >= MinSeasonalDays)
        {
            var median = RobustStats.Median(seasonal);
            // Minute-level noise (from the recent minutes) is wider than the spread of hourly means across days.
            var scale = Math.Max(RobustStats.MadScale * RobustStats.Mad(seasonal, median), recentScale);
            return new(median, Floor(scale, median), true, seasonal.Count, recent.Count);
        }

        return new(recentMedian, Floor(recentScale, recentMedian), false, seasonal.Count, recent.Count);
    }

    // Counts are at least Poisson-noisy: sqrt(mean), and never below 1 request a minute.
    private static double Floor(double scale, double median) => Math.Max(Math.Max(scale, Math.Sqrt(Math.Max(median, 0))), 1);

    public string Describe() => Seasonal
        ? string.Create(CultureInfo.InvariantCulture, $"same hour of day on {Days} past days (median/MAD), minute noise from the last {Minutes} minutes")
        : string.Create(CultureInfo.InvariantCulture, $"median/MAD of the last {Minutes} minutes (fewer than {MinSeasonalDays} past days at this hour)");
}

/// <summary>The windows one anomaly run looks at, all derived from the run's Now and the options.</summary>
internal sealed class AnomalyWindows
{
    public AnomalyWindows(AdviceContext context)
    {
        var options = context.Settings.Anomalies;
        Now = context.Now;
        var minute = Floor(Now, TimeSpan.FromMinutes(1));
        var minutes = Math.Max(1, (int)Math.Ceiling(options.DetectionWindow.TotalMinutes));

        // The last complete minute(s) and the current partial one; the store lags by up to one flush interval,
        // so the rate is over the time it can hold (never less than 30 s).
        RecentStart = minute.AddMinutes(-(minutes - 1));
        var lag = context.Snapshot.Analytics?.FlushInterval ?? TimeSpan.FromSeconds(5);
        var covered = Now - lag - RecentStart;
        RecentMinutes = Math.Max(covered.TotalMinutes, 0.5);
        // Past analytics.compaction.hourlyAfter rows are per hour: per-minute baselines stop an hour short of it.
        MinuteRowsStart = Floor(Now - (context.Snapshot.Analytics?.HourlyAfter ?? TimeSpan.FromHours(48)) + TimeSpan.FromHours(1), TimeSpan.FromHours(1));
        var baselineStart = RecentStart - options.RecentBaseline;
        BaselineStart = baselineStart > MinuteRowsStart ? baselineStart : MinuteRowsStart;
        WindowStart = context.WindowStart;
    }

    public DateTime Now { get; }

    /// <summary>Start of the detection window (a whole minute).</summary>
    public DateTime RecentStart { get; }

    /// <summary>The detection window's length in minutes the store can hold (rates are per minute over this).</summary>
    public double RecentMinutes { get; }

    /// <summary>From here on the store holds minute rows (older ones may be compacted to hours).</summary>
    public DateTime MinuteRowsStart { get; }

    /// <summary>Start of the recent-hours baseline; it ends at <see cref="RecentStart"/>.</summary>
    public DateTime BaselineStart { get; }

    public DateTime WindowStart { get; }

    /// <summary>The same hour of day as Now on each of the past days within the window (hour rows or minute rows alike).</summary>
    public IEnumerable<(DateTime From, DateTime To)> SeasonalHours()
    {
        var hour = Floor(RecentStart, TimeSpan.FromHours(1));
        for (var day = 1; day <= 7; day++)
        {
            var from = hour.AddDays(-day);
            if (from < WindowStart) yield break;
            yield return (from, from.AddHours(1));
        }
    }

    public static DateTime Floor(DateTime t, TimeSpan unit) => new(t.Ticks - (t.Ticks % unit.Ticks), DateTimeKind.Utc);
}

/// <summary>Small helpers over the store for the anomaly detectors.</summary>
internal static class AnomalyStore
{
    /// <summary>The earliest rollup minute in the store (null when it is empty): history before it is "no data", not zero.</summary>
    public static DateTime? FirstMinute(DuckDBConnection connection, DateTime since)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT min(minute) FROM rollups WHERE minute >= $since";
        command.Parameters.Add(new DuckDBParameter("since", since));
        var value = command.ExecuteScalar();
        return value is DateTime t ? DateTime.SpecifyKind(t, DateTimeKind.Utc) : null;
    }

    public static DuckDBCommand Command(DuckDBConnection connection, string sql, params (string Name, object? Value)[] parameters)
    {
        var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters) command.Parameters.Add(new DuckDBParameter(name, value));
        return command;
    }

    public static DateTime Utc(object value) => DateTime.SpecifyKind((DateTime)value, DateTimeKind.Utc);

    public static string? NullableString(System.Data.Common.DbDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : reader.GetString(ordinal);

    /// <summary>How sure a baseline-backed finding is, from how much history it rests on.</summary>
    public static FindingConfidence ConfidenceOf(TimeSpan history) =>
        history >= TimeSpan.FromDays(3) ? FindingConfidence.High : history >= TimeSpan.FromHours(6) ? FindingConfidence.Medium : FindingConfidence.Low;

    public static string Span(TimeSpan span) => span.TotalDays >= 1
        ? string.Create(CultureInfo.InvariantCulture, $"{span.TotalDays:0.#} days")
        : span.TotalHours >= 1 ? string.Create(CultureInfo.InvariantCulture, $"{span.TotalHours:0.#} h") : string.Create(CultureInfo.InvariantCulture, $"{span.TotalMinutes:0} min");

    public static string N(double value) => value.ToString(Math.Abs(value) >= 100 ? "#,0" : "0.##", CultureInfo.InvariantCulture);

    /// <summary>Whether the options turn the checks on and a store is there to read.</summary>
    public static bool Runs(AdviceContext context) => context.Settings.Anomalies.Enabled && context.Analytics is not null;

    internal static AdviceAnomalyOptions Options(AdviceContext context) => context.Settings.Anomalies;
}
