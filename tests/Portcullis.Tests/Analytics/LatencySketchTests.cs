using Portcullis.Analytics;

namespace Portcullis.Tests.Analytics;

public sealed class LatencySketchTests
{
    [Fact]
    public void QuantilesOfMergedBucketsAreWithinTheRelativeAccuracy()
    {
        var random = new Random(7);
        var values = Enumerable.Range(0, 50_000).Select(_ => (long)Math.Exp(random.NextDouble() * 14)).ToArray();
        var counts = new long[LatencySketch.BucketCount];
        foreach (var value in values) counts[LatencySketch.BucketOf(value)]++;

        Array.Sort(values);
        foreach (var q in new[] { 0.5, 0.9, 0.95, 0.99, 0.999 })
        {
            var exact = values[(int)Math.Floor(q * (values.Length - 1))];
            var estimate = LatencySketch.Quantile(counts, q)!.Value;
            Assert.InRange(estimate, exact * (1 - LatencySketch.RelativeAccuracy), Math.Max(1, exact) * (1 + LatencySketch.RelativeAccuracy));
        }
    }

    [Fact]
    public void MergingSparseListsEqualsCountingEverything()
    {
        var dense = new long[LatencySketch.BucketCount];
        LatencySketch.Merge(dense, [3, 10], [2, 5]);
        LatencySketch.Merge(dense, [10], [1]);
        Assert.Equal(2, dense[3]);
        Assert.Equal(6, dense[10]);
        Assert.Null(LatencySketch.Quantile(new long[4], 0.5));
    }
}
