using System.Text.RegularExpressions;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Tests.Configuration;

/// <summary>
/// "Restart required" has one source, <see cref="ConfigDiff.ReadAtStart"/>: it must name exactly the
/// settings docs/configuration.md documents as read at start, and a change to any of them is reported.
/// </summary>
public sealed partial class ReadAtStartTests : IDisposable
{
    private const string Base = """
        listeners:
          - { name: public, address: 127.0.0.1:18080 }
        clusters:
          c: { destinations: [http://127.0.0.1:5001] }
        routes:
          - { name: r, cluster: c }

        """;

    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("portcullis-read-at-start-");

    public void Dispose() => _dir.Delete(recursive: true);

    [Fact]
    public void The_table_names_every_setting_the_configuration_reference_documents_as_read_at_start()
    {
        var docs = File.ReadAllText(Path.Combine(RepoRoot(), "docs", "configuration.md"));
        // Reference rows whose description says the key is read (or sized) at start.
        var documented = ReferenceRow().Matches(docs)
            .Where(m => ReadAtStartText().IsMatch(m.Groups["description"].Value))
            .Select(m => m.Groups["key"].Value)
            .ToList();
        // Sections documented as read at start in their prose rather than in one row.
        Assert.Contains("Changes to `listeners` take effect only after a restart", docs, StringComparison.Ordinal);
        Assert.Contains("Changes to `limits` are reported as needing a restart", docs, StringComparison.Ordinal);
        Assert.Matches(@"### sessions[\s\S]*?These settings are read at[\s\n]+start-up", docs);
        documented.AddRange(["listeners", "limits", "identity.sessions"]);

        var table = ConfigDiff.ReadAtStart.Select(e => e.Setting).ToList();
        // A documented key is covered by its own entry or by its section's (observability.tracing covers its three keys).
        var uncovered = documented.Where(key => !table.Any(s => key == s || key.StartsWith(s + ".", StringComparison.Ordinal))).ToList();
        Assert.True(uncovered.Count == 0, "documented as read at start but not in ConfigDiff.ReadAtStart: " + string.Join(", ", uncovered));
        var undocumented = table.Where(s => !documented.Any(key => key == s || key.StartsWith(s + ".", StringComparison.Ordinal))).ToList();
        Assert.True(undocumented.Count == 0, "in ConfigDiff.ReadAtStart but not documented as read at start: " + string.Join(", ", undocumented));
    }

    [Theory]
    [InlineData("identity: { tokenCacheSize: 500 }", "identity.tokenCacheSize")]
    [InlineData("observability: { accessLog: { enabled: true, queueSize: 50 } }", "observability.accessLog.queueSize")]
    [InlineData("observability: { metrics: { enabled: false } }", "observability.metrics.enabled")]
    [InlineData("observability: { tracing: { serviceName: other } }", "observability.tracing")]
    [InlineData("limits: { keepAliveTimeout: 60s }", "limits")]
    [InlineData("analytics: { path: a.duckdb }", "analytics.path")]
    [InlineData("identity: { sessions: { providers: [{ name: corp, authority: \"https://idp.example\", clientId: gw, publicClient: true }], cookie: { name: portcullis } } }", "identity.sessions")]
    public void A_change_to_a_read_at_start_setting_is_pending_until_a_restart(string section, string setting)
    {
        var running = Build("running", Base);
        var next = Build("next", Base + section + "\n");

        var pending = ConfigDiff.PendingRestart(running, next);

        Assert.Equal([setting], pending.Select(p => p.Setting));
        Assert.Contains(ConfigDiff.Compare(running, next).Changes, c => c.RestartRequired);
    }

    [Theory]
    [InlineData("observability: { accessLog: { enabled: true, flushInterval: 5ms } }")]
    [InlineData("observability: { metrics: { path: /stats } }")]
    [InlineData("identity: { assertion: { lifetime: 30s } }")]
    [InlineData("listeners:\n  - { name: public, address: 127.0.0.1:18080, dropUnderscoreHeaders: false }\n")]
    [InlineData("limits: { trimHeapAfterBuilds: false }")]
    public void Settings_that_follow_reloads_need_no_restart(string section)
    {
        var running = Build("running", Base);
        var yaml = section.StartsWith("listeners", StringComparison.Ordinal)
            ? section + Base[Base.IndexOf("clusters:", StringComparison.Ordinal)..]
            : Base + section + "\n";
        var next = Build("next", yaml);

        Assert.Empty(ConfigDiff.PendingRestart(running, next));
        Assert.DoesNotContain(ConfigDiff.Compare(running, next).Changes, c => c.RestartRequired);
    }

    private GatewaySnapshot Build(string folder, string yaml)
    {
        var directory = Directory.CreateDirectory(Path.Combine(_dir.FullName, folder));
        var path = Path.Combine(directory.FullName, "portcullis.yaml");
        File.WriteAllText(path, yaml);
        var result = new SnapshotBuilder(_ => null).Build(path);
        Assert.True(result.Succeeded, string.Join("\n", result.Diagnostics));
        return result.Snapshot!;
    }

    private static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Portcullis.sln"))) return dir.FullName;
        }

        throw new InvalidOperationException($"Portcullis.sln not found above {AppContext.BaseDirectory}");
    }

    [GeneratedRegex(@"^\| `(?<key>[^`]+)` \|[^\n]*\| (?<description>[^\n]*) \|$", RegexOptions.Multiline)]
    private static partial Regex ReferenceRow();

    [GeneratedRegex(@"\b(read|sized) at start", RegexOptions.IgnoreCase)]
    private static partial Regex ReadAtStartText();
}
