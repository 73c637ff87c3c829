using System.Text.RegularExpressions;

namespace Portcullis.Tests.Architecture;

/// <summary>
/// Keeps docs/architecture.md true cheaply: the source files it names exist, every top-level folder of
/// src/Portcullis is described, and its request-path diagram names the middlewares UsePortcullis actually
/// adds (and no middleware that no longer exists).
/// </summary>
public sealed partial class ArchitectureDocTests
{
    private static readonly string RepoRoot = FindRepoRoot();
    private static readonly string SourceRoot = Path.Combine(RepoRoot, "src", "Portcullis");
    private static readonly string Doc = File.ReadAllText(Path.Combine(RepoRoot, "docs", "architecture.md"));

    [Fact]
    public void EverySourcePathInBackticksExists()
    {
        var missing = SourcePaths(Doc)
            .Where(p => !File.Exists(Path.Combine(RepoRoot, p)) && !Directory.Exists(Path.Combine(RepoRoot, p)))
            .ToList();
        Assert.True(missing.Count == 0, "docs/architecture.md names paths that do not exist:\n" + string.Join('\n', missing));
    }

    [Fact]
    public void EveryTopLevelFolderIsDescribed()
    {
        var undescribed = Directory.GetDirectories(SourceRoot)
            .Select(Path.GetFileName)
            .Where(name => name is not ("bin" or "obj"))
            .Where(name => !Regex.IsMatch(Doc, $@"(?<![A-Za-z]){Regex.Escape(name!)}/"))
            .ToList();
        Assert.True(undescribed.Count == 0, "docs/architecture.md does not describe src/Portcullis/: " + string.Join(", ", undescribed));
    }

    [Fact]
    public void TheRequestPathNamesTheMiddlewaresOfUsePortcullis()
    {
        var composition = File.ReadAllText(Path.Combine(SourceRoot, "Hosting", "PortcullisServiceCollectionExtensions.cs"));
        var used = UseMiddleware().Matches(composition).Select(m => m.Groups[1].Value.Split('.')[^1]).Distinct().ToList();
        Assert.NotEmpty(used);
        var absent = used.Where(name => !Regex.IsMatch(Doc, $@"\b{name}\b")).ToList();
        Assert.True(absent.Count == 0, "UsePortcullis adds middlewares docs/architecture.md does not show: " + string.Join(", ", absent));

        // The reverse: a middleware the doc names must still exist (renamed or replaced stages leave the doc stale).
        var sources = string.Join('\n', Directory.EnumerateFiles(SourceRoot, "*.cs", SearchOption.AllDirectories).Select(File.ReadAllText));
        var stale = MiddlewareName().Matches(Doc).Select(m => m.Value).Distinct()
            .Where(name => !Regex.IsMatch(sources, $@"\bclass {name}\b"))
            .ToList();
        Assert.True(stale.Count == 0, "docs/architecture.md names middlewares that no longer exist: " + string.Join(", ", stale));
    }

    [Fact]
    public void TheChecksSeeTheDoc()
    {
        // Guards against checks that pass because they found nothing.
        Assert.True(SourcePaths(Doc).Count() > 20);
        Assert.Equal(["src/Portcullis/Pipeline/ReasonCodes.cs"], SourcePaths("a `src/Portcullis/Pipeline/ReasonCodes.cs` b\n```\n`src/not/checked.cs`\n```\n`src/<Name>/x.cs`"));
        Assert.Matches(MiddlewareName(), "GatewayMiddleware");
    }

    // Paths in inline code outside fenced blocks; templates such as src/Portcullis/<Name>/ are not paths.
    private static IEnumerable<string> SourcePaths(string markdown) =>
        InlineSourcePath().Matches(FencedBlock().Replace(markdown, ""))
            .Select(m => m.Groups[1].Value)
            .Where(p => !p.Contains('<', StringComparison.Ordinal))
            .Distinct();

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Portcullis.sln"))) return dir.FullName;
        }

        throw new InvalidOperationException($"Portcullis.sln not found above {AppContext.BaseDirectory}");
    }

    [GeneratedRegex(@"^```.*?^```", RegexOptions.Multiline | RegexOptions.Singleline)]
    private static partial Regex FencedBlock();

    [GeneratedRegex(@"`(src/[^`\s]+)`")]
    private static partial Regex InlineSourcePath();

    [GeneratedRegex(@"UseMiddleware<([A-Za-z.]+)>")]
    private static partial Regex UseMiddleware();

    [GeneratedRegex(@"\b[A-Z][A-Za-z]*Middleware\b")]
    private static partial Regex MiddlewareName();
}
