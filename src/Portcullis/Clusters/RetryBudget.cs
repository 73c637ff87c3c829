namespace Portcullis.Clusters;

/// <summary>
/// A cluster's retry budget (Finagle's RetryBudget, Envoy's retry_budget): over the last <see cref="WindowSeconds"/>
/// seconds, retries may be at most <c>percent</c> of the requests plus <c>minPerSecond</c> per second of the window.
/// Counted in one-second buckets with Interlocked operations, no locks: a bucket that has aged out is reset by
/// whoever reaches it first in its new second. Races around a reset can miscount a request or two — a budget
/// needs the right order of magnitude, not exactness.
/// </summary>
internal sealed class RetryBudget
{
    public const int WindowSeconds = 10;

    private readonly Bucket[] _buckets = new Bucket[WindowSeconds];
    private readonly double _ratio;
    private readonly long _floor;

    public RetryBudget(double percent, int minPerSecond)
    {
        _ratio = percent / 100;
        _floor = (long)minPerSecond * WindowSeconds;
        for (var i = 0; i < _buckets.Length; i++) _buckets[i] = new Bucket();
    }

    /// <summary>Counts a request toward the budget (every request to the cluster, retried or not).</summary>
    public void RecordRequest(long second) => Interlocked.Increment(ref BucketAt(second).Requests);

    /// <summary>Takes one retry from the budget when it allows one; false when retries already use it up.</summary>
    public bool TryRetry(long second)
    {
        long requests = 0, retries = 0;
        foreach (var bucket in _buckets)
        {
            var epoch = Volatile.Read(ref bucket.Second);
            if (epoch > second - WindowSeconds && epoch <= second)
            {
                requests += Volatile.Read(ref bucket.Requests);
                retries += Volatile.Read(ref bucket.Retries);
            }
        }

        if (retries >= _floor + (long)(_ratio * requests)) return false;
        Interlocked.Increment(ref BucketAt(second).Retries);
        return true;
    }

    private Bucket BucketAt(long second)
    {
        var bucket = _buckets[(int)(second % WindowSeconds)];
        var epoch = Volatile.Read(ref bucket.Second);
        if (epoch != second && epoch < second && Interlocked.CompareExchange(ref bucket.Second, second, epoch) == epoch)
        {
            // This caller moved the bucket into its new second: start its counts again.
            Interlocked.Exchange(ref bucket.Requests, 0);
            Interlocked.Exchange(ref bucket.Retries, 0);
        }

        return bucket;
    }

    private sealed class Bucket
    {
        public long Second = long.MinValue;
        public long Requests;
        public long Retries;
    }
}
