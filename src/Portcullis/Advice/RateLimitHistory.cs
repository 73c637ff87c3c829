using DuckDB.NET.Data;
using Portcullis.Analytics;

namespace Portcullis.Advice;

/// <summary>One rate key's arrivals on one route (or merged over what a policy counts together): requests per second, ascending.</summary>
internal sealed class KeyHistory
{
    public required string Key { get; init; }

    public string? Group { get; init; }

    /// <summary>Seconds since the Unix epoch, ascending, each with at least one request.</summary>
    public required long[] Seconds { get; init; }

    public required int[] Counts { get; init; }

    /// <summary>Requests an existing rate limit refused (429 ratelimit.exceeded), included in <see cref="Counts"/>.</summary>
    public long Limited { get; init; }

    public long Total { get; init; }

    public bool Anonymous => Key.StartsWith("ip:", StringComparison.Ordinal);

    /// <summary>The replays kept for this key between runs (<see cref="RateLimitHistoryCache"/>); null: replayed from scratch each time.</summary>
    public KeyReplays? Replays { get; init; }

    /// <summary>Most requests in one second.</summary>
    public int PeakSecond => Counts.Length == 0 ? 0 : Counts.Max();

    /// <summary>Most requests in any span of <paramref name="seconds"/> consecutive seconds (two pointers over the sparse seconds).</summary>
    public long PeakIn(long seconds)
    {
        if (seconds <= 1) return PeakSecond;
        long best = 0, sum = 0;
        var left = 0;
        for (var right = 0; right < Seconds.Length; right++)
        {
            sum += Counts[right];
            while (Seconds[right] - Seconds[left] >= seconds) sum -= Counts[left++];
            best = Math.Max(best, sum);
        }

        return best;
    }

    /// <summary>Several histories as one (what a policy keyed on the route or the group counts together).</summary>
    public static KeyHistory Merge(string key, IReadOnlyList<KeyHistory> parts, KeyReplays? replays = null)
    {
        if (parts.Count == 1 && parts[0].Key == key) return parts[0];
        long[] seconds = [];
        int[] counts = [];
        long limited = 0, total = 0;
        foreach (var part in parts)
        {
            (seconds, counts) = MergeSorted(seconds, counts, part.Seconds, part.Counts);
            limited += part.Limited;
            total += part.Total;
        }

        return new KeyHistory { Key = key, Group = parts.Count > 0 ? parts[0].Group : null, Seconds = seconds, Counts = counts, Limited = limited, Total = total, Replays = replays };
    }

    // Two ascending second lists as one, counts of a second in both summed.
    private static (long[] Seconds, int[] Counts) MergeSorted(long[] aSeconds, int[] aCounts, long[] bSeconds, int[] bCounts)
    {
        if (aSeconds.Length == 0) return (bSeconds, bCounts);
        var seconds = new long[aSeconds.Length + bSeconds.Length];
        var counts = new int[seconds.Length];
        int i = 0, j = 0, n = 0;
        while (i < aSeconds.Length || j < bSeconds.Length)
        {
            if (j == bSeconds.Length || (i < aSeconds.Length && aSeconds[i] < bSeconds[j]))
            {
                (seconds[n], counts[n]) = (aSeconds[i], aCounts[i]);
                i++;
            }
            else if (i == aSeconds.Length || bSeconds[j] < aSeconds[i])
            {
                (seconds[n], counts[n]) = (bSeconds[j], bCounts[j]);
                j++;
            }
            else
            {
                (seconds[n], counts[n]) = (aSeconds[i], aCounts[i] + bCounts[j]);
                i++;
                j++;
            }

            n++;
        }

        return (seconds[..n], counts[..n]);
    }
}

/// <summary>The arrivals of one route over the window, per rate key, and which rate-limit key parts requests lacked.</summary>
internal sealed class RouteHistory
{
    public required string Route { get; init; }

    public List<KeyHistory> Keys { get; } = [];

    /// <summary>"policy part" label → requests that lacked it.</summary>
    public Dictionary<string, long> Missing { get; } = new(StringComparer.Ordinal);

    public long Total => Keys.Sum(k => k.Total);

    public long FirstSecond => Keys.Count == 0 ? 0 : Keys.Min(k => k.Seconds[0]);

    public long LastSecond => Keys.Count == 0 ? 0 : Keys.Max(k => k.Seconds[^1]);

    /// <summary>Span of the data: first to last second with a request.</summary>
    public TimeSpan Span => TimeSpan.FromSeconds(LastSecond - FirstSecond + 1);
}

/// <summary>The `arrivals` table (<see cref="AnalyticsSchema.CreateArrivals"/>): read by <see cref="RateLimitHistoryCache"/>.</summary>
internal static class RateLimitHistory
{
    // A fleet folder (or a store written before the table existed) has no arrivals relation.
    public static bool HasArrivals(DuckDBConnection connection)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'arrivals' AND database_name = current_database()";
        return Convert.ToInt64(command.ExecuteScalar()) > 0;
    }
}
