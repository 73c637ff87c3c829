using System.IO.Pipelines;
using Microsoft.AspNetCore.Connections;

namespace Portcullis.Tls;

/// <summary>
/// The connection's transport as the TLS layer sees it, noting whether the client closed its side (end
/// of stream, or a reset) while the handshake was still running. Kestrel swallows the handshake's
/// exception, and a client that simply goes away mid-handshake (a load tool stopping, a health check,
/// a browser cancelling a speculative connection) is otherwise indistinguishable from one the gateway
/// refused. Once the handshake completed, reads are passed straight through.
/// </summary>
internal sealed class HandshakeTransport(IDuplexPipe inner, HandshakeState state) : IDuplexPipe
{
    private readonly HandshakeInput _input = new(inner.Input, state);

    public PipeReader Input => _input;

    public PipeWriter Output => inner.Output;

    private sealed class HandshakeInput(PipeReader inner, HandshakeState state) : PipeReader
    {
        public override ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default) =>
            state.Completed ? inner.ReadAsync(cancellationToken) : TrackAsync(cancellationToken);

        private async ValueTask<ReadResult> TrackAsync(CancellationToken cancellationToken)
        {
            try
            {
                return Track(await inner.ReadAsync(cancellationToken).ConfigureAwait(false));
            }
            catch (ConnectionResetException)
            {
                state.ClientClosed = true;
                throw;
            }
        }

        public override bool TryRead(out ReadResult result)
        {
            if (!inner.TryRead(out result)) return false;
            if (!state.Completed) Track(result);
            return true;
        }

        // Only an empty, completed read is the client's end of stream: data that arrives together with the
        // end (an alert, say) is what the TLS layer acts on, and it fails for that reason.
        private ReadResult Track(ReadResult result)
        {
            if (result.IsCompleted && result.Buffer.IsEmpty) state.ClientClosed = true;
            return result;
        }

        public override void AdvanceTo(SequencePosition consumed) => inner.AdvanceTo(consumed);

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined) => inner.AdvanceTo(consumed, examined);

        public override void CancelPendingRead() => inner.CancelPendingRead();

        public override void Complete(Exception? exception = null) => inner.Complete(exception);

        public override ValueTask CompleteAsync(Exception? exception = null) => inner.CompleteAsync(exception);
    }
}
