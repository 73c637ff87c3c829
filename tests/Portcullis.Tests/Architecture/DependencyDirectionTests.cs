using System.Reflection;
using System.Text.RegularExpressions;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Tests.Architecture;

/// <summary>
/// Dependencies point inward (docs/architecture.md): capabilities depend on Pipeline/ and Configuration/,
/// never on Hosting/, which composes them. Checked twice: in the source (a using, a qualified name, a
/// cref) and in the compiled assembly (every type's signatures), so neither a using nor a fully
/// qualified name slips through.
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
