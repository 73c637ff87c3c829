using Portcullis.Configuration;

namespace Portcullis.Tests;

/// <summary>
/// Shared harness of the config-validation tests: a temporary directory for the config and the files
/// it names, an environment for ${VAR}, a build through the real SnapshotBuilder, and position asserts.
/// </summary>
public abstract class ConfigBuildTestBase : IDisposable
{
    protected readonly DirectoryInfo _directory;
    protected readonly Dictionary<string, string> _environment = new(StringComparer.Ordinal);

    protected ConfigBuildTestBase(string directoryPrefix) => _directory = Directory.CreateTempSubdirectory(directoryPrefix);

    public void Dispose()
    {
        _directory.Delete(recursive: true);
        GC.SuppressFinalize(this);
    }

    protected string ConfigPath => Path.Combine(_directory.FullName, "portcullis.yaml");

    protected string WriteFile(string relativePath, string text)
    {
        var full = Path.Combine(_directory.FullName, relativePath);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        File.WriteAllText(full, text);
        return full;
    }

    private protected virtual BuildResult Build(string yaml)
    {
        WriteFile("portcullis.yaml", yaml);
        return new SnapshotBuilder(environment: name => _environment.GetValueOrDefault(name)).Build(ConfigPath);
    }

    protected void AssertAt(ConfigDiagnostic diagnostic, int line, int column, string? file = null) =>
        Assert.True((file ?? ConfigPath, line, column) == (diagnostic.File, diagnostic.Line, diagnostic.Column),
            $"expected {file ?? ConfigPath}:{line}:{column}, got {diagnostic.File}:{diagnostic.Line}:{diagnostic.Column}: {diagnostic}");

    private protected static ConfigDiagnostic SingleError(BuildResult result)
    {
        Assert.False(result.Succeeded, "expected the build to fail");
        var errors = result.Errors.ToList();
        Assert.True(errors.Count == 1, $"expected exactly one error, got {errors.Count}:\n{Dump(result)}");
        return errors[0];
    }

    private protected static ConfigDiagnostic ErrorContaining(BuildResult result, string text)
    {
        var matches = result.Errors.Where(e => e.Message.Contains(text, StringComparison.Ordinal)).ToList();
        Assert.True(matches.Count == 1, $"expected one error containing '{text}', got {matches.Count}:\n{Dump(result)}");
        return matches[0];
    }

    private protected static string Dump(BuildResult result) => string.Join("\n", result.Diagnostics);
}
