using System.Buffers;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Portcullis.Observability;

/// <summary>Where a chain stands: the last record's sequence number and the SHA-256 of its line.</summary>
internal readonly record struct AuditChainState(long Seq, string Hash)
{
    /// <summary>What the first record of a new chain points at: 64 zeros.</summary>
    public static readonly AuditChainState Genesis = new(0, AuditChain.GenesisHash);
}

/// <summary>
/// The audit log's chain format. Every record is one JSON line that starts with
/// <c>{"seq":N,"prev":"HEX",</c> followed by the record's own fields; <c>prev</c> is the lowercase hex
/// SHA-256 of the previous record's exact line bytes (UTF-8, without the '\n'). The first record of a
/// chain has seq 1 and prev = 64 zeros (genesis); a rotated file's first record chains to the last
/// record of the file before it.
/// </summary>
internal static class AuditChain
{
    public const string GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000";

    /// <summary>Lowercase hex SHA-256 of one line (without its newline).</summary>
    public static string Hash(ReadOnlySpan<byte> line)
    {
        Span<byte> digest = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(line, digest);
        return Convert.ToHexStringLower(digest);
    }

    /// <summary>
    /// Appends one chained line (with its '\n') for a record body — a JSON object such as
    /// <c>{"time":...,"type":...}</c> — and returns the chain's new state.
    /// </summary>
    public static AuditChainState AppendLine(ArrayBufferWriter<byte> output, AuditChainState previous, ReadOnlySpan<byte> body)
    {
        if (body.Length < 2 || body[0] != (byte)'{' || body[^1] != (byte)'}') throw new ArgumentException("An audit record body must be a JSON object.", nameof(body));
        var seq = previous.Seq + 1;
        var start = output.WrittenCount;
        var prefix = Encoding.ASCII.GetBytes($"{{\"seq\":{seq.ToString(CultureInfo.InvariantCulture)},\"prev\":\"{previous.Hash}\"");
        output.Write(prefix);
        if (body.Length > 2)
        {
            output.Write(","u8);
            output.Write(body[1..]);
        }
        else
        {
            output.Write("}"u8);
        }

        var line = output.WrittenSpan[start..];
        var state = new AuditChainState(seq, Hash(line));
        output.Write("\n"u8);
        return state;
    }

    /// <summary>
    /// The chain state at the end of a file: its last complete line's seq and hash. Null when the file
    /// is missing or empty. Reads only the tail. A last line that does not parse still gives its hash
    /// (the chain continues after it; verify reports it) with the seq that the line before it implies.
    /// </summary>
    public static AuditChainState? ReadTail(string path)
    {
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        }
        catch (FileNotFoundException)
        {
            return null;
        }
        catch (DirectoryNotFoundException)
        {
            return null;
        }

        using (stream)
        {
            return ReadTail(stream);
        }
    }

    internal static AuditChainState? ReadTail(Stream stream)
    {
        var length = stream.Length;
        if (length == 0) return null;
        // Grow the window backwards until it holds the whole last line (records are small).
        var window = (int)Math.Min(length, 16 * 1024);
        while (true)
        {
            var buffer = new byte[window];
            stream.Position = length - window;
            stream.ReadExactly(buffer);
            var content = buffer.AsSpan();
            if (content[^1] == (byte)'\n') content = content[..^1];
            var newline = content.LastIndexOf((byte)'\n');
            if (newline < 0 && window < length)
            {
                window = (int)Math.Min(length, (long)window * 4);
                continue;
            }

            var line = content[(newline + 1)..];
            var hash = Hash(line);
            if (TryReadSeq(line, out var seq)) return new AuditChainState(seq, hash);
            // Damaged last line: chain after it, one past the last seq we can read.
            var before = newline < 0 ? null : ReadTail(new MemoryStream(buffer, 0, newline + 1));
            return new AuditChainState((before?.Seq ?? 0) + 1, hash);
        }
    }

    /// <summary>The seq of a line, if the line is a JSON object with a numeric seq.</summary>
    public static bool TryReadSeq(ReadOnlySpan<byte> line, out long seq)
    {
        seq = 0;
        try
        {
            var reader = new Utf8JsonReader(line);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject) return false;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var isSeq = reader.ValueTextEquals("seq"u8);
                if (!reader.Read()) return false;
                if (isSeq) return reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out seq);
                reader.Skip();
            }
        }
        catch (JsonException)
        {
        }

        return false;
    }
}
