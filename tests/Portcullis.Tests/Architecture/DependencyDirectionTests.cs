using System.Reflection;
using System.Text.RegularExpressions;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Tests.Architecture;

/// <summary>
/// Dependencies point inward (docs/architecture.md): capabilities depend on Pipeline/ and Configuration/,
/// never on Hosting/, which composes them. Checked twice: in the source (a using, a qualified name, a
/// cref) and in the compiled assembly (every type's signatures), so neither a using nor a fully
/// qualified name slips through. The folder graph (signatures and method bodies, <see cref="FolderDependencyGraph"/>)
/// is checked against the allowed-edge table of docs/architecture.md.
/// </summary>
public sealed partial class DependencyDirectionTests
{
    private const string HostingNamespace = "Portcullis.Hosting";
    private static readonly string RepoRoot = FindRepoRoot();
    private static readonly string SourceRoot = Path.Combine(RepoRoot, "src", "Portcullis");

    [Fact]
    public void NoSourceFileOutsideHostingNamesHosting()
    {
        var offenders = new List<string>();
        foreach (var file in SourceFiles())
        {
            var relative = Path.GetRelativePath(SourceRoot, file).Replace('\\', '/');
            if (relative.StartsWith("Hosting/", StringComparison.Ordinal)) continue;
            var lines = File.ReadAllLines(file);
            for (var i = 0; i < lines.Length; i++)
            {
                if (HostingReference().IsMatch(lines[i])) offenders.Add($"{relative}:{i + 1}: {lines[i].Trim()}");
            }
        }

        Assert.True(offenders.Count == 0, "Capabilities must not depend on Portcullis.Hosting:\n" + string.Join('\n', offenders));
    }

    [Fact]
    public void NoTypeOutsideHostingHasHostingInItsSignatures()
    {
        var offenders = new List<string>();
        foreach (var type in typeof(GatewayFeature).Assembly.GetTypes())
        {
            if (type.Namespace is null || type.Namespace == HostingNamespace || !type.Namespace.StartsWith("Portcullis", StringComparison.Ordinal)) continue;
            foreach (var used in SignatureTypes(type))
            {
                if (used.Namespace == HostingNamespace) offenders.Add($"{type.FullName} uses {used.FullName}");
            }
        }

        Assert.True(offenders.Count == 0, string.Join('\n', offenders.Distinct()));
    }

    [Fact]
    public void EveryFileDeclaresTheNamespaceOfItsFolder()
    {
        var offenders = new List<string>();
        foreach (var file in SourceFiles())
        {
            var relative = Path.GetRelativePath(SourceRoot, file).Replace('\\', '/');
            var folder = Path.GetDirectoryName(relative)!.Replace('\\', '/');
            var expected = folder switch
            {
                "" => "Portcullis",
                // The options model is one namespace: PortcullisConfig binds every capability's options.
                "Configuration/Options" => "Portcullis.Configuration",
                // Add*/Use* extension methods live where callers look for them.
                _ when relative == "Hosting/PortcullisServiceCollectionExtensions.cs" => "Microsoft.Extensions.DependencyInjection",
                _ => "Portcullis." + folder.Replace('/', '.'),
            };
            var declared = NamespaceDeclaration().Match(File.ReadAllText(file)) is { Success: true } m ? m.Groups[1].Value : "(none)";
            if (declared != expected) offenders.Add($"{relative}: namespace {declared}, expected {expected}");
        }

        Assert.True(offenders.Count == 0, string.Join('\n', offenders));
    }

    [Fact]
    public void TheChecksSeeTheCode()
    {
        // Guards against a scan that passes because it found nothing.
        Assert.True(SourceFiles().Count() > 100);
        Assert.Matches(HostingReference(), "using Portcullis.Hosting;");
        Assert.Matches(HostingReference(), "/// <see cref=\"Hosting.GatewayMiddleware\"/>");
        Assert.Contains(SignatureTypes(typeof(Portcullis.Hosting.GatewayMiddleware)), t => t == typeof(SnapshotStore));
    }

    [Fact]
    public void PipelineDependsOnNothingInTheProject()
    {
        var offenders = Graph.Edges.Where(e => e.Key.From == "Pipeline").SelectMany(e => e.Value).ToList();
        Assert.True(offenders.Count == 0, "Pipeline/ (the per-request contract) must not name another folder's types:\n" + string.Join('\n', offenders));
    }

