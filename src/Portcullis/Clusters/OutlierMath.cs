using System.Globalization;

namespace Portcullis.Clusters;

/// <summary>Why a destination was ejected as an outlier (log, metric, admin API, health history).</summary>
internal static class OutlierReasons
{
    public const string SuccessRate = "outlier.success-rate";
    public const string FailurePercentage = "outlier.failure-percentage";
    public const string Latency = "outlier.latency";
}

/// <summary>A destination found to be an outlier in one interval; <see cref="Severity"/> orders who goes first.</summary>
internal readonly record struct OutlierVerdict(int Index, string Reason, double Severity, string Detail);

/// <summary>
/// The judgement of one interval, as Envoy's outlier detection does it: pure functions over the interval's
/// per-destination counts, so the rules are tested on synthetic numbers.
/// </summary>
internal static class OutlierMath
{
    /// <summary>
    /// Outliers among <paramref name="samples"/>, at most one verdict per destination (error rules before
    /// latency), worst first: error verdicts by failure share, then latency verdicts by how far above the median.
    /// </summary>
    public static List<OutlierVerdict> FindOutliers(CompiledOutlierDetection settings, ReadOnlySpan<OutlierSample> samples)
    {
        var verdicts = new List<OutlierVerdict>();
        var flagged = new bool[samples.Length];
        if (settings.FailurePercentage is { } fp) FailurePercentage(fp, samples, verdicts, flagged);
        if (settings.SuccessRate is { } sr) SuccessRate(sr, samples, verdicts, flagged);
        var errors = verdicts.Count;
        if (settings.Latency is { } latency) Latency(latency, samples, verdicts, flagged);
        verdicts.Sort(0, errors, Comparer<OutlierVerdict>.Create(static (a, b) => b.Severity.CompareTo(a.Severity)));
        verdicts.Sort(errors, verdicts.Count - errors, Comparer<OutlierVerdict>.Create(static (a, b) => b.Severity.CompareTo(a.Severity)));
        return verdicts;
    }

    /// <summary>
    /// How many more destinations may be ejected now: at most <paramref name="maxEjectionPercent"/> of all of them are
    /// out by passive ejection at once (but one is always allowed, as Envoy does), and never the last usable one.
    /// </summary>
    public static int EjectionBudget(int destinations, int maxEjectionPercent, int ejectedNow, int usable)
    {
        var cap = Math.Max(1, destinations * maxEjectionPercent / 100);
        return Math.Max(0, Math.Min(cap - ejectedNow, usable - 1));
    }

    /// <summary>baseEjectionTime × the ejections in a row (this one included), at most maxEjectionTime.</summary>
    public static TimeSpan EjectionTime(CompiledOutlierDetection settings, int times)
    {
        var time = settings.BaseEjectionTime * Math.Max(1, times);
        return time > settings.MaxEjectionTime ? settings.MaxEjectionTime : time;
    }

    private static void FailurePercentage(CompiledFailurePercentageRule rule, ReadOnlySpan<OutlierSample> samples, List<OutlierVerdict> verdicts, bool[] flagged)
    {
        if (Qualified(samples, rule.MinRequests) < rule.MinDestinations) return;
        for (var i = 0; i < samples.Length; i++)
        {
            var s = samples[i];
            if (s.Requests < rule.MinRequests) continue;
            var percent = 100.0 * s.Failures / s.Requests;
            if (percent >= rule.Threshold)
            {
                flagged[i] = true;
                verdicts.Add(new OutlierVerdict(i, OutlierReasons.FailurePercentage, percent / 100, string.Create(CultureInfo.InvariantCulture, $"{percent:0.#} % of {s.Requests} requests failed (threshold {rule.Threshold} %)")));
            }
        }
    }

    private static void SuccessRate(CompiledSuccessRateRule rule, ReadOnlySpan<OutlierSample> samples, List<OutlierVerdict> verdicts, bool[] flagged)
    {
        var count = Qualified(samples, rule.MinRequests);
        if (count < rule.MinDestinations) return;
        double sum = 0;
        foreach (var s in samples) if (s.Requests >= rule.MinRequests) sum += Rate(s);
        var mean = sum / count;
        double squares = 0;
        foreach (var s in samples) if (s.Requests >= rule.MinRequests) squares += (Rate(s) - mean) * (Rate(s) - mean);
        var stdev = Math.Sqrt(squares / count);
        var threshold = mean - rule.StdevFactor * stdev;
        for (var i = 0; i < samples.Length; i++)
        {
            var s = samples[i];
            if (flagged[i] || s.Requests < rule.MinRequests) continue;
            var rate = Rate(s);
            if (rate < threshold)
            {
                flagged[i] = true;
                verdicts.Add(new OutlierVerdict(i, OutlierReasons.SuccessRate, 1 - rate, string.Create(CultureInfo.InvariantCulture, $"success rate {100 * rate:0.#} % over {s.Requests} requests, below {100 * threshold:0.#} % (cluster mean {100 * mean:0.#} %, stdev {100 * stdev:0.#} %)")));
            }
        }
    }

    private static void Latency(CompiledLatencyRule rule, ReadOnlySpan<OutlierSample> samples, List<OutlierVerdict> verdicts, bool[] flagged)
    {
        var p90s = new List<double>(samples.Length);
        foreach (var s in samples)
        {
            if (s.Answered >= rule.MinRequests && s.P90 is { } p90) p90s.Add(p90.TotalMicroseconds);
        }

        if (p90s.Count < rule.MinDestinations) return;
        p90s.Sort();
        var middle = p90s.Count / 2;
        var median = p90s.Count % 2 == 1 ? p90s[middle] : (p90s[middle - 1] + p90s[middle]) / 2;
        var floor = rule.MinLatency.TotalMicroseconds;
        for (var i = 0; i < samples.Length; i++)
        {
            var s = samples[i];
            if (flagged[i] || s.Answered < rule.MinRequests || s.P90 is not { } p90) continue;
            var micros = p90.TotalMicroseconds;
            if (micros > rule.Factor * median && micros >= floor)
            {
                flagged[i] = true;
                var ratio = median > 0 ? micros / median : double.MaxValue;
                verdicts.Add(new OutlierVerdict(i, OutlierReasons.Latency, ratio, string.Create(CultureInfo.InvariantCulture, $"p90 latency {micros / 1000:0.#} ms over {s.Answered} answers, {ratio:0.#}× the cluster median {median / 1000:0.#} ms")));
            }
        }
    }

    private static int Qualified(ReadOnlySpan<OutlierSample> samples, int minRequests)
    {
        var count = 0;
        foreach (var s in samples) if (s.Requests >= minRequests) count++;
        return count;
    }

    private static double Rate(OutlierSample s) => (double)(s.Requests - s.Failures) / s.Requests;
}
