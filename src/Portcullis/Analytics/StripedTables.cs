using System.Collections.Concurrent;

namespace Portcullis.Analytics;

/// <summary>A cell of a <see cref="StripedTables{TKey, TCell}"/> table: added to concurrently, merged by the flusher.</summary>
internal interface IMergeableCell<in TCell>
{
    void MergeFrom(TCell other);
}

/// <summary>Where a writer is in <see cref="StripedTables{TKey, TCell}.Enter"/> (tests hold a writer there to check the swap against it).</summary>
internal enum StripedWriterPoint
{
    /// <summary>It has read its stripe's table, not yet announced itself as a writer of it.</summary>
    TableRead,

    /// <summary>It is a writer of a table not sealed when it checked.</summary>
    Writing,
}

/// <summary>
/// In-process rows between two flushes: one table per stripe (a stripe per core, picked by the processor the
/// request completes on), so concurrent requests rarely share a cell or a dictionary bucket. The flusher swaps
/// every stripe's table for an empty one and reads the old ones once their last writer has left (a writer
/// that still holds a swapped table sees it sealed and retries on the new one): nothing recorded is lost or
/// counted twice, and requests never wait for the flusher. Bounded: beyond maxKeysPerTable new rows per stripe
/// per interval a request goes to the overflow row its key names, or is not kept when there is none.
/// </summary>
internal sealed class StripedTables<TKey, TCell>
    where TKey : struct, IEquatable<TKey>
    where TCell : class, IMergeableCell<TCell>, new()
{
    private readonly Stripe[] _stripes;
    private readonly int _mask;
    private readonly int _maxKeys;
    private readonly Func<TKey, TKey>? _overflowKey;
    private long _overflowed;

    /// <param name="overflowKey">The row a request beyond the bound counts in; null to not keep it.</param>
    public StripedTables(int? stripes, int maxKeysPerTable, Func<TKey, TKey>? overflowKey)
    {
        var count = (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)Math.Max(1, stripes ?? Environment.ProcessorCount * 2));
        _stripes = new Stripe[count];
        for (var i = 0; i < count; i++) _stripes[i] = new Stripe();
        _mask = count - 1;
        _maxKeys = maxKeysPerTable;
        _overflowKey = overflowKey;
    }

    /// <summary>Test hook: called at each <see cref="StripedWriterPoint"/> (null in the gateway: one field check).</summary>
    internal Action<StripedWriterPoint>? WriterStep { get; set; }

    /// <summary>Requests beyond the bound: counted in an overflow row, or not kept.</summary>
    public long Overflowed => Interlocked.Read(ref _overflowed);

    /// <summary>
    /// Makes the caller a writer of its stripe's current table and finds the key's cell (null when the table is
    /// full and there is no overflow row). Dispose the result when done adding to the cell.
    /// </summary>
    public Writer Enter(in TKey key)
    {
        var stripe = _stripes[Thread.GetCurrentProcessorId() & _mask];
        while (true)
        {
            var table = Volatile.Read(ref stripe.Current);
            WriterStep?.Invoke(StripedWriterPoint.TableRead);
            Interlocked.Increment(ref table.Writers);
            if (Volatile.Read(ref table.Sealed) != 0)
            {
                Interlocked.Decrement(ref table.Writers); // swapped meanwhile: write to the new one
                continue;
            }

            try
            {
                WriterStep?.Invoke(StripedWriterPoint.Writing);
                return new Writer(table, CellOf(table, key));
            }
            catch
            {
                Interlocked.Decrement(ref table.Writers);
                throw;
            }
        }
    }

    private TCell? CellOf(Table table, in TKey key)
    {
        if (table.Cells.TryGetValue(key, out var cell)) return cell;
        if (Interlocked.Increment(ref table.Keys) > _maxKeys)
        {
            Interlocked.Decrement(ref table.Keys);
            Interlocked.Increment(ref _overflowed);
            return _overflowKey is null ? null : table.Cells.GetOrAdd(_overflowKey(key), static _ => new TCell());
        }

        return table.Cells.GetOrAdd(key, static _ => new TCell());
    }

    /// <summary>Takes everything recorded so far, merged across stripes (called by the one flusher).</summary>
    public Dictionary<TKey, TCell> Swap()
    {
        var merged = new Dictionary<TKey, TCell>();
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

    /// <summary>A writer of one table until disposed (the swap waits for it).</summary>
    public readonly ref struct Writer
    {
        private readonly Table _table;

        internal Writer(Table table, TCell? cell)
        {
            _table = table;
            Cell = cell;
        }

        public TCell? Cell { get; }

        public void Dispose() => Interlocked.Decrement(ref _table.Writers);
    }

    private sealed class Stripe
    {
        public Table Current = new();
    }

    internal sealed class Table
    {
        public readonly ConcurrentDictionary<TKey, TCell> Cells = new();
        public int Writers;
        public int Sealed;
        public int Keys;
    }
}