    [Fact]
    public void PipelineSourceNamesNoOtherFolder()
    {
        // Constants are inlined by the compiler, so the metadata graph cannot see them; the source can (a using,
        // or a qualified Folder.Type.Member).
        var offenders = new List<string>();
        foreach (var file in SourceFiles().Where(f => Path.GetRelativePath(SourceRoot, f).StartsWith("Pipeline", StringComparison.Ordinal)))
        {
            var lines = File.ReadAllLines(file);
            for (var i = 0; i < lines.Length; i++)
            {
                if (lines[i].TrimStart().StartsWith("//", StringComparison.Ordinal)) continue;
                if (OtherFolderReference().IsMatch(lines[i])) offenders.Add($"{Path.GetRelativePath(RepoRoot, file)}:{i + 1}: {lines[i].Trim()}");
            }
        }

        Assert.True(offenders.Count == 0, string.Join('\n', offenders));
        Assert.Matches(OtherFolderReference(), "x = Observability.RequestObserver.RequestIdHeader;");
        Assert.Matches(OtherFolderReference(), "using Portcullis.Routing;");
        Assert.DoesNotMatch(OtherFolderReference(), "Stage = ReasonStage.Routing;");
        Assert.DoesNotMatch(OtherFolderReference(), "public string? TrafficPolicy => Traffic.Policy;"); // the feature's own member
    }

    [Fact]
    public void EveryFolderDependencyIsInTheDocumentedTable()
    {
        var allowed = DocumentedTable(AllowedEdgesTable);
        var offenders = new List<string>();
        foreach (var ((from, to), evidence) in Graph.Edges)
        {
            if (allowed.TryGetValue(from, out var targets) && (targets.Contains(to) || targets.Contains("*"))) continue;
            offenders.Add($"{from} → {to} is not in the table of docs/architecture.md, made by:\n  " + string.Join("\n  ", evidence));
        }

        Assert.True(offenders.Count == 0, string.Join('\n', offenders));
    }

    [Fact]
    public void TheTableHasARowForEveryFolder()
    {
        var allowed = DocumentedTable(AllowedEdgesTable);
        var folders = Directory.EnumerateDirectories(SourceRoot).Select(Path.GetFileName).OfType<string>()
            .Where(f => f is not ("bin" or "obj" or "Properties")).ToHashSet(StringComparer.Ordinal);
        Assert.Equal(folders.Order(StringComparer.Ordinal), allowed.Keys.Order(StringComparer.Ordinal));
        var unknown = allowed.Values.SelectMany(t => t).Where(t => t != "*" && !folders.Contains(t)).ToList();
        Assert.True(unknown.Count == 0, "The table names folders that do not exist: " + string.Join(", ", unknown));
    }

    [Fact]
    public void NoTwoWayEdgeBetweenCapabilitiesUnlessDocumented()
    {
        var exceptions = DocumentedTable(TwoWayTable).SelectMany(row => row.Value.Select(other => Pair(row.Key, other))).ToHashSet();
        var offenders = new List<string>();
        foreach (var ((from, to), evidence) in Graph.Edges)
        {
            if (string.CompareOrdinal(from, to) > 0 || !Capabilities.Contains(from) || !Capabilities.Contains(to)) continue;
            if (!Graph.Edges.TryGetValue((to, from), out var back) || exceptions.Contains(Pair(from, to))) continue;
            offenders.Add($"{from} ↔ {to}:\n  " + string.Join("\n  ", evidence.Concat(back)));
        }

        Assert.True(offenders.Count == 0, "Two-way dependencies between capabilities (list one in docs/architecture.md only with a reason):\n" + string.Join('\n', offenders));
    }

    [Fact]
    public void TheGraphSeesRealEdges()
    {
        // Guards against a scan that passes because it found nothing, or finds what is not there.
        Assert.True(Graph.Edges.Count > 30, $"only {Graph.Edges.Count} edges");
        // A signature: the traffic stage takes the feature.
        Assert.Contains("Portcullis.Traffic.TrafficMiddleware → Portcullis.Pipeline.GatewayFeature", Graph.Edges[("Traffic", "Pipeline")]);
        // A method body only: ConfigLoader calls FileErrors.Describe and names Files nowhere else.
        Assert.Contains("Portcullis.Configuration.ConfigLoader → Portcullis.Files.FileErrors", Graph.Edges[("Configuration", "Files")]);
        // A generic argument in a property type: FrozenDictionary<string, ConcurrencyGate>.
        Assert.Contains("Portcullis.Configuration.GatewaySnapshot → Portcullis.Traffic.ConcurrencyGate", Graph.Edges[("Configuration", "Traffic")]);
        // The DI extensions' namespace counts as Hosting.
        Assert.Contains(("Hosting", "Pipeline"), Graph.Edges.Keys);
        // Names alike are not edges (a text scan maps State.X or Names to folders).
        Assert.DoesNotContain(("State", "Listeners"), Graph.Edges.Keys);
        Assert.DoesNotContain(("Tls", "Listeners"), Graph.Edges.Keys);
        Assert.NotEmpty(DocumentedTable(AllowedEdgesTable));
        Assert.NotEmpty(DocumentedTable(TwoWayTable));
    }

