using System.Text.RegularExpressions;
using Portcullis.Cli;

namespace Portcullis.IntegrationTests.Install;

/// <summary>
/// Install path 1: deploy/container/Containerfile, checked by reading it (no container engine, and no hadolint
/// package, on this machine): pinned bases, a non-root user, a HEALTHCHECK the image can run, OCI labels,
/// EXPOSE matching the default config's listeners, the CMD's config where the image puts it, and that config valid.
/// </summary>
public sealed partial class ContainerfileTests
{
    private static readonly string Root = InstallProcess.RepoRoot();

    /// <summary>Instructions with their continuation lines joined, comments dropped.</summary>
    private static List<(string Name, string Args)> Instructions()
    {
        var text = File.ReadAllText(Path.Combine(Root, "deploy", "container", "Containerfile")).ReplaceLineEndings("\n");
        var joined = ContinuationPattern().Replace(text, " ");
        return joined.Split('\n')
            .Select(l => l.Trim())
            .Where(l => l.Length > 0 && !l.StartsWith('#'))
            .Select(l => l.Split(' ', 2))
            .Select(p => (p[0].ToUpperInvariant(), p.Length > 1 ? p[1].Trim() : ""))
            .ToList();
    }

    /// <summary>The instructions of the last stage (the image that ships).</summary>
    private static List<(string Name, string Args)> FinalStage()
    {
        var all = Instructions();
        return all.Skip(all.FindLastIndex(i => i.Name == "FROM")).ToList();
    }

    [Fact]
    public void BaseImages_ArePinnedMicrosoftDotnetImages_AndTheBuildIsMultiStage()
    {
        var instructions = Instructions();
        var args = instructions.Where(i => i.Name == "ARG" && i.Args.Contains('=', StringComparison.Ordinal))
            .Select(i => i.Args.Split('=', 2)).ToDictionary(p => p[0], p => p[1]);
        var froms = instructions.Where(i => i.Name == "FROM").Select(i => i.Args.Split(' ')[0]).ToList();

        Assert.True(froms.Count >= 2, "multi-stage: an SDK build stage and a runtime stage");
        Assert.StartsWith("mcr.microsoft.com/dotnet/sdk:10.0", froms[0], StringComparison.Ordinal);
        var runtime = froms[^1].Replace("${RUNTIME_TAG}", args.GetValueOrDefault("RUNTIME_TAG"), StringComparison.Ordinal);
        Assert.Matches(@"^mcr\.microsoft\.com/dotnet/aspnet:10\.0(-[a-z-]+)?$", runtime);
        Assert.All(froms, f => Assert.DoesNotContain(":latest", f, StringComparison.Ordinal));
        // Fetching URLs in a build is neither reproducible nor checked: ADD only local files, if at all.
        Assert.DoesNotContain(instructions, i => i.Name == "ADD" && i.Args.Contains("://", StringComparison.Ordinal));
        // Every local COPY source exists (a renamed file would only fail in docker build).
        foreach (var copy in instructions.Where(i => i.Name == "COPY" && !i.Args.StartsWith("--from", StringComparison.Ordinal)))
        {
            var parts = copy.Args.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            Assert.All(parts[..^1], source => Assert.True(Path.Exists(Path.Combine(Root, source)), $"COPY source {source} does not exist"));
        }
    }

    [Fact]
    public void FinalImage_RunsAsNonRoot_WithLabels_HealthcheckAndDrainSignal()
    {
        var stage = FinalStage();
        var user = Assert.Single(stage, i => i.Name == "USER").Args;
        Assert.True(int.TryParse(user, out var uid) && uid > 0, $"USER {user}: numeric and non-root, so runAsNonRoot can verify it");

        var labels = string.Join(' ', stage.Where(i => i.Name == "LABEL").Select(i => i.Args));
        foreach (var label in new[] { "title", "description", "version" }) Assert.Contains($"org.opencontainers.image.{label}=", labels, StringComparison.Ordinal);

        Assert.Equal("SIGTERM", Assert.Single(stage, i => i.Name == "STOPSIGNAL").Args);
        var healthcheck = Assert.Single(stage, i => i.Name == "HEALTHCHECK").Args;
        Assert.Contains("CMD [\"/app/portcullis\", \"health\", \"--url\", \"http://127.0.0.1:9901/healthz\"]", healthcheck, StringComparison.Ordinal);
        Assert.Equal("[\"/app/portcullis\"]", Assert.Single(stage, i => i.Name == "ENTRYPOINT").Args);
    }

    [Fact]
    public void DefaultConfig_IsWhereCmdReadsIt_IsValid_AndItsListenersAreExposed()
    {
        var stage = FinalStage();
        Assert.Equal("[\"run\", \"-c\", \"/etc/portcullis/portcullis.yaml\"]", Assert.Single(stage, i => i.Name == "CMD").Args);
        Assert.Contains(stage, i => i.Name == "COPY" && i.Args == "deploy/container/portcullis.yaml /etc/portcullis/portcullis.yaml");

        var config = Path.Combine(Root, "deploy", "container", "portcullis.yaml");
        var result = PortcullisCli.Build(config);
        Assert.True(result.Snapshot is not null, string.Join('\n', result.Diagnostics));

        var listenerPorts = ListenerPortPattern().Matches(File.ReadAllText(config)).Select(m => m.Groups[1].Value).Order();
        var exposed = stage.Where(i => i.Name == "EXPOSE").SelectMany(i => i.Args.Split(' ', StringSplitOptions.RemoveEmptyEntries)).Order();
        Assert.Equal(listenerPorts, exposed);
        // The HEALTHCHECK probes the admin listener of that config, on loopback inside the container.
        Assert.Contains("address: \"127.0.0.1:9901\", admin: true", File.ReadAllText(config), StringComparison.Ordinal);
    }

    [Fact]
    public void DockerIgnore_KeepsBuildOutputAndSecretsOutOfTheContext_ButNotTheSources()
    {
        var ignore = File.ReadAllLines(Path.Combine(Root, ".dockerignore")).Select(l => l.Trim()).ToHashSet();
        foreach (var pattern in new[] { "**/bin/", "**/obj/", ".git/", "**/*.key" }) Assert.Contains(pattern, ignore);
        Assert.DoesNotContain("src/", ignore);
        Assert.DoesNotContain("deploy/", ignore);
    }

    [GeneratedRegex(@"\\\n\s*")]
    private static partial Regex ContinuationPattern();

    [GeneratedRegex(@"address: ""[^""]*:(\d+)""")]
    private static partial Regex ListenerPortPattern();
}
