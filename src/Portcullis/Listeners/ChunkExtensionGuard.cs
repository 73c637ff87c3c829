using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http;

namespace Portcullis.Listeners;

/// <summary>
/// Bounds chunk extensions (RFC 9112 §7.1.1: "a server ought to limit the total length of chunk extensions").
/// Kestrel parses chunked bodies itself and has no limit of its own for extensions: it skips them, counting
/// them only against the body-size limit, so a 64 KiB extension on a 10-byte chunk passes. This reader sits
/// between the connection and Kestrel (a connection middleware, after TLS) and passes every byte through
/// unchanged. For an HTTP/1.1 request with a chunked body, the gateway middleware (Hosting/GatewayMiddleware.cs) arms it
/// before the body is read; it then follows the chunk framing in the bytes Kestrel reads (sizes, extensions,
/// data lengths, trailers) only to measure each chunk's extension, and fails the read with a 400 when one is
/// longer than <see cref="MaxExtensionLength"/>, before Kestrel or the upstream gets those bytes. Kestrel stays
/// the only parser of the framing: on anything it does not expect the guard stops looking and leaves the
/// verdict to Kestrel, so it can refuse a request but never changes how one is read.
/// </summary>
internal sealed class ChunkExtensionGuard : PipeReader, IDuplexPipe
{
    /// <summary>The longest extension (the bytes between the chunk size and its CRLF) one chunk may carry.</summary>
    public const int MaxExtensionLength = 4096;

    // Kestrel's own maximum chunk size is 7FFFFFFF: more digits are its to refuse (and would overflow here).
    private const int MaxSizeDigits = 8;

    // Built once: the refusal names the configured limit, which never changes at run time.
    private static readonly string TooLongDetail = $"A chunk extension is longer than {MaxExtensionLength} bytes.";

    private readonly IDuplexPipe _transport;
    private ChunkScanner _scanner;
    private bool _armed;
    private ReadOnlySequence<byte> _buffer;
    private long _scannedAhead; // bytes at the start of the next buffer that were scanned already

    internal ChunkExtensionGuard(IDuplexPipe transport) => _transport = transport;

    /// <summary>True once a request on this connection was refused for its chunk extensions.</summary>
    public bool Refused { get; private set; }

    public PipeReader Input => this;

    public PipeWriter Output => _transport.Output;

    /// <summary>The connection middleware: every connection's input passes through a guard, found as a connection feature.</summary>
    public static ConnectionDelegate Middleware(ConnectionDelegate next) => connection =>
    {
        var guard = new ChunkExtensionGuard(connection.Transport);
        connection.Transport = guard;
        connection.Features.Set(guard);
        return next(connection);
    };

    /// <summary>
    /// Starts following a chunked body. Called while the request's head has been read and its body not yet:
    /// Kestrel has consumed the head, so the next buffer it reads starts with the body.
    /// </summary>
    public void Arm()
    {
        _scanner = default;
        _scannedAhead = 0;
        _armed = true;
    }

    public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
    {
        var pending = _transport.Input.ReadAsync(cancellationToken);
        if (!pending.IsCompletedSuccessfully) return ReadAwaitedAsync(pending);
        try
        {
            return new ValueTask<ReadResult>(Observe(pending.Result));
        }
        catch (BadHttpRequestException ex)
        {
            return ValueTask.FromException<ReadResult>(ex);
        }
    }

    public override bool TryRead(out ReadResult result)
    {
        if (!_transport.Input.TryRead(out result)) return false;
        result = Observe(result);
        return true;
    }

    public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

    public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
    {
        if (_armed)
        {
            _scannedAhead = Math.Max(0, _scannedAhead - _buffer.Slice(_buffer.Start, consumed).Length);
        }

        _buffer = default;
        _transport.Input.AdvanceTo(consumed, examined);
    }

    public override void CancelPendingRead() => _transport.Input.CancelPendingRead();

    public override void Complete(Exception? exception = null) => _transport.Input.Complete(exception);

    public override ValueTask CompleteAsync(Exception? exception = null) => _transport.Input.CompleteAsync(exception);

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<ReadResult> ReadAwaitedAsync(ValueTask<ReadResult> pending) => Observe(await pending);

    private ReadResult Observe(ReadResult result)
    {
        if (!_armed) return result;
        _buffer = result.Buffer;
        var fresh = result.Buffer.Slice(Math.Min(_scannedAhead, result.Buffer.Length));
        _scannedAhead = result.Buffer.Length;
        foreach (var segment in fresh)
        {
            switch (_scanner.Scan(segment.Span))
            {
                case ChunkScan.TooLong:
                    _armed = false;
                    _scannedAhead = 0;
                    Refused = true;
                    // Nothing of this buffer reaches Kestrel: hand it back unread, then fail the body read.
                    _buffer = default;
                    _transport.Input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
                    throw new BadHttpRequestException(TooLongDetail, StatusCodes.Status400BadRequest);
                case ChunkScan.Done:
                    _armed = false;
                    _scannedAhead = 0; // the body ended (or its framing is Kestrel's to refuse); what follows is not ours
                    return result;
            }
        }

        return result;
    }

