using Portcullis.Configuration;
using Portcullis.Tls;

namespace Portcullis.Tests.Configuration;

/// <summary>
/// The browser guide's "Five minutes" config passes validate as the guide runs it (issue 18, item 16):
/// the YAML block is taken from docs/browser-access.md, with the dev certificates its step 3 creates.
/// </summary>
public sealed class BrowserGuideConfigTests : IDisposable
{
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("portcullis-browser-guide-");

    public void Dispose() => _directory.Delete(recursive: true);

    [Fact]
    public void FiveMinuteConfig_Validates_WithoutWarnings()
    {
        var yaml = FiveMinuteConfig(File.ReadAllText(Path.Combine(RepoRoot(), "docs", "browser-access.md")));
        DevCertificates.Write(Path.Combine(_directory.FullName, "certs"), ["apps.example.com"], DateTimeOffset.UtcNow);
        var path = Path.Combine(_directory.FullName, "portcullis.yaml");
        File.WriteAllText(path, yaml);
        var environment = new Dictionary<string, string> { ["OIDC_CLIENT_SECRET"] = "s3cret" };

        var result = new SnapshotBuilder(environment: name => environment.GetValueOrDefault(name)).Build(path);

        Assert.True(result.Succeeded, string.Join("\n", result.Diagnostics));
        // Not even the "Secure cookie over a cleartext listener" warning: the guide's browser listener is HTTPS.
        Assert.True(result.Diagnostics.Count == 0, string.Join("\n", result.Diagnostics));
        Assert.Contains(result.Snapshot!.Listeners, l => l.Tls is not null && !l.Admin);
    }

    // The first ```yaml block after the "## Five minutes" heading.
    private static string FiveMinuteConfig(string markdown)
    {
        var section = markdown.IndexOf("## Five minutes", StringComparison.Ordinal);
        Assert.True(section >= 0, "no '## Five minutes' section in docs/browser-access.md");
        var start = markdown.IndexOf("```yaml\n", section, StringComparison.Ordinal) + "```yaml\n".Length;
        var end = markdown.IndexOf("\n```", start, StringComparison.Ordinal);
        return markdown[start..end] + "\n";
    }

    private static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Portcullis.sln"))) return dir.FullName;
        }

        throw new InvalidOperationException($"Portcullis.sln not found above {AppContext.BaseDirectory}");
    }
}
