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
    public static KeyHistory Merge(string key, IReadOnlyList<KeyHistory> parts)
    {
        if (parts.Count == 1 && parts[0].Key == key) return parts[0];
        var sums = new SortedDictionary<long, int>();
        long limited = 0, total = 0;
        foreach (var part in parts)
        {
            for (var i = 0; i < part.Seconds.Length; i++) sums[part.Seconds[i]] = sums.GetValueOrDefault(part.Seconds[i]) + part.Counts[i];
            limited += part.Limited;
            total += part.Total;
        }

        return new KeyHistory { Key = key, Group = parts.Count > 0 ? parts[0].Group : null, Seconds = [.. sums.Keys], Counts = [.. sums.Values], Limited = limited, Total = total };
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

/// <summary>Reads the `arrivals` table (<see cref="AnalyticsSchema.CreateArrivals"/>) of a window into per-route, per-key histories.</summary>
internal static class RateLimitHistory
{
    public static Dictionary<string, RouteHistory> Load(DuckDBConnection connection, DateTime from, DateTime to, CancellationToken cancellation)
    {
        var routes = new Dictionary<string, RouteHistory>(StringComparer.Ordinal);
        if (!HasArrivals(connection)) return routes;

        // A minute flushed twice has two rows: the seconds are summed per key.
        using (var command = connection.CreateCommand())
        {
            command.CommandText = """
                SELECT route, rate_key, any_value(consumer_group) AS consumer_group, minute_s + s AS second,
                       CAST(sum(n) AS BIGINT) AS n, CAST(sum(CASE WHEN limited THEN n ELSE 0 END) AS BIGINT) AS refused
                FROM (SELECT route, rate_key, consumer_group, limited, CAST(epoch(minute) AS BIGINT) AS minute_s,
                             unnest(seconds) AS s, unnest(counts) AS n
                      FROM arrivals WHERE minute >= $from AND minute < $to)
                GROUP BY route, rate_key, second
                ORDER BY route, rate_key, second
                """;
            command.Parameters.Add(new DuckDBParameter("from", from));
            command.Parameters.Add(new DuckDBParameter("to", to));
            using var reader = command.ExecuteReader();
            string? route = null, key = null, group = null;
            var seconds = new List<long>();
            var counts = new List<int>();
            long limited = 0, total = 0;
            void Close()
            {
                if (key is null) return;
                if (!routes.TryGetValue(route!, out var history)) routes[route!] = history = new RouteHistory { Route = route! };
                history.Keys.Add(new KeyHistory { Key = key, Group = group, Seconds = [.. seconds], Counts = [.. counts], Limited = limited, Total = total });
                seconds.Clear();
                counts.Clear();
                limited = total = 0;
            }

            while (reader.Read())
            {
                cancellation.ThrowIfCancellationRequested();
                var r = reader.GetString(0);
                var k = reader.GetString(1);
                if (r != route || k != key)
                {
                    Close();
                    route = r;
                    key = k;
                    group = reader.IsDBNull(2) ? null : reader.GetString(2);
                }

                var n = (int)Math.Min(int.MaxValue, reader.GetInt64(4));
                seconds.Add(reader.GetInt64(3));
                counts.Add(n);
                total += n;
                limited += reader.GetInt64(5);
            }

            Close();
        }

        using (var command = connection.CreateCommand())
        {
            command.CommandText = """
                SELECT route, key_missing, CAST(sum(requests) AS BIGINT) FROM arrivals
                WHERE minute >= $from AND minute < $to AND key_missing IS NOT NULL GROUP BY route, key_missing
                """;
            command.Parameters.Add(new DuckDBParameter("from", from));
            command.Parameters.Add(new DuckDBParameter("to", to));
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                if (!routes.TryGetValue(reader.GetString(0), out var history)) continue;
                var requests = reader.GetInt64(2);
                foreach (var label in reader.GetString(1).Split(", ", StringSplitOptions.RemoveEmptyEntries))
                {
                    history.Missing[label] = history.Missing.GetValueOrDefault(label) + requests;
                }
            }
        }

        return routes;
    }

    // A fleet folder (or a store written before the table existed) has no arrivals relation.
    private static bool HasArrivals(DuckDBConnection connection)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'arrivals' AND database_name = current_database()";
        return Convert.ToInt64(command.ExecuteScalar()) > 0;
    }
}