    private enum ChunkScan
    {
        More,
        Done,
        TooLong,
    }

    /// <summary>Where the guard is in a chunked body: just enough state to find each chunk's extension.</summary>
    private struct ChunkScanner
    {
        private State _state;
        private long _size;
        private int _digits;
        private int _extension;

        private enum State : byte
        {
            Size = 0,
            Extension,
            SizeLf,
            Data,
            DataCr,
            DataLf,
            TrailerLineStart,
            TrailerLine,
            TrailerLf,
            TrailerEndLf,
        }

        public ChunkScan Scan(ReadOnlySpan<byte> bytes)
        {
            var i = 0;
            while (i < bytes.Length)
            {
                var b = bytes[i];
                switch (_state)
                {
                    case State.Size:
                        if (!ScanSize(b)) return ChunkScan.Done;
                        i++;
                        break;
                    case State.Extension:
                        if (ScanExtension(bytes[i..]) is not { } used) return _extension > MaxExtensionLength ? ChunkScan.TooLong : ChunkScan.More;
                        if (used < 0) return ChunkScan.Done;
                        i += used;
                        break;
                    case State.SizeLf:
                        if (b != '\n') return ChunkScan.Done;
                        _state = _size == 0 ? State.TrailerLineStart : State.Data;
                        i++;
                        break;
                    case State.Data:
                        var skip = (int)Math.Min(_size, bytes.Length - i);
                        _size -= skip;
                        i += skip;
                        if (_size == 0) _state = State.DataCr;
                        break;
                    case State.DataCr:
                        if (b != '\r') return ChunkScan.Done;
                        _state = State.DataLf;
                        i++;
                        break;
                    case State.DataLf:
                        if (b != '\n') return ChunkScan.Done;
                        this = default; // next chunk
                        i++;
                        break;
                    case State.TrailerLineStart:
                        _state = b == '\r' ? State.TrailerEndLf : State.TrailerLine;
                        i++;
                        break;
                    case State.TrailerLine:
                        // Trailer fields are bounded by Kestrel's header limits.
                        var lineEnd = bytes[i..].IndexOf((byte)'\r');
                        if (lineEnd < 0) return ChunkScan.More;
                        _state = State.TrailerLf;
                        i += lineEnd + 1;
                        break;
                    case State.TrailerLf:
                        if (b != '\n') return ChunkScan.Done;
                        _state = State.TrailerLineStart;
                        i++;
                        break;
                    case State.TrailerEndLf:
                        return ChunkScan.Done;
                }
            }

            return ChunkScan.More;
        }

        /// <summary>One byte of a chunk-size line; false when the framing is not ours to follow (Kestrel decides).</summary>
        private bool ScanSize(byte b)
        {
            var digit = HexValue(b);
            if (digit >= 0 && _digits < MaxSizeDigits)
            {
                _size = (_size << 4) | (uint)digit;
                _digits++;
            }
            else if (_digits > 0 && b is (byte)';' or (byte)' ' or (byte)'\t')
            {
                _state = State.Extension;
                _extension = 1;
            }
            else if (_digits > 0 && b == '\r')
            {
                _state = State.SizeLf;
            }
            else
            {
                return false;
            }

            return true;
        }

        /// <summary>
        /// Counts extension bytes up to the line end: the bytes used (through the CR), -1 at a bare LF (Kestrel's
        /// to refuse), or null when the extension goes on past <paramref name="rest"/> or is already too long.
        /// </summary>
        private int? ScanExtension(ReadOnlySpan<byte> rest)
        {
            // Kestrel ends an extension at the first CR or LF; a bare LF is its to refuse.
            var end = rest.IndexOfAny((byte)'\r', (byte)'\n');
            _extension += end < 0 ? rest.Length : end;
            if (_extension > MaxExtensionLength || end < 0) return null;
            if (rest[end] == '\n') return -1;
            _state = State.SizeLf;
            return end + 1;
        }

        private static int HexValue(byte b) => b switch
        {
            >= (byte)'0' and <= (byte)'9' => b - '0',
            >= (byte)'a' and <= (byte)'f' => b - 'a' + 10,
            >= (byte)'A' and <= (byte)'F' => b - 'A' + 10,
            _ => -1,
        };
    }
}
