using System.Diagnostics;
using System.Numerics;
using System.Runtime.CompilerServices;
using Yarp.ReverseProxy.Model;

namespace Portcullis.Clusters;

/// <summary>
/// Every destination's request-path counters, reached from YARP's <see cref="DestinationState"/> (one
/// reference-keyed, lock-free lookup per proxied request; a state lives as long as its destination, across
/// reloads that keep it).
/// </summary>
internal sealed class DestinationCounterTable
{
    private readonly ConditionalWeakTable<DestinationState, DestinationCounters> _counters = new();

    public DestinationCounters Of(DestinationState destination) =>
        _counters.TryGetValue(destination, out var counters) ? counters : _counters.GetValue(destination, static _ => new DestinationCounters());
}

/// <summary>One destination's counters: consecutive failures (healthCheck.passive) and the current outlier window.</summary>
internal sealed class DestinationCounters
{
    /// <summary>Failed requests in a row (healthCheck.passive).</summary>
    public int ConsecutiveFailures;

    /// <summary>1 from a consecutive-failures ejection until the destination's next good answer.</summary>
    public int ConsecutiveEjected;

    /// <summary>Requests and failures of the running outlier interval; swapped out by the detector.</summary>
    public readonly OutlierWindow Window = new();

    /// <summary>The destination's outlier ejection (null when in service); written by the detector only.</summary>
    public volatile OutlierEjection? Ejection;

    /// <summary>
    /// Ejections in a row: the next ejection lasts baseEjectionTime × (this + 1), and each interval the destination
    /// passes takes one off (Envoy's multiplier). Detector only.
    /// </summary>
    public int EjectionMultiplier;
}

/// <summary>An outlier ejection: why, since and until when, and how many in a row it is.</summary>
internal sealed record OutlierEjection(string Reason, DateTimeOffset At, DateTimeOffset Until, int Times);

/// <summary>
/// Counts of one interval, incremented with Interlocked on the request path and read-and-reset by the detector
/// (a request landing during the read goes to either interval, never lost twice or counted twice).
/// </summary>
internal sealed class OutlierWindow
{
    private int _requests;
    private int _failures;
    private readonly int[] _latency = new int[LatencyHistogram.BucketCount];

    public void Record(bool failed, long latencyTimestampStart, long latencyTimestampEnd)
    {
        Interlocked.Increment(ref _requests);
        if (failed) Interlocked.Increment(ref _failures);
        if (latencyTimestampStart != 0 && latencyTimestampEnd >= latencyTimestampStart)
        {
            var micros = (long)Stopwatch.GetElapsedTime(latencyTimestampStart, latencyTimestampEnd).TotalMicroseconds;
            Interlocked.Increment(ref _latency[LatencyHistogram.BucketOf(micros)]);
        }
    }

    /// <summary>Test and detector use: the counts so far, reset to zero.</summary>
    public OutlierSample Take()
    {
        var requests = Interlocked.Exchange(ref _requests, 0);
        var failures = Interlocked.Exchange(ref _failures, 0);
        var latency = new int[LatencyHistogram.BucketCount];
        var answered = 0;
        for (var i = 0; i < latency.Length; i++)
        {
            latency[i] = Interlocked.Exchange(ref _latency[i], 0);
            answered += latency[i];
        }

        return new OutlierSample(requests, Math.Min(failures, requests), answered, answered == 0 ? null : LatencyHistogram.Quantile(latency, answered, 0.9));
    }

    /// <summary>Adds synthetic latency (tests).</summary>
    internal void RecordLatency(TimeSpan latency)
    {
        Interlocked.Increment(ref _latency[LatencyHistogram.BucketOf((long)latency.TotalMicroseconds)]);
    }
}

/// <summary>One destination's interval: requests, failed ones, answered ones (with a latency) and their p90.</summary>
internal readonly record struct OutlierSample(int Requests, int Failures, int Answered, TimeSpan? P90);

/// <summary>
/// Log-linear latency buckets over microseconds: four per power of two (≤ 19 % apart), exact below 4 µs;
/// 144 buckets reach ~19 hours. Coarse on purpose: it decides "three times the median", not percentiles to report.
/// </summary>
internal static class LatencyHistogram
{
    public const int BucketCount = 144;

    public static int BucketOf(long micros)
    {
        if (micros < 4) return micros < 0 ? 0 : (int)micros;
        var k = BitOperations.Log2((ulong)micros);
        var index = 4 * (k - 1) + (int)((micros >> (k - 2)) & 3);
        return index >= BucketCount ? BucketCount - 1 : index;
    }

    /// <summary>The midpoint of a bucket, in microseconds.</summary>
    public static double ValueOf(int bucket)
    {
        if (bucket < 4) return bucket;
        var k = bucket / 4 + 1;
        var low = (double)(4 + bucket % 4) * Math.Pow(2, k - 2);
        return low + Math.Pow(2, k - 3);
    }

    public static TimeSpan Quantile(ReadOnlySpan<int> counts, int total, double q)
    {
        var rank = (long)Math.Floor(q * (total - 1));
        long seen = 0;
        for (var i = 0; i < counts.Length; i++)
        {
            seen += counts[i];
            if (seen > rank) return TimeSpan.FromMicroseconds(ValueOf(i));
        }

        return TimeSpan.FromMicroseconds(ValueOf(counts.Length - 1));
    }
}