    // Capabilities in the sense of the two-way rule: not the contract (Pipeline), the model and its composition
    // (Configuration), the composition root (Hosting) or the shared helpers (State, Files).
    private static readonly HashSet<string> Capabilities = ["Routing", "Clusters", "Identity", "Traffic", "Tls", "Listeners", "Upstream", "Observability", "Admin", "Analytics"];

    private static readonly Lazy<FolderDependencyGraph> LazyGraph = new(() => new FolderDependencyGraph(typeof(GatewayFeature).Assembly.Location));

    private static FolderDependencyGraph Graph => LazyGraph.Value;

    private const string AllowedEdgesTable = "allowed-edges";
    private const string TwoWayTable = "two-way-edges";

    private static (string, string) Pair(string a, string b) => string.CompareOrdinal(a, b) < 0 ? (a, b) : (b, a);

    /// <summary>
    /// A table of docs/architecture.md between <c>&lt;!-- name --&gt;</c> and <c>&lt;!-- /name --&gt;</c>: each row's
    /// first cell is a folder, the second the folders it may depend on (in backticks; `*` = every folder).
    /// </summary>
    private static Dictionary<string, HashSet<string>> DocumentedTable(string name)
    {
        var doc = File.ReadAllText(Path.Combine(RepoRoot, "docs", "architecture.md"));
        var start = doc.IndexOf($"<!-- {name} -->", StringComparison.Ordinal);
        var end = doc.IndexOf($"<!-- /{name} -->", StringComparison.Ordinal);
        Assert.True(start >= 0 && end > start, $"docs/architecture.md has no <!-- {name} --> table");
        var table = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        foreach (var line in doc[start..end].Split('\n'))
        {
            var cells = line.Split('|');
            if (cells.Length < 4 || !cells[1].Contains('`', StringComparison.Ordinal)) continue;
            var from = BacktickName().Match(cells[1]).Groups[1].Value;
            var targets = table.TryGetValue(from, out var existing) ? existing : table[from] = new HashSet<string>(StringComparer.Ordinal);
            foreach (Match m in BacktickName().Matches(cells[2])) targets.Add(m.Groups[1].Value);
        }

        return table;
    }

    [GeneratedRegex(@"(?<![\w.])(?:Portcullis\.)?(?:Admin|Analytics|Clusters|Configuration|Files|Hosting|Identity|Listeners|Observability|Routing|State|Tls|Traffic|Upstream)\.[A-Z]\w*\.[A-Z]|using Portcullis\.(?!Pipeline;)")]
    private static partial Regex OtherFolderReference();

    [GeneratedRegex(@"`([A-Za-z*]+)/?`")]
    private static partial Regex BacktickName();

    private static IEnumerable<Type> SignatureTypes(Type type)
    {
        const BindingFlags all = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        var found = new List<Type>();
        if (type.BaseType is { } baseType) found.Add(baseType);
        found.AddRange(type.GetInterfaces());
        foreach (var field in type.GetFields(all)) found.Add(field.FieldType);
        foreach (var property in type.GetProperties(all)) found.Add(property.PropertyType);
        foreach (var method in type.GetMethods(all))
        {
            found.Add(method.ReturnType);
            found.AddRange(method.GetParameters().Select(p => p.ParameterType));
        }

        foreach (var constructor in type.GetConstructors(all)) found.AddRange(constructor.GetParameters().Select(p => p.ParameterType));
        return found.SelectMany(Unwrap);
    }

    private static IEnumerable<Type> Unwrap(Type type)
    {
        if (type.HasElementType && type.GetElementType() is { } element)
        {
            foreach (var inner in Unwrap(element)) yield return inner;
            yield break;
        }

        yield return type;
        if (!type.IsGenericType) yield break;
        foreach (var argument in type.GetGenericArguments())
        {
            foreach (var inner in Unwrap(argument)) yield return inner;
        }
    }

    private static IEnumerable<string> SourceFiles() =>
        Directory.EnumerateFiles(SourceRoot, "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)
                && !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}", StringComparison.Ordinal));

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Portcullis.sln"))) return dir.FullName;
        }

        throw new InvalidOperationException($"Portcullis.sln not found above {AppContext.BaseDirectory}");
    }

    [GeneratedRegex(@"\bPortcullis\.Hosting\b|cref=""Hosting\.")]
    private static partial Regex HostingReference();

    [GeneratedRegex(@"^namespace ([A-Za-z.]+);", RegexOptions.Multiline)]
    private static partial Regex NamespaceDeclaration();
}
