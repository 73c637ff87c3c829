using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.Tls;

// These tests talk to a gateway serving a certificate from a throwaway test CA (or self-signed); what they check
// is the gateway's side of the handshake, so the client accepts any server certificate on purpose.
#pragma warning disable CA5359
namespace Portcullis.IntegrationTests.Tls;

/// <summary>
/// A client that sends its ClientHello and then closes the connection is not a refused handshake, let
/// alone "most likely a TLS 1.0/1.1-only client" (issue 14, item 4). Real TLS listener, raw sockets.
/// </summary>
public sealed class HandshakeAbortLogTests
{
    private static readonly string Tls = """
        listeners:
          - name: public
            address: "127.0.0.1:{{PORT}}"
            tls:
              certificates: [{ cert: api.pem, key: api.key }]
          - { name: admin, address: "127.0.0.1:{{ADMIN_PORT}}", admin: true }
        routes:
          - { name: all, match: { pathPrefix: / }, respond: { body: ok } }
        """;

    [Fact]
    public async Task Client_closing_after_its_hello_is_logged_as_such_and_a_tls11_client_is_still_refused()
    {
        using var certificate = DevCertificates.CreateServer(null, ["api.test"], DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30), null);
        var debug = new DebugLines();
        await using var gateway = await TestGateway.StartAsync(Tls,
            new Dictionary<string, string> { ["api.pem"] = DevCertificates.CertificatePem(certificate), ["api.key"] = DevCertificates.KeyPem(certificate) },
            configureServices: services =>
            {
                services.AddSingleton<ILoggerProvider>(debug);
                services.Configure<LoggerFilterOptions>(o => o.AddFilter("Portcullis.Tls", LogLevel.Debug));
            });

        // 1. The whole ClientHello, then the connection is closed (FIN) before the server's answer is read,
        //    as a load tool stopping or a client timing out does. The hello offers TLS 1.2 and 1.3, and
        //    also names TLS 1.0 in its record header.
        var hello = await CaptureClientHelloAsync();
        await SendAndCloseAsync(gateway.Port, hello);
        await Eventually.TrueAsync(() => debug.Any("closed by the client during the handshake"), "the abort to be logged", context: () => Task.FromResult($"logs:\n{gateway.Logs}\ndebug:\n{debug}"));
        // 2. Half a ClientHello, then closed: it never got as far as a hello.
        await SendAndCloseAsync(gateway.Port, hello[..(hello.Length / 2)]);
        await Eventually.TrueAsync(() => debug.Any("closed before a ClientHello"), "the early close to be logged", context: () => Task.FromResult($"logs:\n{gateway.Logs}\ndebug:\n{debug}"));

        Assert.DoesNotContain(gateway.Logs.Lines, l => l.Contains("TLS handshake", StringComparison.Ordinal));
        Assert.False(debug.Any("most likely"), debug.ToString());
        Assert.False(debug.Any("refused"), debug.ToString());
        var abort = debug.Lines.Single(l => l.Contains("closed by the client during the handshake", StringComparison.Ordinal));
        Assert.Contains("Debug:", abort, StringComparison.Ordinal);
        Assert.Contains("Tls12", abort, StringComparison.Ordinal);

        // 3. A real TLS 1.1-only client is refused for its version, at Information, and not as "closed by
        //    the client". (SslStream gives such a hello to no certificate selection and throws; that used
        //    to reach Kestrel as an unhandled error with a stack trace.)
#pragma warning disable SYSLIB0039 // TLS 1.1 is what is being refused.
        Assert.True(await TryTls11Async(gateway.Port), "the TLS 1.1 client did not send a hello");
#pragma warning restore SYSLIB0039, CA5397
        await Eventually.TrueAsync(() => gateway.Logs.Lines.Any(l => l.Contains("Refused 1 TLS handshake", StringComparison.Ordinal)), "the TLS 1.1 refusal", context: () => Task.FromResult($"logs:\n{gateway.Logs}\ndebug:\n{debug}"));
        var refused = gateway.Logs.Lines.Single(l => l.Contains("Refused 1 TLS handshake", StringComparison.Ordinal));
        Assert.StartsWith("Information:", refused, StringComparison.Ordinal);
        Assert.Contains("nothing newer than TLS 1.1", refused, StringComparison.Ordinal);
        Assert.DoesNotContain(gateway.Logs.Lines, l => l.StartsWith("Error:", StringComparison.Ordinal));
        Assert.Single(debug.Lines, l => l.Contains("closed by the client during the handshake", StringComparison.Ordinal));
    }

    /// <summary>A real ClientHello from SslStream (TLS 1.2 and 1.3), captured by a stream that sends nothing anywhere.</summary>
    private static async Task<byte[]> CaptureClientHelloAsync()
    {
        var capture = new CaptureStream();
        await using var ssl = new SslStream(capture);
        await Assert.ThrowsAnyAsync<Exception>(() => ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = "api.test",
            EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
            RemoteCertificateValidationCallback = (_, _, _, _) => true,
        }));
        Assert.True(capture.Written.Length > 50, $"captured {capture.Written.Length} bytes");
        return capture.Written;
    }

    private static async Task SendAndCloseAsync(int port, byte[] bytes)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, port);
        await socket.SendAsync(bytes);
        socket.Shutdown(SocketShutdown.Send);
        socket.Close();
    }

    /// <summary>True when the client got as far as sending a hello (OpenSSL may refuse TLS 1.1 locally).</summary>
    private static async Task<bool> TryTls11Async(int port)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, port);
        var counting = new CountingStream(tcp.GetStream());
        await using var ssl = new SslStream(counting);
        await Assert.ThrowsAnyAsync<Exception>(() => ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
        {
            TargetHost = "api.test",
#pragma warning disable SYSLIB0039, CA5397 // TLS 1.1 is offered on purpose: the gateway must refuse it
            EnabledSslProtocols = SslProtocols.Tls11,
#pragma warning restore SYSLIB0039, CA5397
            RemoteCertificateValidationCallback = (_, _, _, _) => true,
        }));
        return counting.Written > 0;
    }

    private sealed class CaptureStream : Stream
    {
        private readonly MemoryStream _written = new();

        public byte[] Written => _written.ToArray();

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => 0;

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => _written.Write(buffer, offset, count);
    }

    private sealed class CountingStream(Stream inner) : Stream
    {
        private int _written;

        public int Written => Volatile.Read(ref _written);

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Flush() => inner.Flush();

        public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => inner.ReadAsync(buffer, cancellationToken);

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count)
        {
            Interlocked.Add(ref _written, count);
            inner.Write(buffer, offset, count);
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            Interlocked.Add(ref _written, buffer.Length);
            return inner.WriteAsync(buffer, cancellationToken);
        }
    }

    /// <summary>Debug lines of the TLS categories (the shared collector keeps Information and up).</summary>
    private sealed class DebugLines : ILoggerProvider
    {
        private readonly ConcurrentQueue<string> _lines = new();

        public IReadOnlyCollection<string> Lines => _lines;

        public bool Any(string text) => _lines.Any(l => l.Contains(text, StringComparison.Ordinal));

        public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

        public void Dispose()
        {
        }

        public override string ToString() => string.Join("\n", _lines);

        private sealed class Logger(DebugLines owner, string category) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => category.StartsWith("Portcullis.Tls", StringComparison.Ordinal);

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                if (IsEnabled(logLevel)) owner._lines.Enqueue($"{logLevel}: {category}: {formatter(state, exception)}");
            }
        }
    }
}
