using System.Runtime.InteropServices;
using System.Text;
using DuckDB.NET.Data;
using DuckDB.NET.Native;

namespace Portcullis.Analytics;

/// <summary>
/// Dense merged sketches (counts by <see cref="LatencySketch"/> bucket) per cell: a cell is one group × one
/// time step × one sketch (total or upstream latency). Allocated on first use, so empty cells cost nothing.
/// </summary>
internal sealed class SketchCells(int groups, int steps, int sketches)
{
    private readonly long[]?[] _cells = new long[]?[checked(groups * steps * sketches)];

    public int Groups => groups;

    public int Steps => steps;

    /// <summary>The merged counts of a cell; null when no row had buckets for it.</summary>
    public long[]? Get(int group, int step, int sketch = 0) => _cells[((group * steps) + step) * sketches + sketch];

    internal long[] Cell(int group, int step, int sketch) =>
        _cells[((group * steps) + step) * sketches + sketch] ??= new long[LatencySketch.BucketCount];

    /// <summary>The bytes a query with this many cells may need at most (every cell dense).</summary>
    public static long MaxBytes(long cells) => cells * LatencySketch.BucketCount * sizeof(long);

    /// <summary>p-quantile of a cell in µs (<see cref="LatencySketch.Quantile"/>); null when nothing was measured.</summary>
    public double? Quantile(int group, int step, double q, int sketch = 0) => Get(group, step, sketch) is { } counts ? LatencySketch.Quantile(counts, q) : null;
}

/// <summary>
/// Merges the rollups' sketch lists in C# instead of SQL: the query's result vectors (a key, a step index and
/// pairs of buckets/counts lists) are read in place through DuckDB's C API and each row's counts are added
/// into its cell's dense array. Unnesting 38 M list entries and grouping them by (group, step, bucket) in
/// SQL costs a hash aggregate over every entry; here each entry is one array addition. The result is the
/// same sum per bucket (merging is addition), so every percentile is exactly what the SQL merge gives.
/// </summary>
/// <remarks>
/// Values still reach DuckDB only as bound parameters (the SQL text comes from <see cref="AnalyticsQuery"/>'s fixed
/// fragments). The result is streamed (a chunk of 2048 rows at a time, never the whole result in memory), with
/// insertion order off for the statement since cells do not depend on row order.
/// </remarks>
internal static unsafe class SketchMerge
{
    /// <summary>The key that stands for SQL NULL (the "(none)" group) in a groups dictionary: no key can contain NUL.</summary>
    public const string NullKey = "\0";

