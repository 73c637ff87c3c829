namespace Portcullis.Analytics;

/// <summary>
/// The latency sketch kept per rollup row: a DDSketch (Masson, Rim, Lee, VLDB 2019) with logarithmic
/// buckets over microseconds. Any quantile read from merged buckets is within <see cref="RelativeAccuracy"/>
/// of the true quantile of the merged values, and merging is adding counts bucket by bucket, so p99 over
/// any window and any grouping is exact to 1 %, never an average of percentiles.
/// </summary>
/// <remarks>
/// Stored sparse: two parallel lists per row (bucket indexes, counts). Bucket 0 holds everything up to
/// 1 µs; the last bucket holds everything above ~4,400 s.
/// </remarks>
internal static class LatencySketch
{
    /// <summary>Relative error of any quantile read from the sketch.</summary>
    public const double RelativeAccuracy = 0.01;

    /// <summary>Buckets 0..BucketCount-1 cover 1 µs to γ^(BucketCount-1) ≈ 4.4e9 µs.</summary>
    public const int BucketCount = 1100;

    /// <summary>γ = (1 + α) / (1 − α).</summary>
    public static readonly double Gamma = (1 + RelativeAccuracy) / (1 - RelativeAccuracy);

    private static readonly double LogGamma = Math.Log(Gamma);

    /// <summary>The bucket of a latency in microseconds: ⌈log_γ(v)⌉, clamped to the covered range.</summary>
    public static int BucketOf(long microseconds)
    {
        if (microseconds <= 1) return 0;
        var index = (int)Math.Ceiling(Math.Log(microseconds) / LogGamma);
        return index >= BucketCount ? BucketCount - 1 : index;
    }

    /// <summary>The value a bucket stands for, in microseconds: 2γ^i / (γ + 1), within α of every value in it.</summary>
    public static double ValueOf(int bucket) => bucket <= 0 ? 1 : 2 * Math.Pow(Gamma, bucket) / (Gamma + 1);

    /// <summary>The q-quantile (0..1) of dense counts indexed by bucket; null when the counts are all zero.</summary>
    public static double? Quantile(ReadOnlySpan<long> countsByBucket, double q)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(q, 0);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(q, 1);
        long total = 0;
        foreach (var count in countsByBucket) total += count;
        if (total == 0) return null;

        // The value of rank ⌊q·(n−1)⌋ (0-based), as DDSketch defines it.
        var rank = (long)Math.Floor(q * (total - 1));
        long seen = 0;
        for (var bucket = 0; bucket < countsByBucket.Length; bucket++)
        {
            seen += countsByBucket[bucket];
            if (seen > rank) return ValueOf(bucket);
        }

        return ValueOf(countsByBucket.Length - 1);
    }

    /// <summary>Adds sparse (bucket, count) lists into dense counts (the merge).</summary>
    public static void Merge(Span<long> into, ReadOnlySpan<short> buckets, ReadOnlySpan<long> counts)
    {
        if (buckets.Length != counts.Length) throw new ArgumentException("buckets and counts differ in length");
        for (var i = 0; i < buckets.Length; i++) into[buckets[i]] += counts[i];
    }
}
