using System.Text;
using Portcullis.Observability;

namespace Portcullis.Tests.Observability;

/// <summary>The audit chain format, appending (tail continuation, rotation) and `audit verify`.</summary>
public sealed class AuditChainTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("portcullis-audit-unit-").FullName;

    private string Audit => Path.Combine(_directory, "audit.log");

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static byte[] Body(int i) => Encoding.UTF8.GetBytes($"{{\"type\":\"test\",\"n\":{i}}}");

    private void Write(int count, long maxSize = 0, int maxFiles = 0)
    {
        var file = new AuditFile(Audit, maxSize, maxFiles);
        for (var i = 1; i <= count; i++) file.Append([Body(i)]);
    }

    private string[] Lines() => File.ReadAllText(Audit).Split('\n', StringSplitOptions.RemoveEmptyEntries);

    private void Rewrite(IEnumerable<string> lines) => File.WriteAllText(Audit, string.Join('\n', lines) + "\n");

    [Fact]
    public void Records_chain_from_genesis_and_verify()
    {
        Write(10);
        var lines = Lines();
        Assert.Equal(10, lines.Length);
        Assert.StartsWith("{\"seq\":1,\"prev\":\"" + AuditChain.GenesisHash + "\",\"type\":\"test\",\"n\":1}", lines[0], StringComparison.Ordinal);
        Assert.Contains($"\"prev\":\"{AuditChain.Hash(Encoding.UTF8.GetBytes(lines[0]))}\"", lines[1], StringComparison.Ordinal);
        var result = AuditVerifier.Verify([Audit]);
        Assert.True(result.Ok, result.ToString());
        Assert.Equal(10, result.Records);
        Assert.Equal("ok: 10 records (seq 1..10)", result.ToString());
    }

    [Fact]
    public void A_new_writer_continues_from_the_tail()
    {
        Write(3);
        var again = new AuditFile(Audit, 0, 0);
        again.Append([Body(4), Body(5)]);
        Assert.Equal(5, again.State.Seq);
        Assert.True(AuditVerifier.Verify([Audit]).Ok);
    }

    [Fact]
    public void Two_writers_on_one_file_keep_one_chain()
    {
        var gateway = new AuditFile(Audit, 0, 0);
        var cli = new AuditFile(Audit, 0, 0);
        gateway.Append([Body(1)]);
        cli.Append([Body(2)]);
        gateway.Append([Body(3)]); // notices the file grew and re-reads the tail
        var result = AuditVerifier.Verify([Audit]);
        Assert.True(result.Ok, result.ToString());
        Assert.Equal(3, result.Records);
    }

    [Fact]
    public void Editing_a_line_fails_at_that_line()
    {
        Write(10);
        var lines = Lines();
        lines[4] = lines[4].Replace("\"n\":5", "\"n\":6", StringComparison.Ordinal);
        Rewrite(lines);
        var result = AuditVerifier.Verify([Audit]);
        Assert.False(result.Ok);
        Assert.Equal(5, result.Line);
        Assert.Equal(5, result.Seq);
        Assert.Contains("hash mismatch", result.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Deleting_a_line_fails_where_it_was()
    {
        Write(10);
        var lines = Lines().ToList();
        lines.RemoveAt(4);
        Rewrite(lines);
        var result = AuditVerifier.Verify([Audit]);
        Assert.False(result.Ok);
        Assert.Equal(5, result.Line);
        Assert.Equal(6, result.Seq);
        Assert.Contains("seq gap: expected seq 5", result.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Swapping_two_lines_fails_at_the_first_of_them()
    {
        Write(10);
        var lines = Lines();
        (lines[3], lines[4]) = (lines[4], lines[3]);
        Rewrite(lines);
        var result = AuditVerifier.Verify([Audit]);
        Assert.False(result.Ok);
        Assert.Equal(4, result.Line);
        Assert.Contains("seq gap", result.Problem, StringComparison.Ordinal);
        Assert.Equal($"{Audit}:4: record seq 5: {result.Problem}", result.ToString());
    }

    [Fact]
    public void An_unparsable_line_is_named()
    {
        Write(4);
        var lines = Lines();
        lines[2] = lines[2][..20];
        Rewrite(lines);
        var result = AuditVerifier.Verify([Audit]);
        Assert.False(result.Ok);
        Assert.Equal(3, result.Line);
        Assert.StartsWith("unparsable", result.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Editing_the_first_line_breaks_the_genesis_link_or_the_next_one()
    {
        Write(3);
        var lines = Lines();
        lines[0] = lines[0].Replace("\"n\":1", "\"n\":9", StringComparison.Ordinal);
        Rewrite(lines);
        var result = AuditVerifier.Verify([Audit]);
        Assert.False(result.Ok);
        Assert.Equal(1, result.Line);
    }

    [Fact]
    public void Rotation_chains_the_new_file_to_the_last_record_of_the_old_one()
    {
        Write(40, maxSize: 4096, maxFiles: 5);
        var files = Directory.GetFiles(_directory, "audit.log*").OrderByDescending(f => f.Length).ThenByDescending(f => f, StringComparer.Ordinal).ToArray();
        Assert.True(files.Length >= 2, string.Join(", ", files));
        var result = AuditVerifier.Verify(files);
        Assert.True(result.Ok, result.ToString());
        Assert.Equal(40, result.Records);

        // The current file alone starts mid-chain: its first prev is taken as given.
        var alone = AuditVerifier.Verify([Audit]);
        Assert.True(alone.Ok, alone.ToString());
        Assert.True(alone.FirstSeq > 1);

        // A writer started after rotation continues from the current file's tail.
        var again = new AuditFile(Audit, 4096, 5);
        again.Append([Body(41)]);
        Assert.Equal(41, again.State.Seq);
    }

    [Fact]
    public void An_empty_current_file_continues_from_the_rotated_one()
    {
        Write(3);
        File.Move(Audit, Audit + ".1");
        var file = new AuditFile(Audit, 0, 0);
        file.Append([Body(4)]);
        Assert.Equal(4, file.State.Seq);
        Assert.True(AuditVerifier.Verify([Audit + ".1", Audit]).Ok);
    }

    [Fact]
    public void The_tail_of_a_long_file_is_read_without_reading_it_all()
    {
        var file = new AuditFile(Audit, 0, 0);
        var big = Encoding.UTF8.GetBytes("{\"type\":\"big\",\"pad\":\"" + new string('x', 40_000) + "\"}");
        file.Append([Body(1), big]);
        var state = AuditChain.ReadTail(Audit);
        Assert.Equal(2, state!.Value.Seq);
        Assert.Equal(file.State, state.Value);
    }
}
