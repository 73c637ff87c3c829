using DuckDB.NET.Data;

namespace Portcullis.Analytics;

/// <summary>
/// One `arrivals` row's dimensions: the minute, the route, the rate key (the consumer, or "ip:" and the client
/// address for an anonymous caller: what a `key: consumer` limit counts), the caller's group, whether a rate
/// limit refused the requests, and which rate-limit key parts were missing on them. Holds strings the request
/// already has (an anonymous caller's key keeps the address and a flag; "ip:" is prefixed only when the row is
/// written), so looking up an existing row allocates nothing.
/// </summary>
internal readonly struct ArrivalKey : IEquatable<ArrivalKey>
{
    private const string AnonymousPrefix = "ip:";

    private readonly string _key;
    private readonly bool _anonymous;

    /// <param name="rateKey">The rate key as stored: a consumer, or "ip:" and an address.</param>
    public ArrivalKey(long minuteTicks, string route, string rateKey, string? consumerGroup, bool limited, string? keyMissing)
        : this(minuteTicks, route, rateKey, anonymous: false, consumerGroup, limited, keyMissing)
    {
    }

    private ArrivalKey(long minuteTicks, string route, string key, bool anonymous, string? consumerGroup, bool limited, string? keyMissing)
    {
        MinuteTicks = minuteTicks;
        Route = route;
        _key = key;
        _anonymous = anonymous;
        ConsumerGroup = consumerGroup;
        Limited = limited;
        KeyMissing = keyMissing;
    }

    /// <summary>An anonymous caller's row, keyed by its address (stored as "ip:" and the address).</summary>
    public static ArrivalKey ForAddress(long minuteTicks, string route, string address, string? consumerGroup, bool limited, string? keyMissing) =>
        new(minuteTicks, route, address, anonymous: true, consumerGroup, limited, keyMissing);

    public long MinuteTicks { get; }

    public string Route { get; }

    /// <summary>The rate key as stored ("ip:" and the address for an anonymous caller; built when asked, at flush).</summary>
    public string RateKey => _anonymous ? AnonymousPrefix + _key : _key;

    public string? ConsumerGroup { get; }

    /// <summary>Refused by a rate limit (429 ratelimit.exceeded): an attempted arrival all the same.</summary>
    public bool Limited { get; }

    /// <summary>"policy part" labels of the route's rate-limit key parts missing on the request (", "-joined); null when none.</summary>
    public string? KeyMissing { get; }

    // A consumer literally named "ip:1.2.3.4" and the anonymous caller 1.2.3.4 are two rows with one stored key:
    // the table has rows per flush anyway, and readers sum them.
    public bool Equals(ArrivalKey other) =>
        MinuteTicks == other.MinuteTicks && Limited == other.Limited && _anonymous == other._anonymous
        && string.Equals(Route, other.Route, StringComparison.Ordinal)
        && string.Equals(_key, other._key, StringComparison.Ordinal)
        && string.Equals(ConsumerGroup, other.ConsumerGroup, StringComparison.Ordinal)
        && string.Equals(KeyMissing, other.KeyMissing, StringComparison.Ordinal);

    public override bool Equals(object? obj) => obj is ArrivalKey other && Equals(other);

    public override int GetHashCode() => HashCode.Combine(MinuteTicks, Route, _key, _anonymous, ConsumerGroup, Limited, KeyMissing);
}

/// <summary>Requests per second of one minute (added to with Interlocked; each stripe has its own cell).</summary>
internal sealed class ArrivalCell : IMergeableCell<ArrivalCell>
{
    public readonly int[] Seconds = new int[60];

    public void Add(int second) => Interlocked.Increment(ref Seconds[second]);

    public void MergeFrom(ArrivalCell other)
    {
        for (var i = 0; i < 60; i++) Seconds[i] += other.Seconds[i];
    }

    /// <summary>The seconds with arrivals, and their counts (the table's two parallel lists).</summary>
    public (List<byte> Offsets, List<int> Counts, long Total) ToSparse()
    {
        var offsets = new List<byte>();
        var counts = new List<int>();
        long total = 0;
        for (var i = 0; i < 60; i++)
        {
            if (Seconds[i] == 0) continue;
            offsets.Add((byte)i);
            counts.Add(Seconds[i]);
            total += Seconds[i];
        }

        return (offsets, counts, total);
    }
}

/// <summary>
/// The in-process arrivals between two flushes, striped per core like the rollups
/// (<see cref="StripedTables{TKey, TCell}"/>). Bounded: beyond <see cref="MaxKeysPerTable"/> new rows per stripe
/// per flush interval a request is not kept here and is counted in <see cref="Dropped"/> (the rollups still count it).
/// </summary>
internal sealed class ArrivalTables
{
    public const int MaxKeysPerTable = 20_000;

    private readonly StripedTables<ArrivalKey, ArrivalCell> _tables;

    public ArrivalTables(int? stripes = null, int maxKeysPerTable = MaxKeysPerTable) =>
        _tables = new StripedTables<ArrivalKey, ArrivalCell>(stripes, maxKeysPerTable, overflowKey: null);

    /// <summary>Requests not kept because a stripe had too many distinct rows in one interval.</summary>
    public long Dropped => _tables.Overflowed;

    public void Add(in ArrivalKey key, int second)
    {
        using var writer = _tables.Enter(key);
        writer.Cell?.Add(second);
    }

    /// <summary>Takes everything recorded so far, merged across stripes (called by the one flusher).</summary>
    public Dictionary<ArrivalKey, ArrivalCell> Swap() => _tables.Swap();

    /// <summary>One row in the column order of <see cref="AnalyticsSchema.CreateArrivals"/>.</summary>
    public static void Append(DuckDBAppender appender, in ArrivalKey key, ArrivalCell cell)
    {
        var (offsets, counts, total) = cell.ToSparse();
        appender.CreateRow()
            .AppendValue(new DateTime(key.MinuteTicks, DateTimeKind.Utc))
            .AppendValue(key.Route)
            .AppendValue(key.RateKey)
            .AppendValue(key.ConsumerGroup)
            .AppendValue(key.Limited)
            .AppendValue(key.KeyMissing)
            .AppendValue(total)
            .AppendValue(offsets)
            .AppendValue(counts)
            .EndRow();
    }
}
