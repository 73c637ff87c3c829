using Portcullis.Cli;

namespace Portcullis.Tests.Cli;

/// <summary>CLI answers a new operator met on a fresh machine (issue 18, item 19).</summary>
public sealed class CliRoughEdgeTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("portcullis-cli-edges-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static async Task<(int Code, string Out, string Err)> RunAsync(params string[] args)
    {
        using var output = new StringWriter();
        using var errors = new StringWriter();
        var code = await PortcullisCli.RunAsync(args, output, errors);
        return (code, output.ToString(), errors.ToString());
    }

    private static string[] ErrorLines(string text) => text.Split('\n').Where(l => l.StartsWith("error:", StringComparison.Ordinal)).ToArray();

    [Fact]
    public async Task UnknownCommand_PrintsOneError()
    {
        var (code, _, errors) = await RunAsync("bogus");

        Assert.Equal(PortcullisCli.Usage, code);
        var line = Assert.Single(ErrorLines(errors));
        Assert.Contains("'bogus'", line, StringComparison.Ordinal);
        Assert.Contains("Run 'portcullis --help' for usage.", errors, StringComparison.Ordinal);
    }

    [Fact]
    public async Task KeysRevokeWithoutTarget_PointsToItsOwnHelp()
    {
        var (code, _, errors) = await RunAsync("keys", "revoke", "--file", Path.Combine(_directory, "keys.yaml"));

        Assert.Equal(PortcullisCli.Usage, code);
        Assert.Contains("Run 'portcullis keys revoke --help' for usage.", errors, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("999.1.1.1")]
    [InlineData("10.1")]
    [InlineData("1.2.3.4.5")]
    public async Task CertsDev_InvalidIpv4LookingHost_IsRefused(string host)
    {
        var (code, _, errors) = await RunAsync("certs", "dev", "--out", _directory, "--hosts", host);

        Assert.Equal(PortcullisCli.Usage, code);
        Assert.Contains($"'{host}' is not a valid IPv4 address", errors, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFiles(_directory));
    }

    [Fact]
    public async Task CertsDev_TryItHint_UsesTheFirstHost()
    {
        var (code, output, errors) = await RunAsync("certs", "dev", "--out", _directory, "--hosts", "gw.example.test,10.0.0.1");

        Assert.True(code == 0, errors);
        Assert.Contains("https://gw.example.test:8443/", output, StringComparison.Ordinal);
        Assert.DoesNotContain("https://localhost", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AuditVerify_GarbageLine_SaysWhereInOurOwnWords()
    {
        var file = Path.Combine(_directory, "audit.log");
        await File.WriteAllTextAsync(file, "garbage\n");

        var (code, _, errors) = await RunAsync("audit", "verify", file);

        Assert.Equal(PortcullisCli.Invalid, code);
        Assert.Contains($"{file}:1:", errors, StringComparison.Ordinal);
        Assert.Contains("not valid JSON", errors, StringComparison.Ordinal);
        Assert.DoesNotContain("LineNumber", errors, StringComparison.Ordinal);
        Assert.DoesNotContain("BytePositionInLine", errors, StringComparison.Ordinal);
    }
}
