namespace Portcullis.Analytics;

/// <summary>
/// The in-process rollups between two flushes, striped per core (<see cref="StripedTables{TKey, TCell}"/>: no
/// locks on the request path, nothing lost or counted twice). Beyond <see cref="MaxKeysPerTable"/> new rows per
/// stripe per interval a request counts in its minute's overflow row.
/// </summary>
internal sealed class RollupTables
{
    /// <summary>New rows one stripe accepts per flush interval; beyond it a request counts in its minute's overflow row.</summary>
    public const int MaxKeysPerTable = 10_000;

    private readonly StripedTables<RollupKey, RollupCell> _tables;

    public RollupTables(int? stripes = null, int maxKeysPerTable = MaxKeysPerTable) =>
        _tables = new StripedTables<RollupKey, RollupCell>(stripes, maxKeysPerTable, static key => key.Overflow);

    /// <summary>Test hook: called at each <see cref="StripedWriterPoint"/> (null in the gateway: one field check).</summary>
    internal Action<StripedWriterPoint>? WriterStep { get => _tables.WriterStep; set => _tables.WriterStep = value; }

    /// <summary>Requests counted in an overflow row instead of their own (too many distinct rows in one interval).</summary>
    public long Overflowed => _tables.Overflowed;

    public void Add(in RollupKey key, long bytesIn, long bytesOut, long latencyUs, long upstreamUs)
    {
        using var writer = _tables.Enter(key);
        writer.Cell!.Add(bytesIn, bytesOut, latencyUs, upstreamUs);
    }

    /// <summary>Takes everything recorded so far, merged across stripes (called by the one flusher).</summary>
    public Dictionary<RollupKey, RollupCell> Swap() => _tables.Swap();
}
