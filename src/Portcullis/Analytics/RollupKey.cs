namespace Portcullis.Analytics;

/// <summary>
/// One rollup row's dimensions: a struct over strings the request already holds (route and cluster names
/// from the config, the caller's consumer and group, interned reason codes), so looking up an existing
/// row allocates nothing.
/// </summary>
internal readonly struct RollupKey(long minuteTicks, string? route, string? cluster, string? consumer, string? consumerGroup, short status, string? reason)
    : IEquatable<RollupKey>
{
    /// <summary>The route of the row that counts requests beyond <see cref="RollupTables.MaxKeysPerTable"/> new rows.</summary>
    public const string OverflowRoute = "(overflow)";

    /// <summary>Start of the minute (UTC ticks).</summary>
    public long MinuteTicks { get; } = minuteTicks;

    public string? Route { get; } = route;

    public string? Cluster { get; } = cluster;

    public string? Consumer { get; } = consumer;

    public string? ConsumerGroup { get; } = consumerGroup;

    public short Status { get; } = status;

    public string? Reason { get; } = reason;

    /// <summary>The overflow row of the same minute and status (the other dimensions are dropped).</summary>
    public RollupKey Overflow => new(MinuteTicks, OverflowRoute, null, null, null, Status, null);

    public bool Equals(RollupKey other) =>
        MinuteTicks == other.MinuteTicks && Status == other.Status
        && string.Equals(Route, other.Route, StringComparison.Ordinal)
        && string.Equals(Cluster, other.Cluster, StringComparison.Ordinal)
        && string.Equals(Consumer, other.Consumer, StringComparison.Ordinal)
        && string.Equals(ConsumerGroup, other.ConsumerGroup, StringComparison.Ordinal)
        && string.Equals(Reason, other.Reason, StringComparison.Ordinal);

    public override bool Equals(object? obj) => obj is RollupKey other && Equals(other);

    public override int GetHashCode() => HashCode.Combine(MinuteTicks, Route, Cluster, Consumer, ConsumerGroup, Status, Reason);
}

/// <summary>
/// One row's counters, added to by many threads with Interlocked (each stripe has its own cell, so two
/// cores rarely touch the same one). Sketch buckets are allocated in chunks on first use: an existing
/// row whose latencies fall in buckets seen before allocates nothing.
/// </summary>
internal sealed class RollupCell : IMergeableCell<RollupCell>
{
    public long Requests;
    public long BytesIn;
    public long BytesOut;
    public long LatencySum;
    public long UpstreamSum;
    public readonly ChunkedSketch Latency = new();
    public readonly ChunkedSketch Upstream = new();

    public void Add(long bytesIn, long bytesOut, long latencyUs, long upstreamUs)
    {
        Interlocked.Increment(ref Requests);
        if (bytesIn != 0) Interlocked.Add(ref BytesIn, bytesIn);
        if (bytesOut != 0) Interlocked.Add(ref BytesOut, bytesOut);
        Interlocked.Add(ref LatencySum, latencyUs);
        Latency.Add(latencyUs);
        if (upstreamUs >= 0)
        {
            Interlocked.Add(ref UpstreamSum, upstreamUs);
            Upstream.Add(upstreamUs);
        }
    }

    /// <summary>Adds another cell's counts (on the flusher, after the cell's table was sealed).</summary>
    public void MergeFrom(RollupCell other)
    {
        Requests += other.Requests;
        BytesIn += other.BytesIn;
        BytesOut += other.BytesOut;
        LatencySum += other.LatencySum;
        UpstreamSum += other.UpstreamSum;
        Latency.MergeFrom(other.Latency);
        Upstream.MergeFrom(other.Upstream);
    }
}

/// <summary>Dense <see cref="LatencySketch"/> counts in lazily allocated chunks of 64 buckets (a chunk spans a factor of ~3.6 in latency).</summary>
internal sealed class ChunkedSketch
{
    private const int Shift = 6;
    private const int ChunkSize = 1 << Shift;
    private readonly long[]?[] _chunks = new long[]?[(LatencySketch.BucketCount + ChunkSize - 1) / ChunkSize];

    public void Add(long microseconds)
    {
        var bucket = LatencySketch.BucketOf(microseconds);
        var chunk = Volatile.Read(ref _chunks[bucket >> Shift]) ?? Allocate(bucket >> Shift);
        Interlocked.Increment(ref chunk[bucket & (ChunkSize - 1)]);
    }

    private long[] Allocate(int index)
    {
        var fresh = new long[ChunkSize];
        return Interlocked.CompareExchange(ref _chunks[index], fresh, null) ?? fresh;
    }

    public void MergeFrom(ChunkedSketch other)
    {
        for (var c = 0; c < _chunks.Length; c++)
        {
            if (other._chunks[c] is not { } source) continue;
            var target = _chunks[c] ??= new long[ChunkSize];
            for (var i = 0; i < ChunkSize; i++) target[i] += source[i];
        }
    }

    /// <summary>The non-empty buckets as the table's two parallel lists.</summary>
    public (List<short> Buckets, List<long> Counts) ToSparse()
    {
        var buckets = new List<short>();
        var counts = new List<long>();
        for (var c = 0; c < _chunks.Length; c++)
        {
            if (_chunks[c] is not { } chunk) continue;
            for (var i = 0; i < ChunkSize; i++)
            {
                if (chunk[i] == 0) continue;
                buckets.Add((short)((c << Shift) + i));
                counts.Add(chunk[i]);
            }
        }

        return (buckets, counts);
    }
}