    /// <summary>
    /// Runs <paramref name="sql"/>, whose columns are: the group key (VARCHAR, only when <paramref name="groups"/> is
    /// given), the step index (INTEGER, only when <paramref name="steps"/> &gt; 1), then per sketch a SMALLINT[] of
    /// buckets and a BIGINT[] of counts. A key not in <paramref name="groups"/> or a step out of range is skipped.
    /// </summary>
    /// <param name="groups">Key → group index (the NULL key as <see cref="NullKey"/>); null: one group, no key column.</param>
    /// <param name="steps">Steps per group; with more than one, the step index column follows the key.</param>
    public static SketchCells Read(DuckDBConnection connection, string sql, DuckDBParameterCollection parameters,
        Dictionary<string, int>? groups, int steps, int sketches, CancellationToken cancellation)
    {
        cancellation.ThrowIfCancellationRequested();
        var cells = new SketchCells(groups?.Count ?? 1, steps, sketches);
        var lookup = groups?.GetAlternateLookup<ReadOnlySpan<char>>();
        var keyColumn = groups is null ? -1 : 0;
        var stepColumn = steps > 1 ? keyColumn + 1 : -1;
        var noneGroup = groups is not null && groups.TryGetValue(NullKey, out var none) ? none : -1;
        var firstSketch = Math.Max(keyColumn, stepColumn) + 1;

        SetInsertionOrder(connection, false);
        using var interrupt = cancellation.Register(static c => NativeMethods.Startup.DuckDBInterrupt(((DuckDBConnection)c!).NativeConnection), connection);
        try
        {
            if (NativeMethods.PreparedStatements.DuckDBPrepare(connection.NativeConnection, sql, out var statement) != DuckDBState.Success)
            {
                var error = NativeMethods.PreparedStatements.DuckDBPrepareError(statement);
                statement.Dispose();
                throw new InvalidOperationException("analytics sketch query: " + error);
            }

            using (statement)
            {
                Bind(statement, parameters);
                if (NativeMethods.PreparedStatements.DuckDBExecutePreparedStreaming(statement, out var result) != DuckDBState.Success)
                {
                    var error = NativeMethods.Query.DuckDBResultError(ref result);
                    result.Close();
                    cancellation.ThrowIfCancellationRequested();
                    throw new InvalidOperationException("analytics sketch query: " + error);
                }

                try
                {
                    Span<char> keyChars = stackalloc char[256];
                    while (true)
                    {
                        using var chunk = NativeMethods.StreamingResult.DuckDBStreamFetchChunk(result);
                        if (chunk.IsInvalid) break;
                        var rows = (int)NativeMethods.DataChunks.DuckDBDataChunkGetSize(chunk);
                        if (rows == 0) break;
                        cancellation.ThrowIfCancellationRequested();
                        AddChunk(chunk, rows, cells, lookup, noneGroup, keyColumn, stepColumn, firstSketch, sketches, keyChars);
                    }

                    // A failure while streaming (interrupted, out of memory) ends the chunks early: not a short answer.
                    cancellation.ThrowIfCancellationRequested();
                    if (NativeMethods.Query.DuckDBResultError(ref result) is { Length: > 0 } failed) throw new InvalidOperationException("analytics sketch query: " + failed);
                }
                finally
                {
                    result.Close();
                }
            }
        }
        finally
        {
            SetInsertionOrder(connection, true);
        }

        return cells;
    }

    private static void AddChunk(DuckDBDataChunk chunk, int rows, SketchCells cells, Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>>? lookup,
        int noneGroup, int keyColumn, int stepColumn, int firstSketch, int sketches, Span<char> keyChars)
    {
        // Group and step of each row first (−1: skip the row), then each sketch's lists.
        Span<int> group = rows <= 2048 ? stackalloc int[rows] : new int[rows];
        Span<int> step = rows <= 2048 ? stackalloc int[rows] : new int[rows];
        group.Clear();
        step.Clear();
        if (lookup is { } keys)
        {
            var vector = NativeMethods.DataChunks.DuckDBDataChunkGetVector(chunk, keyColumn);
            var strings = (DuckDBString*)NativeMethods.Vectors.DuckDBVectorGetData(vector);
            var validity = NativeMethods.Vectors.DuckDBVectorGetValidity(vector);
            for (var r = 0; r < rows; r++)
            {
                if (!IsValid(validity, r))
                {
                    group[r] = noneGroup;
                    continue;
                }

                var bytes = new ReadOnlySpan<byte>(strings[r].Data, strings[r].Length);
                var chars = bytes.Length <= keyChars.Length ? keyChars[..Encoding.UTF8.GetChars(bytes, keyChars)] : Encoding.UTF8.GetString(bytes).AsSpan();
                group[r] = keys.TryGetValue(chars, out var index) ? index : -1;
            }
        }

        if (stepColumn >= 0)
        {
            var vector = NativeMethods.DataChunks.DuckDBDataChunkGetVector(chunk, stepColumn);
            var values = (int*)NativeMethods.Vectors.DuckDBVectorGetData(vector);
            var validity = NativeMethods.Vectors.DuckDBVectorGetValidity(vector);
            for (var r = 0; r < rows; r++)
            {
                var i = IsValid(validity, r) ? values[r] : -1;
                step[r] = (uint)i < (uint)cells.Steps ? i : -1;
            }
        }

        for (var s = 0; s < sketches; s++)
        {
            var bucketVector = NativeMethods.DataChunks.DuckDBDataChunkGetVector(chunk, firstSketch + 2 * s);
            var countVector = NativeMethods.DataChunks.DuckDBDataChunkGetVector(chunk, firstSketch + 2 * s + 1);
            var bucketLists = (DuckDBListEntry*)NativeMethods.Vectors.DuckDBVectorGetData(bucketVector);
            var countLists = (DuckDBListEntry*)NativeMethods.Vectors.DuckDBVectorGetData(countVector);
            var bucketValidity = NativeMethods.Vectors.DuckDBVectorGetValidity(bucketVector);
            var countValidity = NativeMethods.Vectors.DuckDBVectorGetValidity(countVector);
            var buckets = (short*)NativeMethods.Vectors.DuckDBVectorGetData(NativeMethods.Vectors.DuckDBListVectorGetChild(bucketVector));
            var counts = (long*)NativeMethods.Vectors.DuckDBVectorGetData(NativeMethods.Vectors.DuckDBListVectorGetChild(countVector));
            for (var r = 0; r < rows; r++)
            {
                if (group[r] < 0 || step[r] < 0 || !IsValid(bucketValidity, r) || !IsValid(countValidity, r)) continue;
                var length = (int)bucketLists[r].Length;
                if (length == 0) continue;
                if ((int)countLists[r].Length != length) throw new InvalidDataException("a rollup row's sketch buckets and counts differ in length");
                var into = cells.Cell(group[r], step[r], s);
                var b = buckets + (long)bucketLists[r].Offset;
                var n = counts + (long)countLists[r].Offset;
                for (var j = 0; j < length; j++)
                {
                    var bucket = b[j];
                    // Stored buckets are 0..BucketCount-1; anything else is clamped as LatencySketch.BucketOf would.
                    into[bucket < 0 ? 0 : bucket >= LatencySketch.BucketCount ? LatencySketch.BucketCount - 1 : bucket] += n[j];
                }
            }
        }
    }

