using Portcullis.Configuration;
using Portcullis.Tls;

namespace Portcullis.Tests.Configuration;

/// <summary>The quickstart's config is valid as run.sh runs it (demo key file, dev certificates) and uses what the README promises.</summary>
public sealed class QuickstartConfigTests : IDisposable
{
    private readonly DirectoryInfo _certs = Directory.CreateTempSubdirectory("portcullis-quickstart-");

    public void Dispose() => _certs.Delete(recursive: true);

    [Fact]
    public void Quickstart_config_builds_without_errors()
    {
        var root = FindRepoRoot();
        DevCertificates.Write(_certs.FullName, ["localhost", "127.0.0.1"], DateTimeOffset.UtcNow);
        var environment = new Dictionary<string, string>
        {
            ["QUICKSTART_CERTS"] = _certs.FullName,
            ["QUICKSTART_KEYS"] = Path.Combine(root, "examples", "quickstart", "keys.yaml"),
        };
        var result = new SnapshotBuilder(environment: name => environment.GetValueOrDefault(name)).Build(Path.Combine(root, "examples", "quickstart", "portcullis.yaml"));

        Assert.True(result.Succeeded, string.Join("\n", result.Diagnostics));
        var snapshot = result.Snapshot!;
        Assert.Contains(snapshot.Listeners, l => l.Name == "public-tls");
        Assert.NotEmpty(snapshot.Routes["reports"].RateLimits);
        Assert.NotNull(snapshot.Routes["reports"].Quota);
        Assert.Equal(Path.Combine(root, "examples", "quickstart", "data", "analytics.duckdb"), snapshot.Analytics?.Path);
    }

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Portcullis.sln"))) return dir.FullName;
        }

        throw new InvalidOperationException($"Portcullis.sln not found above {AppContext.BaseDirectory}");
    }
}
