using Microsoft.Extensions.Time.Testing;
using Portcullis.Analytics;
using Portcullis.Configuration;

namespace Portcullis.Tests.Analytics;

/// <summary>
/// Validation of analytics.export and analytics.fleetPath (ParquetExportCompiler), reported at the key's
/// file:line:column. The store's compiler calls it; here it runs on a loaded config directly.
/// </summary>
public sealed class ParquetExportConfigTests : ConfigBuildTestBase
{
    public ParquetExportConfigTests() : base("portcullis-export-config-")
    {
    }

    [Fact]
    public void AValidExportCompilesWithThePathResolvedAgainstTheConfigFile()
    {
        var (settings, diagnostics) = Compile("""
            analytics:
              path: data/analytics.duckdb
              flushInterval: 10s
              retention: 7d
              export: { path: exports, instance: gw-1.eu_west }
            """);
        Assert.Empty(diagnostics);
        Assert.Equal(new ParquetExportSettings(Path.Combine(_directory.FullName, "exports"), "gw-1.eu_west", TimeSpan.FromSeconds(10), TimeSpan.FromDays(7)), settings);
        Assert.Equal(TimeSpan.FromSeconds(70), settings!.CloseDelay);
    }

    [Fact]
    public void NoExportIsNoSettings()
    {
        var (settings, diagnostics) = Compile("analytics: { path: data/analytics.duckdb }\n");
        Assert.Null(settings);
        Assert.Empty(diagnostics);
    }

    [Theory]
    [InlineData("../etc")]
    [InlineData("a/b")]
    [InlineData("instance=b")]
    [InlineData(".hidden")]
    [InlineData("gw 1")]
    [InlineData("\"\"")]
    [InlineData("a234567890123456789012345678901234567890123456789012345678901234")]
    public void AnInstanceThatIsNotAPlainPathSegment_IsReportedAtItsPosition(string instance)
    {
        var (settings, diagnostics) = Compile($"""
            analytics:
              path: data/analytics.duckdb
              export:
                path: exports
                instance: {instance}
            """);
        Assert.Null(settings);
        var error = Assert.Single(diagnostics);
        AssertAt(error, 5, 15);
        Assert.Contains("not a safe path segment", error.Message, StringComparison.Ordinal);
        Assert.Contains("letters, digits", error.Hint, StringComparison.Ordinal);
    }

    [Fact]
    public void AHostNameThatIsNotASafeSegment_AsksForAnInstance()
    {
        var (settings, diagnostics) = Compile("""
            analytics:
              path: data/analytics.duckdb
              export:
                path: exports
            """, hostName: "bad host!");
        Assert.Null(settings);
        var error = Assert.Single(diagnostics);
        AssertAt(error, 4, 5);
        Assert.Contains("host name 'bad host!'", error.Message, StringComparison.Ordinal);
        Assert.Contains("instance: gw-1", error.Hint, StringComparison.Ordinal);
    }

    [Fact]
    public void ExportNeedsTheStoreAndAFolder()
    {
        WriteFile("exports-file", "not a folder");
        var (_, withoutStore) = Compile("""
            analytics:
              export: { path: exports }
            """);
        AssertAt(Assert.Single(withoutStore), 2, 11);
        Assert.Contains("needs analytics.path", withoutStore[0].Message, StringComparison.Ordinal);

        var (_, emptyPath) = Compile("""
            analytics:
              path: data/analytics.duckdb
              export:
                path: ""
                instance: gw-1
            """);
        AssertAt(Assert.Single(emptyPath), 4, 11);
        Assert.Contains("export.path cannot be empty", emptyPath[0].Message, StringComparison.Ordinal);

        var (_, aFile) = Compile("""
            analytics:
              path: data/analytics.duckdb
              export: { path: exports-file, instance: gw-1 }
            """);
        Assert.Contains("is a file", Assert.Single(aFile).Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("/shared/*/analytics", '*')]
    [InlineData("fleet?", '?')]
    [InlineData("/mnt/[a]", '[')]
    [InlineData("/mnt/x=1/fleet", '=')]
    public void AFleetPathWithGlobCharactersIsRefused(string fleetPath, char refused)
    {
        var loaded = Load($"""
            analytics:
              fleetPath: "{fleetPath}"
            """);
        var diagnostics = new List<ConfigDiagnostic>();
        Assert.Null(ParquetExportCompiler.CompileFleetPath(Context(loaded, diagnostics), loaded.Config.Analytics));
        var error = Assert.Single(diagnostics);
        AssertAt(error, 2, 14);
        Assert.Contains($"cannot contain '{refused}'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AFleetPathIsResolvedAgainstTheConfigFile()
    {
        var loaded = Load("analytics: { fleetPath: shared/fleet }\n");
        var diagnostics = new List<ConfigDiagnostic>();
        Assert.Equal(Path.Combine(_directory.FullName, "shared", "fleet"), ParquetExportCompiler.CompileFleetPath(Context(loaded, diagnostics), loaded.Config.Analytics));
        Assert.Empty(diagnostics);
    }

    private (ParquetExportSettings? Settings, List<ConfigDiagnostic> Diagnostics) Compile(string yaml, string hostName = "gw-host")
    {
        var loaded = Load(yaml);
        var diagnostics = new List<ConfigDiagnostic>();
        var settings = ParquetExportCompiler.Compile(Context(loaded, diagnostics), loaded.Config.Analytics, hostName);
        return (settings, diagnostics);
    }

    private LoadedConfig Load(string yaml)
    {
        WriteFile("portcullis.yaml", yaml);
        var diagnostics = new List<ConfigDiagnostic>();
        var loaded = ConfigLoader.Load(ConfigPath, _ => null, diagnostics);
        Assert.True(loaded is not null && diagnostics.Count == 0, string.Join("\n", diagnostics));
        return loaded!;
    }

    private static CompileContext Context(LoadedConfig loaded, List<ConfigDiagnostic> diagnostics) =>
        new(loaded, diagnostics, _ => null, new FakeTimeProvider());
}
