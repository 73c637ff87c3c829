using System.Buffers;

namespace Portcullis.Observability;

/// <summary>
/// Appends chained records to one audit file. Every append takes the file exclusively (FileShare.None:
/// an OS lock on Linux and Windows), so the gateway and `portcullis keys --audit` can write the same
/// file without breaking the chain: when the file is not the length this instance last left it at,
/// someone else appended and the chain continues from the file's real tail. A file that is empty or
/// missing continues from the tail of FILE.1 (the file rotated last), otherwise from genesis.
/// Not thread-safe: one writer per instance.
/// </summary>
internal sealed class AuditFile(string path, long maxSize, int maxFiles)
{
    private static readonly TimeSpan LockWait = TimeSpan.FromSeconds(10);

    private readonly ArrayBufferWriter<byte> _buffer = new(16 * 1024);
    private long _knownLength = -1;
    private AuditChainState _state;

    public string Path { get; } = path;

    /// <summary>Where the chain stands after the last append.</summary>
    public AuditChainState State => _state;

    /// <summary>Appends records (each a JSON object body) as chained lines, rotating first when they would not fit.</summary>
    public void Append(IReadOnlyList<byte[]> bodies)
    {
        if (bodies.Count == 0) return;
        var stream = OpenExclusive();
        try
        {
            var length = stream.Length;
            if (length != _knownLength) _state = Continue(stream);

            _buffer.ResetWrittenCount();
            var state = _state;
            foreach (var body in bodies) state = AuditChain.AppendLine(_buffer, state, body);

            if (maxSize > 0 && length > 0 && length + _buffer.WrittenCount > maxSize)
            {
                // Rotate while holding the old file; the chain goes on in the new one.
                stream.Dispose();
                RotatingFileSink.ShiftFiles(Path, maxFiles);
                stream = OpenExclusive();
                length = stream.Length;
            }

            stream.Seek(0, SeekOrigin.End);
            stream.Write(_buffer.WrittenSpan);
            stream.Flush(flushToDisk: true);
            _knownLength = length + _buffer.WrittenCount;
            _state = state;
        }
        catch
        {
            _knownLength = -1; // re-read the tail next time
            throw;
        }
        finally
        {
            stream.Dispose();
        }
    }

    private AuditChainState Continue(FileStream stream)
    {
        if (stream.Length > 0) return AuditChain.ReadTail(stream) ?? AuditChainState.Genesis;
        return AuditChain.ReadTail(Path + ".1") ?? AuditChainState.Genesis;
    }

    private FileStream OpenExclusive()
    {
        var deadline = Environment.TickCount64 + (long)LockWait.TotalMilliseconds;
        while (true)
        {
            try
            {
                return new FileStream(Path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.None);
            }
            catch (IOException) when (Environment.TickCount64 < deadline && File.Exists(Path))
            {
                // Another writer holds it (the gateway or the CLI); appends are short.
                Thread.Sleep(5);
            }
        }
    }
}
