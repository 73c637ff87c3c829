using Microsoft.Extensions.DependencyInjection;
using Portcullis.Advice;
using Portcullis.Cli;

namespace Portcullis.Tests.Advice;

/// <summary>`portcullis advise`: the offline run (no store: said so), the formats, and --apply (backup, validation, diff, refusals).</summary>
public sealed class AdviseCliTests : IDisposable
{
    private const string Config = """
        # production gateway
        listeners: [{ name: public, address: "127.0.0.1:8080" }]
        routes:
          - { name: reports, match: { pathPrefix: /reports }, respond: { status: 200 } }
        """;

    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("portcullis-advise-");

    public void Dispose() => _directory.Delete(recursive: true);

    private string ConfigPath => Path.Combine(_directory.FullName, "portcullis.yaml");

    private static readonly ConfigPatch Good = new("rateLimits:\n  suggested-reports: { key: consumer, limit: 12, per: 1s, burst: 30 }\nroutes:\n  - name: reports\n    rateLimits: [suggested-reports]\n", "adds rateLimits.suggested-reports and uses it on route reports");

    private static readonly ConfigPatch Bad = new("routes:\n  - name: reports\n    rateLimits: [no-such-limit]\n", "uses a limit that does not exist");

    private sealed class PatchDetector(ConfigPatch patch, string subject) : IAdviceDetector
    {
        public string Name => "test.patch";

        public IReadOnlyList<Finding> Detect(AdviceContext context) => [Findings.Make(FindingKinds.RateLimitSuggested, subject, context.Now, patch)];
    }

    private (int Code, string Output, string Errors) Run(string format = "text", string? apply = null, ConfigPatch? patch = null, string? store = null)
    {
        using var output = new StringWriter();
        using var errors = new StringWriter();
        var code = AdviseCommand.Run(ConfigPath, store, null, format, apply, TimeProvider.System, output, errors,
            services => services.AddSingleton<IAdviceDetector>(new PatchDetector(patch ?? Good, "reports")));
        return (code, output.ToString(), errors.ToString());
    }

    private static string Id => Finding.MakeId(FindingKinds.RateLimitSuggested, new FindingSubject(SubjectKind.Route, "reports"));

    [Fact]
    public void WithoutAStoreTheConfigChecksRunAndItSaysSo()
    {
        File.WriteAllText(ConfigPath, Config);
        var (code, output, errors) = Run();
        Assert.Equal(0, code);
        Assert.Contains("no analytics store", errors, StringComparison.Ordinal);
        Assert.Contains("1 finding(s) over the config only", output, StringComparison.Ordinal);
        Assert.Contains($"--apply {Id}", output, StringComparison.Ordinal);

        var json = Run("json");
        Assert.Equal(Id, System.Text.Json.JsonDocument.Parse(json.Output).RootElement.GetProperty("findings")[0].GetProperty("id").GetString());
        var patch = Run("patch");
        Assert.Contains("suggested-reports: { key: consumer", patch.Output, StringComparison.Ordinal);
        Assert.StartsWith($"# {Id} ratelimit.suggested:", patch.Output, StringComparison.Ordinal);

        var missing = Run(store: Path.Combine(_directory.FullName, "nope.duckdb"));
        Assert.Contains("no analytics store at", missing.Errors, StringComparison.Ordinal);
    }

    [Fact]
    public void ApplyWritesABackupAValidConfigAndPrintsTheDiff()
    {
        File.WriteAllText(ConfigPath, Config);
        var (code, output, errors) = Run(apply: Id);
        Assert.True(code == 0, errors);
        var backup = Assert.Single(_directory.GetFiles("portcullis.yaml.bak-*"));
        Assert.Matches(@"^portcullis\.yaml\.bak-\d{14}$", backup.Name);
        Assert.Equal(Config, File.ReadAllText(backup.FullName));
        Assert.Contains("suggested-reports", File.ReadAllText(ConfigPath), StringComparison.Ordinal);
        Assert.True(new Portcullis.Configuration.SnapshotBuilder().Build(ConfigPath).Succeeded);
        Assert.Contains("Applied finding " + Id, output, StringComparison.Ordinal);
        Assert.Contains("reports", output[output.IndexOf("What a reload would change", StringComparison.Ordinal)..], StringComparison.Ordinal);
        Assert.DoesNotContain("No changes.", output, StringComparison.Ordinal);
    }

    [Fact]
    public void ApplyRefusesAnUnknownIdOrAPatchThatWouldNotValidateAndLeavesTheFileAlone()
    {
        File.WriteAllText(ConfigPath, Config);
        var unknown = Run(apply: "000000000000");
        Assert.Equal(2, unknown.Code);
        Assert.Contains("no finding '000000000000'", unknown.Errors, StringComparison.Ordinal);

        // The engine drops a patch that would not validate: the finding has none to apply.
        var invalid = Run(apply: Id, patch: Bad);
        Assert.Equal(2, invalid.Code);
        Assert.Contains("has no patch", invalid.Errors, StringComparison.Ordinal);
        Assert.Contains("does not validate", invalid.Errors, StringComparison.Ordinal);

        Assert.Equal(Config, File.ReadAllText(ConfigPath));
        Assert.Empty(_directory.GetFiles("*.bak-*"));
    }

    [Fact]
    public void AnInvalidConfigIsReportedNotAdvisedOn()
    {
        File.WriteAllText(ConfigPath, "routes: [{ name: x }]\n");
        var (code, _, errors) = Run();
        Assert.Equal(1, code);
        Assert.Contains("not valid", errors, StringComparison.Ordinal);
    }
}
