using Portcullis.Configuration;

namespace Portcullis.Observability;

/// <summary>Where formatted access-log lines go. Called by the background writer only (one at a time).</summary>
internal interface IAccessLogSink : IAsyncDisposable
{
    /// <summary>Writes whole lines (each ends in '\n').</summary>
    ValueTask WriteAsync(ReadOnlyMemory<byte> lines, CancellationToken cancellationToken);
}

/// <summary>Makes the sink a configuration asks for (replaceable: tests slow it down).</summary>
internal interface IAccessLogSinkFactory
{
    IAccessLogSink Create(CompiledAccessLog options);
}

internal sealed class AccessLogSinkFactory : IAccessLogSinkFactory
{
    public IAccessLogSink Create(CompiledAccessLog options) => options.Target == AccessLogTarget.File
        ? new RotatingFileSink(options.Path!, options.MaxSize, options.MaxFiles)
        : new StreamSink(Console.OpenStandardOutput());
}

/// <summary>Standard output (or any stream): each batch is one write, flushed.</summary>
internal sealed class StreamSink(Stream stream) : IAccessLogSink
{
    public async ValueTask WriteAsync(ReadOnlyMemory<byte> lines, CancellationToken cancellationToken)
    {
        await stream.WriteAsync(lines, cancellationToken);
        await stream.FlushAsync(cancellationToken);
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask; // stdout stays open for the process
}

/// <summary>
/// Appends to a file and rotates by size at a line boundary: FILE → FILE.1 → … → FILE.maxFiles (the
/// oldest is deleted). A line longer than maxSize on its own still goes whole into a fresh file.
/// </summary>
internal sealed class RotatingFileSink : IAccessLogSink
{
    private readonly string _path;
    private readonly long _maxSize;
    private readonly int _maxFiles;
    private FileStream? _stream;
    private long _size;

    public RotatingFileSink(string path, long maxSize, int maxFiles)
    {
        _path = path;
        _maxSize = maxSize;
        _maxFiles = maxFiles;
    }

    // Synchronous writes on the writer's background task: .NET has no asynchronous file I/O on Linux (an
    // "async" write is a synchronous one on another pool thread), and batches are written whole, so the
    // stream keeps no buffer of its own.
    public ValueTask WriteAsync(ReadOnlyMemory<byte> lines, CancellationToken cancellationToken)
    {
        var stream = Open();
        var rest = lines.Span;
        while (!rest.IsEmpty)
        {
            if (_size + rest.Length <= _maxSize)
            {
                stream.Write(rest);
                _size += rest.Length;
                break;
            }

            // Write the whole lines that still fit (a batch can hold many), then rotate.
            var room = (int)Math.Max(0, Math.Min(rest.Length, _maxSize - _size));
            var fit = room == 0 ? -1 : rest[..room].LastIndexOf((byte)'\n');
            if (fit < 0 && _size == 0)
            {
                // One line longer than maxSize on its own goes whole into this fresh file.
                fit = rest.IndexOf((byte)'\n');
                if (fit < 0) fit = rest.Length - 1;
            }

            if (fit >= 0)
            {
                stream.Write(rest[..(fit + 1)]);
                _size += fit + 1;
                rest = rest[(fit + 1)..];
                if (rest.IsEmpty) break;
            }

            stream = Rotate();
        }

        return ValueTask.CompletedTask;
    }

    private FileStream Open()
    {
        if (_stream is not null) return _stream;
        var directory = Path.GetDirectoryName(_path);
        if (!string.IsNullOrEmpty(directory)) Directory.CreateDirectory(directory);
        _stream = new FileStream(_path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete, bufferSize: 0, FileOptions.None);
        _size = _stream.Length;
        return _stream;
    }

    private FileStream Rotate()
    {
        _stream?.Dispose();
        _stream = null;
        ShiftFiles(_path, _maxFiles);
        return Open();
    }

    /// <summary>FILE → FILE.1 → … → FILE.maxFiles (the oldest is deleted; maxFiles 0 deletes FILE). Also used by the audit log.</summary>
    internal static void ShiftFiles(string path, int maxFiles)
    {
        if (maxFiles <= 0)
        {
            File.Delete(path);
            return;
        }

        File.Delete($"{path}.{maxFiles}");
        for (var i = maxFiles - 1; i >= 1; i--)
        {
            var from = $"{path}.{i}";
            if (File.Exists(from)) File.Move(from, $"{path}.{i + 1}");
        }

        File.Move(path, path + ".1");
    }

    public async ValueTask DisposeAsync()
    {
        if (_stream is not null) await _stream.DisposeAsync();
        _stream = null;
    }
}
