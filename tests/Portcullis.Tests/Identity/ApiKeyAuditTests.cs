using System.Text.Json;
using Microsoft.Extensions.Time.Testing;
using Portcullis.Cli;

namespace Portcullis.Tests.Identity;

/// <summary>The audit records of `portcullis keys create|rotate|revoke --audit FILE` name the keys they changed (issue 18, item 14).</summary>
public sealed class ApiKeyAuditTests : IDisposable
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 3, 1, 12, 0, 0, TimeSpan.Zero));
    private readonly string _directory = Directory.CreateTempSubdirectory("portcullis-keys-audit-").FullName;

    private string KeyFile => Path.Combine(_directory, "keys.yaml");

    private string AuditFile => Path.Combine(_directory, "audit.log");

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task KeyCommands_AuditTheKeyIdsTheyChanged_NeverNull()
    {
        var created = Line(await KeysAsync("create", "--file", KeyFile, "--consumer", "shop"), "key-id");
        var second = Line(await KeysAsync("create", "--file", KeyFile, "--consumer", "shop"), "key-id");
        var rotated = Line(await KeysAsync("rotate", "--file", KeyFile, "--consumer", "shop", "--overlap", "1h"), "key-id");
        await KeysAsync("revoke", "--file", KeyFile, "--key-id", created);
        await KeysAsync("revoke", "--file", KeyFile, "--consumer", "shop");

        var text = await File.ReadAllTextAsync(AuditFile);
        Assert.DoesNotContain("null", text, StringComparison.Ordinal);
        var records = text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(5, records.Count);

        Assert.Equal(("keys.create", "shop", created), (Type(records[0]), records[0].GetProperty("consumer").GetString(), records[0].GetProperty("keyId").GetString()));
        Assert.Equal(second, records[1].GetProperty("keyId").GetString());
        Assert.Equal(("keys.rotate", rotated), (Type(records[2]), records[2].GetProperty("keyId").GetString()));
        // Revoking by key id names the key's consumer too.
        Assert.Equal(("keys.revoke", "shop", created), (Type(records[3]), records[3].GetProperty("consumer").GetString(), records[3].GetProperty("keyId").GetString()));
        // Revoking a consumer lists the keys it revoked (not the one already revoked).
        Assert.Equal(new[] { second, rotated }, records[4].GetProperty("keyIds").EnumerateArray().Select(k => k.GetString()!).ToArray());
        Assert.False(records[4].TryGetProperty("keyId", out _));
    }

    private static string Type(JsonElement record) => record.GetProperty("type").GetString()!;

    private async Task<string> KeysAsync(params string[] args)
    {
        using var output = new StringWriter();
        using var errors = new StringWriter();
        var code = await KeysCommand.RunAsync(["keys", .. args, "--audit", AuditFile], output, errors, _time);
        Assert.True(code == 0, errors.ToString());
        return output.ToString();
    }

    private static string Line(string output, string label) =>
        output.Split('\n').Select(l => l.TrimEnd('\r')).Single(l => l.StartsWith(label + ": ", StringComparison.Ordinal))[(label.Length + 2)..];
}
