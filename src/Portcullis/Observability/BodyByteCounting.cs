using System.IO.Pipelines;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Portcullis.Pipeline;

namespace Portcullis.Observability;

/// <summary>
/// Body sizes for the access log and analytics (one definition, so they agree). A body with a Content-Length has
/// that size; one without (chunked HTTP/1.1, most HTTP/2 and HTTP/3 bodies) is counted as it passes: Kestrel tells
/// neither how many body bytes it read nor wrote. Counting is installed by <see cref="Install"/> only when a consumer
/// of the sizes is on (analytics, or an access log with bytesIn/bytesOut), so with both off nothing is allocated.
/// </summary>
internal static class BodyByteCounting
{
    /// <summary>
    /// Wraps the response body (and a request body without Content-Length) in counting streams. Costs one object
    /// per request for the response (its size is only known once written), one more for a request body without length.
    /// </summary>
    public static void Install(HttpContext context, GatewayFeature gateway)
    {
        var request = context.Request;
        if (request.ContentLength is null && context.Features.Get<IHttpRequestBodyDetectionFeature>() is not { CanHaveBody: false })
        {
            gateway.RequestBodyRead = 0;
            request.Body = new CountingRequestBody(request.Body, gateway);
        }

        if (context.Features.Get<IHttpResponseBodyFeature>() is { } body)
        {
            gateway.ResponseBodyWritten = 0;
            context.Features.Set<IHttpResponseBodyFeature>(new CountingResponseBody(body, gateway));
        }
    }

    /// <summary>Request body bytes: the Content-Length, else the bytes read; 0 when it cannot have a body; −1 unknown.</summary>
    public static long BytesIn(HttpContext context, GatewayFeature gateway)
    {
        if (context.Request.ContentLength is { } length) return length;
        if (gateway.RequestBodyRead >= 0) return gateway.RequestBodyRead;
        return context.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody == false ? 0 : -1;
    }

    /// <summary>Response body bytes: the Content-Length, else the bytes written; −1 unknown (not counted).</summary>
    public static long BytesOut(HttpContext context, GatewayFeature gateway) => context.Response.ContentLength ?? gateway.ResponseBodyWritten;
}

/// <summary>The request body, counting the bytes read from it into <see cref="GatewayFeature.RequestBodyRead"/>.</summary>
internal sealed class CountingRequestBody(Stream inner, GatewayFeature gateway) : Stream
{
    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override int Read(byte[] buffer, int offset, int count) => Counted(inner.Read(buffer, offset, count));

    public override int Read(Span<byte> buffer) => Counted(inner.Read(buffer));

    public override async Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        Counted(await inner.ReadAsync(buffer.AsMemory(offset, count), cancellationToken).ConfigureAwait(false));

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var pending = inner.ReadAsync(buffer, cancellationToken);
        return pending.IsCompletedSuccessfully ? new ValueTask<int>(Counted(pending.Result)) : Awaited(pending);
    }

    private async ValueTask<int> Awaited(ValueTask<int> pending) => Counted(await pending.ConfigureAwait(false));

    // Reads of one body are sequential (a stream allows one read at a time), and the completion reads the sum after them.
    private int Counted(int read)
    {
        gateway.RequestBodyRead += read;
        return read;
    }

    public override void Flush() { }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

/// <summary>
/// The response body feature, counting what is written through its stream (what YARP copies the upstream's body to),
/// its pipe writer (created over the same stream, only if used) and SendFileAsync into <see cref="GatewayFeature.ResponseBodyWritten"/>.
/// </summary>
internal sealed class CountingResponseBody(IHttpResponseBodyFeature inner, GatewayFeature gateway) : Stream, IHttpResponseBodyFeature
{
    private PipeWriter? _writer;

    Stream IHttpResponseBodyFeature.Stream => this;

    public PipeWriter Writer => _writer ??= PipeWriter.Create(this, new StreamPipeWriterOptions(leaveOpen: true));

    public void DisableBuffering() => inner.DisableBuffering();

    public Task StartAsync(CancellationToken cancellationToken = default) => inner.StartAsync(cancellationToken);

    public async Task SendFileAsync(string path, long offset, long? count, CancellationToken cancellationToken = default)
    {
        await inner.SendFileAsync(path, offset, count, cancellationToken).ConfigureAwait(false);
        gateway.ResponseBodyWritten += count ?? new FileInfo(path).Length - offset;
    }

    public async Task CompleteAsync()
    {
        if (_writer is not null) await _writer.FlushAsync().ConfigureAwait(false);
        await inner.CompleteAsync().ConfigureAwait(false);
    }

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override void Write(byte[] buffer, int offset, int count)
    {
        inner.Stream.Write(buffer, offset, count);
        gateway.ResponseBodyWritten += count;
    }

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        inner.Stream.Write(buffer);
        gateway.ResponseBodyWritten += buffer.Length;
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        // Counted when handed on: a write that then fails has its bytes counted, as the connection may have sent part of them.
        gateway.ResponseBodyWritten += buffer.Length;
        return inner.Stream.WriteAsync(buffer, cancellationToken);
    }

    public override void Flush() => inner.Stream.Flush();

    public override Task FlushAsync(CancellationToken cancellationToken) => inner.Stream.FlushAsync(cancellationToken);

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}
