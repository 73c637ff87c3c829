using Portcullis.Configuration;

namespace Portcullis.Advice;

/// <summary>Per-key peaks of one population of keys (a route, or a consumer group on it).</summary>
internal sealed record PeakStats(int Keys, long Requests, double SecondP50, double SecondP95, double SecondP99, double SecondMax, double MinuteP50, double MinuteP95, double MinuteP99, double MinuteMax)
{
    public static PeakStats Of(IReadOnlyCollection<KeyHistory> keys)
    {
        var seconds = keys.Select(k => (double)k.PeakSecond).Order().ToList();
        var minutes = keys.Select(k => (double)k.PeakIn(60)).Order().ToList();
        return new PeakStats(keys.Count, keys.Sum(k => k.Total),
            Percentiles.Of(seconds, 0.5), Percentiles.Of(seconds, 0.95), Percentiles.Of(seconds, 0.99), seconds.Count == 0 ? 0 : seconds[^1],
            Percentiles.Of(minutes, 0.5), Percentiles.Of(minutes, 0.95), Percentiles.Of(minutes, 0.99), minutes.Count == 0 ? 0 : minutes[^1]);
    }
}

/// <summary>
/// Learning a limit from history: which keys are legitimate, and the tightest policy that would have refused at
/// most the target share of their requests (docs/advisor.md#rate-limit-suggestions).
/// </summary>
internal static class RateLimitFit
{
    /// <summary>Fewer keys than this: no robust spread, so no key is set aside as abusive.</summary>
    public const int MinKeysForOutliers = 5;

    /// <summary>An abusive key's peak is beyond this many robust standard deviations (1.4826 × MAD) of the keys' log peaks …</summary>
    public const double OutlierSpread = 3.5;

    /// <summary>… and at least this many times the median key's peak.</summary>
    public const double OutlierRatio = 4;

    private static readonly long[] Ladder =
    [
        1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 120, 150, 200, 250, 300, 400, 500, 600, 800,
        1_000, 1_200, 1_500, 2_000, 2_500, 3_000, 4_000, 5_000, 6_000, 8_000, 10_000, 15_000, 20_000, 30_000, 50_000, 100_000,
    ];

    private static readonly double[] BurstFactors = [1, 1.5, 2, 3, 5, 10];

    /// <summary>
    /// Keys whose per-second or per-minute peak is an outlier among the keys: in log space (per-key rates are
    /// heavy-tailed, so spread is multiplicative) more than <see cref="OutlierSpread"/> robust standard deviations
    /// above the median and at least <see cref="OutlierRatio"/> times the median peak. Empty under
    /// <see cref="MinKeysForOutliers"/> keys.
    /// </summary>
    public static HashSet<string> Abusive(IReadOnlyList<KeyHistory> keys)
    {
        var abusive = new HashSet<string>(StringComparer.Ordinal);
        if (keys.Count < MinKeysForOutliers) return abusive;
        foreach (var measure in (Func<KeyHistory, double>[])[k => k.PeakSecond, k => k.PeakIn(60)])
        {
            var logs = keys.Select(k => Math.Log(Math.Max(1, measure(k)))).Order().ToList();
            var median = Percentiles.Median(logs);
            var spread = 1.4826 * Percentiles.Median(logs.Select(l => Math.Abs(l - median)).Order().ToList());
            var threshold = median + Math.Max(Math.Log(OutlierRatio), OutlierSpread * spread);
            foreach (var key in keys)
            {
                if (Math.Log(Math.Max(1, measure(key))) > threshold) abusive.Add(key.Key);
            }
        }

        return abusive;
    }

    /// <summary>
    /// The policy with the lowest per-minute ceiling (burst plus a minute's refill: what one key can get through
    /// in a minute) among those that refuse at most <paramref name="targetShare"/> of <paramref name="legitimate"/>'s
    /// requests when replayed: token buckets (limit per 1m below one a second, else per 1s, burst 1–10 × limit) and
    /// sliding windows (per 1s and per 1m), limits on a ladder of round numbers. Null when nothing on the ladder fits.
    /// </summary>
    public static RatePolicy? Suggest(IReadOnlyList<KeyHistory> legitimate, double targetShare, RateLimitAlgorithm? only = null, TimeSpan? per = null)
    {
        var total = legitimate.Sum(k => k.Total);
        var allowed = (long)Math.Floor(targetShare * total);
        RatePolicy? best = null;
        foreach (var sequence in Candidates(only, per))
        {
            // Refusals only fall as the limit (and the burst with it) grows: binary search the first that fits.
            int low = 0, high = sequence.Count - 1, found = -1;
            while (low <= high)
            {
                var mid = (low + high) / 2;
                if (RateLimitReplay.Fits(legitimate, sequence[mid], allowed))
                {
                    found = mid;
                    high = mid - 1;
                }
                else
                {
                    low = mid + 1;
                }
            }

            if (found < 0) continue;
            var candidate = sequence[found];
            if (best is null || candidate.PerMinuteCeiling < best.PerMinuteCeiling - 1e-9) best = candidate;
        }

        return best;
    }

    private static IEnumerable<List<RatePolicy>> Candidates(RateLimitAlgorithm? only, TimeSpan? fixedPer)
    {
        var second = TimeSpan.FromSeconds(1);
        var minute = TimeSpan.FromMinutes(1);
        if (only is null or RateLimitAlgorithm.TokenBucket)
        {
            foreach (var factor in BurstFactors)
            {
                // Below one a second the limit is per minute; from one a second, per second.
                var rates = fixedPer is { } p
                    ? Ladder.Select(l => (Limit: l, Per: p))
                    : Ladder.Where(l => l < 60).Select(l => (Limit: l, Per: minute)).Concat(Ladder.Select(l => (Limit: l, Per: second)));
                yield return [.. rates.Select(r => new RatePolicy(RateLimitAlgorithm.TokenBucket, r.Limit, r.Per, (long)Math.Ceiling(r.Limit * factor)))];
            }
        }

        if (only is null or RateLimitAlgorithm.SlidingWindow)
        {
            foreach (var p in fixedPer is { } f ? [f] : (TimeSpan[])[second, minute])
            {
                // The in-process store packs a window's count: at most 2,097,150 (TrafficCompiler refuses more).
                yield return [.. Ladder.Where(l => l <= 2_097_150).Select(l => new RatePolicy(RateLimitAlgorithm.SlidingWindow, l, p, null))];
            }
        }

        if (only is RateLimitAlgorithm.SpikeArrest)
        {
            yield return [.. Ladder.Select(l => new RatePolicy(RateLimitAlgorithm.SpikeArrest, l, fixedPer ?? second, null))];
        }
    }
}
