using System.Collections.Concurrent;

namespace Portcullis.Analytics;

/// <summary>
/// The in-process rollups between two flushes: one table per stripe (a stripe per core, picked by the
/// processor the request completes on), so concurrent requests rarely share a cell or a dictionary bucket.
/// The flusher swaps every stripe's table for an empty one and reads the old ones once their last writer
/// has left (a writer that still holds a swapped table sees it sealed and retries on the new one): nothing
/// recorded is lost or counted twice, and requests never wait for the flusher.
/// </summary>
internal sealed class RollupTables
{
    /// <summary>New rows one stripe accepts per flush interval; beyond it a request counts in its minute's overflow row.</summary>
    public const int MaxKeysPerTable = 10_000;

    private readonly Stripe[] _stripes;
    private readonly int _mask;
    private readonly int _maxKeys;
    private long _overflowed;

    public RollupTables(int? stripes = null, int maxKeysPerTable = MaxKeysPerTable)
    {
        var count = (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)Math.Max(1, stripes ?? Environment.ProcessorCount * 2));
        _stripes = new Stripe[count];
        for (var i = 0; i < count; i++) _stripes[i] = new Stripe();
        _mask = count - 1;
        _maxKeys = maxKeysPerTable;
    }

    /// <summary>Where a writer is (tests hold a writer there to check the swap against it).</summary>
    internal enum WriterPoint
    {
        /// <summary>It has read its stripe's table, not yet announced itself as a writer of it.</summary>
        TableRead,

        /// <summary>It is a writer of a table not sealed when it checked.</summary>
        Writing,
    }

    /// <summary>Test hook: called at each <see cref="WriterPoint"/> (null in the gateway: one field check).</summary>
    internal Action<WriterPoint>? WriterStep { get; set; }

    /// <summary>Requests counted in an overflow row instead of their own (too many distinct rows in one interval).</summary>
    public long Overflowed => Interlocked.Read(ref _overflowed);

    public void Add(in RollupKey key, long bytesIn, long bytesOut, long latencyUs, long upstreamUs)
    {
        var stripe = _stripes[Thread.GetCurrentProcessorId() & _mask];
        while (true)
        {
            var table = Volatile.Read(ref stripe.Current);
            WriterStep?.Invoke(WriterPoint.TableRead);
            Interlocked.Increment(ref table.Writers);
            try
            {
                if (Volatile.Read(ref table.Sealed) != 0) continue; // swapped meanwhile: write to the new one
                WriterStep?.Invoke(WriterPoint.Writing);
                CellOf(table, key).Add(bytesIn, bytesOut, latencyUs, upstreamUs);
                return;
            }
            finally
            {
                Interlocked.Decrement(ref table.Writers);
            }
        }
    }

    private RollupCell CellOf(Table table, in RollupKey key)
    {
        if (table.Cells.TryGetValue(key, out var cell)) return cell;
        if (Interlocked.Increment(ref table.Keys) > _maxKeys)
        {
            Interlocked.Decrement(ref table.Keys);
            Interlocked.Increment(ref _overflowed);
            return table.Cells.GetOrAdd(key.Overflow, static _ => new RollupCell());
        }

        return table.Cells.GetOrAdd(key, static _ => new RollupCell());
    }

    /// <summary>Takes everything recorded so far, merged across stripes (called by the one flusher).</summary>
    public Dictionary<RollupKey, RollupCell> Swap()
    {
        var merged = new Dictionary<RollupKey, RollupCell>();
        foreach (var stripe in _stripes)
        {
            var old = Interlocked.Exchange(ref stripe.Current, new Table());
            Interlocked.Exchange(ref old.Sealed, 1); // a full fence before reading Writers
            var spin = new SpinWait();
            while (Volatile.Read(ref old.Writers) != 0) spin.SpinOnce();
            foreach (var (key, cell) in old.Cells)
            {
                if (merged.TryGetValue(key, out var into)) into.MergeFrom(cell);
                else merged[key] = cell;
            }
        }

        return merged;
    }

    private sealed class Stripe
    {
        public Table Current = new();
    }

    private sealed class Table
    {
        public readonly ConcurrentDictionary<RollupKey, RollupCell> Cells = new();
        public int Writers;
        public int Sealed;
        public int Keys;
    }
}