    private static bool IsValid(ulong* validity, int row) => validity == null || (validity[row >> 6] & (1UL << (row & 63))) != 0;

    // The C API binds by index; the names are the SQL's $name parameters, added as for a DuckDBCommand.
    private static void Bind(DuckDBPreparedStatement statement, DuckDBParameterCollection parameters)
    {
        foreach (DuckDBParameter parameter in parameters)
        {
            if (NativeMethods.PreparedStatements.DuckDBBindParameterIndex(statement, out var index, parameter.ParameterName) != DuckDBState.Success) continue; // not used by this statement
            var state = parameter.Value switch
            {
                null => NativeMethods.PreparedStatements.DuckDBBindNull(statement, index),
                DateTime t => NativeMethods.PreparedStatements.DuckDBBindTimestamp(statement, index, ((DuckDBTimestamp)t).ToDuckDBTimestampStruct()),
                string s => NativeMethods.PreparedStatements.DuckDBBindVarchar(statement, index, s),
                short v => NativeMethods.PreparedStatements.DuckDBBindInt16(statement, index, v),
                int v => NativeMethods.PreparedStatements.DuckDBBindInt32(statement, index, v),
                long v => NativeMethods.PreparedStatements.DuckDBBindInt64(statement, index, v),
                var other => throw new ArgumentException($"analytics sketch query: no binding for parameter type {other.GetType().Name}"),
            };
            if (state != DuckDBState.Success) throw new InvalidOperationException($"analytics sketch query: cannot bind ${parameter.ParameterName}");
        }
    }

    // Only for this connection (a session setting); restored after, so the connection is left as it was.
    private static void SetInsertionOrder(DuckDBConnection connection, bool preserve)
    {
        using var command = connection.CreateCommand();
        command.CommandText = preserve ? "RESET preserve_insertion_order" : "SET SESSION preserve_insertion_order = false";
        command.ExecuteNonQuery();
    }
}

/// <summary>Where a query merges the rows' sketches.</summary>
internal enum SketchMergeMode
{
    /// <summary>In C#, from the list vectors (<see cref="SketchMerge"/>).</summary>
    Native,

    /// <summary>In SQL (unnest, sum per bucket): the reference, and the fallback when the cells would not fit <see cref="AnalyticsQuery.MaxSketchBytes"/>.</summary>
    Sql,
}
