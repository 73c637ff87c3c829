using Portcullis.Pipeline;

namespace Portcullis.Routing;

/// <summary>
/// The request body as the forwarder reads it, passed through <see cref="JsonBodyValidator"/>: a read that breaks
/// a limit throws instead of handing the bytes on, so the upstream never receives the offending part and the
/// forwarder abandons the request (a client-side body error; <see cref="JsonLimitsMiddleware"/> answers it).
/// </summary>
internal sealed class JsonLimitsStream(Stream inner, JsonBodyValidator validator) : Stream
{
    private bool _ended;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var read = await inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
        // A zero-byte read (the forwarder waits for data without holding a buffer) is not the end of the body.
        if (read > 0 || !buffer.IsEmpty) Check(buffer.Span[..read]);
        return read;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count)
    {
        var read = inner.Read(buffer, offset, count);
        if (read > 0 || count > 0) Check(buffer.AsSpan(offset, read));
        return read;
    }

    private void Check(ReadOnlySpan<byte> read)
    {
        if (_ended) return;
        ReasonCode? refusal;
        if (read.IsEmpty)
        {
            _ended = true;
            refusal = validator.Complete();
        }
        else
        {
            refusal = validator.Feed(read);
        }

        if (refusal is not null) throw new JsonLimitException(refusal);
    }

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

/// <summary>A JSON body broke a route's limit (its message is the reason code, never body content).</summary>
internal sealed class JsonLimitException(ReasonCode reason) : IOException(reason.Code)
{
    public ReasonCode Reason { get; } = reason;
}
