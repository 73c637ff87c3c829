using Portcullis.Analytics;
using Portcullis.Configuration;
using Portcullis.Traffic;

namespace Portcullis.Tests.Advice;

/// <summary>
/// Generated arrivals, written into a real DuckDB store through the Appender as the flusher writes them (each
/// minute in two rows, as two flushes would), and kept in memory so a test can replay them independently.
/// </summary>
internal sealed class ArrivalData
{
    private readonly Dictionary<(string Route, string Key, string? Group, bool Limited, string? Missing, long Minute), int[]> _rows = [];

    public long Requests { get; private set; }

    public void Add(string route, string key, long unixSecond, int count, string? group = null, bool limited = false, string? missing = null)
    {
        if (count <= 0) return;
        var minute = unixSecond - (unixSecond % 60);
        var row = (route, key, group, limited, missing, minute);
        if (!_rows.TryGetValue(row, out var seconds)) _rows[row] = seconds = new int[60];
        seconds[unixSecond - minute] += count;
        Requests += count;
    }

    /// <summary>A key's requests per second (limited or not), ascending.</summary>
    public SortedDictionary<long, int> SecondsOf(string route, string key)
    {
        var result = new SortedDictionary<long, int>();
        foreach (var ((r, k, _, _, _, minute), seconds) in _rows)
        {
            if (r != route || k != key) continue;
            for (var s = 0; s < 60; s++)
            {
                if (seconds[s] > 0) result[minute + s] = result.GetValueOrDefault(minute + s) + seconds[s];
            }
        }

        return result;
    }

    public IEnumerable<string> KeysOf(string route) => _rows.Keys.Where(r => r.Route == route).Select(r => r.Key).Distinct();

    public void WriteTo(AnalyticsDatabase database)
    {
        using var connection = database.OpenConnection();
        foreach (var half in (int[])[0, 30])
        {
            using var appender = connection.CreateAppender(AnalyticsSchema.Arrivals);
            foreach (var ((route, key, group, limited, missing, minute), seconds) in _rows)
            {
                var cell = new ArrivalCell();
                for (var s = half; s < half + 30; s++) cell.Seconds[s] = seconds[s];
                if (cell.Seconds.All(c => c == 0)) continue;
                ArrivalTables.Append(appender, new ArrivalKey(DateTimeOffset.FromUnixTimeSeconds(minute).UtcTicks, route, key, group, limited, missing), cell);
            }
        }
    }

    /// <summary>
    /// An independent replay (not the advisor's): each second's requests at i/n s through RateLimitMath with the
    /// compiled policy's constants. Returns the refused requests, and those among seconds in <paramref name="within"/>.
    /// </summary>
    public static (long Refused, long RefusedWithin, long Within) Replay(SortedDictionary<long, int> seconds, CompiledRateLimit policy, Func<long, bool>? within = null)
    {
        long tat = 0, window = 0, previous = 0, current = 0, refused = 0, refusedWithin = 0, inside = 0;
        foreach (var (second, count) in seconds)
        {
            for (var i = 0; i < count; i++)
            {
                var now = (second * TimeSpan.TicksPerSecond) + (i * TimeSpan.TicksPerSecond / count);
                var decision = policy.Algorithm == RateLimitAlgorithm.SlidingWindow
                    ? RateLimitMath.SlidingWindow(window, previous, current, now, policy.Per.Ticks, policy.Limit, out window, out previous, out current)
                    : RateLimitMath.Gcra(tat, now, policy.EmissionTicks, policy.Capacity, policy.Limit, out tat);
                var limited = decision.Outcome == RateOutcome.Limited;
                if (limited) refused++;
                if (within?.Invoke(second) == true)
                {
                    inside++;
                    if (limited) refusedWithin++;
                }
            }
        }

        return (refused, refusedWithin, inside);
    }

    /// <summary>Poisson-distributed count (Knuth; small means only).</summary>
    public static int Poisson(Random random, double mean)
    {
        var limit = Math.Exp(-mean);
        var k = 0;
        var p = random.NextDouble();
        while (p > limit)
        {
            k++;
            p *= random.NextDouble();
        }

        return k;
    }

    /// <summary>
    /// Legitimate callers of one route over <paramref name="minutes"/>: each caller active in a minute with a diurnal
    /// probability, then in ~30 % of its seconds sending Poisson(rate) requests; per-caller rates log-normal.
    /// </summary>
    public void Legitimate(Random random, string route, long startSecond, int minutes, int callers, double rate, string keyPrefix = "c", string[]? groups = null, string? missing = null)
    {
        for (var c = 0; c < callers; c++)
        {
            var group = groups?[c % groups.Length];
            var scale = Math.Exp(random.NextDouble() * 0.8 - 0.4) * (group == "gold" ? 1.5 : 1);
            var key = keyPrefix + c.ToString(System.Globalization.CultureInfo.InvariantCulture);
            for (var m = 0; m < minutes; m++)
            {
                var diurnal = 0.5 + (0.5 * Math.Sin(2 * Math.PI * m / 1440));
                if (random.NextDouble() > 0.2 * diurnal) continue;
                for (var s = 0; s < 60; s++)
                {
                    if (random.NextDouble() > 0.3) continue;
                    Add(route, key, startSecond + (m * 60L) + s, Math.Max(1, Poisson(random, rate * scale)), group, missing: missing);
                }
            }
        }
    }
}
