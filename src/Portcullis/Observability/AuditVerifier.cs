using System.Text.Json;

namespace Portcullis.Observability;

/// <summary>The outcome of checking audit files: ok with a record count, or the first broken record.</summary>
internal sealed record AuditVerifyResult(bool Ok, long Records, long FirstSeq, long LastSeq, string? File, long Line, long? Seq, string? Problem)
{
    public override string ToString() => Ok
        ? Records == 0 ? "ok: no records" : $"ok: {Records} records (seq {FirstSeq}..{LastSeq})"
        : $"{File}:{Line}: {(Seq is { } s ? $"record seq {s}" : "record")}: {Problem}";
}

/// <summary>
/// Checks hash-chained audit files (<see cref="AuditChain"/>) given oldest first: every line must be
/// a JSON object with the next seq and, as prev, the SHA-256 of the line before it. The first line of
/// the first file chains to genesis when its seq is 1; with a higher seq (older files rotated away or
/// not given) its prev is taken as given.
/// </summary>
internal static class AuditVerifier
{
    public static AuditVerifyResult Verify(IReadOnlyList<string> files)
    {
        long records = 0, firstSeq = 0, lastSeq = 0;
        string? lastHash = null;
        string? lastFile = null;
        long lastLineNumber = 0;
        foreach (var file in files)
        {
            byte[] content;
            try
            {
                content = ReadAllBytes(file);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                return Broken(file, 0, null, $"cannot read the file: {e.Message}");
            }

            var rest = content.AsSpan();
            long lineNumber = 0;
            while (!rest.IsEmpty)
            {
                lineNumber++;
                var end = rest.IndexOf((byte)'\n');
                var line = end < 0 ? rest : rest[..end];
                rest = end < 0 ? default : rest[(end + 1)..];

                if (!TryParse(line, out var seq, out var prev, out var problem))
                {
                    return Broken(file, lineNumber, AuditChain.TryReadSeq(line, out var s) ? s : null, problem);
                }

                if (lastHash is null)
                {
                    if (seq == 1 && prev != AuditChain.GenesisHash) return Broken(file, lineNumber, seq, "hash mismatch: the first record (seq 1) must chain to the genesis value (64 zeros)");
                    firstSeq = seq;
                }
                else if (seq != lastSeq + 1)
                {
                    return Broken(file, lineNumber, seq, seq <= lastSeq
                        ? $"seq gap: expected seq {lastSeq + 1} after seq {lastSeq}, found {seq} (records reordered or repeated)"
                        : $"seq gap: expected seq {lastSeq + 1} after seq {lastSeq}, found {seq} ({seq - lastSeq - 1} record(s) missing or reordered)");
                }
                else if (prev != lastHash)
                {
                    // The line before no longer hashes to what this record recorded: it was edited
                    // (or this record's prev was).
                    return Broken(lastFile!, lastLineNumber, lastSeq,
                        $"hash mismatch: the SHA-256 of this line does not match the prev of the next record ({(ReferenceEquals(lastFile, file) ? "line " + lineNumber : file + ":" + lineNumber)}); this record was changed");
                }

                records++;
                lastSeq = seq;
                lastHash = AuditChain.Hash(line);
                lastFile = file;
                lastLineNumber = lineNumber;
            }
        }

        return new AuditVerifyResult(true, records, firstSeq, lastSeq, null, 0, null, null);
    }

    // A running writer holds the file exclusively for the moment of an append: try again briefly.
    private static byte[] ReadAllBytes(string file)
    {
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                return File.ReadAllBytes(file);
            }
            catch (IOException) when (attempt < 50 && File.Exists(file))
            {
                Thread.Sleep(20);
            }
        }
    }

    private static AuditVerifyResult Broken(string file, long line, long? seq, string problem) =>
        new(false, 0, 0, 0, file, line, seq, problem);

    private static bool TryParse(ReadOnlySpan<byte> line, out long seq, out string prev, out string problem)
    {
        seq = 0;
        prev = "";
        problem = "";
        if (line.IsEmpty)
        {
            problem = "unparsable: empty line";
            return false;
        }

        JsonDocument document;
        try
        {
            var reader = new Utf8JsonReader(line);
            if (!JsonDocument.TryParseValue(ref reader, out var parsed) || parsed is null || reader.BytesConsumed != line.Length)
            {
                parsed?.Dispose();
                problem = "unparsable: not one JSON value";
                return false;
            }

            document = parsed;
        }
        catch (JsonException e)
        {
            // Our own words: System.Text.Json's message speaks of its reader's zero-based positions.
            problem = $"unparsable: not valid JSON (at byte {(e.BytePositionInLine ?? 0) + 1} of the line)";
            return false;
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                problem = "unparsable: not a JSON object";
                return false;
            }

            if (!root.TryGetProperty("seq", out var seqElement) || seqElement.ValueKind != JsonValueKind.Number || !seqElement.TryGetInt64(out seq) || seq < 1)
            {
                problem = "unparsable: no positive integer seq";
                return false;
            }

            if (!root.TryGetProperty("prev", out var prevElement) || prevElement.ValueKind != JsonValueKind.String || prevElement.GetString() is not { Length: 64 } p)
            {
                problem = "unparsable: no prev (64 hex digits)";
                return false;
            }

            prev = p;
            return true;
        }
    }
}
