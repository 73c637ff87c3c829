using Portcullis.Cli;

namespace Portcullis.IntegrationTests.Install;

/// <summary>
/// Install path 2 (docs/install.md): the CLI packs as a .NET tool, installs from a local folder with
/// `dotnet tool install --tool-path`, and the installed `portcullis` validates the quickstart. Only the local
/// folder is a package source, so the test needs no network.
/// </summary>
public sealed class DotnetToolTests : IDisposable
{
    private static readonly TimeSpan StepTimeout = TimeSpan.FromMinutes(5);
    private readonly string _directory = Directory.CreateTempSubdirectory("portcullis-tool-").FullName;

    public void Dispose()
    {
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    [Fact]
    public async Task PackedTool_InstallsFromALocalFolder_AndValidatesTheQuickstart()
    {
        var root = InstallProcess.RepoRoot();
        var packages = Path.Combine(_directory, "packages");
        var toolPath = Path.Combine(_directory, "tools");
        var dotnet = InstallProcess.DotnetHost();

        // --no-build: the CLI was built with these tests (project reference), in the same configuration.
        var pack = await InstallProcess.RunAsync(dotnet,
            ["pack", Path.Combine(root, "src", "Portcullis.Cli"), "-c", InstallProcess.BuildConfiguration(), "--no-build", "-o", packages, "--nologo", "-nodeReuse:false"],
            StepTimeout, root);
        Assert.True(pack.ExitCode == 0, $"dotnet pack failed: {pack}");
        var package = Assert.Single(Directory.GetFiles(packages, "Portcullis.Cli.*.nupkg"));
        Assert.EndsWith($"Portcullis.Cli.{PortcullisCli.Version}.nupkg", package, StringComparison.Ordinal);

        // Only the local folder as a source: no network, and proof that the package itself is complete.
        var config = Path.Combine(_directory, "nuget.config");
        await File.WriteAllTextAsync(config, $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <clear />
                <add key="local" value="{packages}" />
              </packageSources>
            </configuration>
            """);
        var install = await InstallProcess.RunAsync(dotnet,
            ["tool", "install", "Portcullis.Cli", "--tool-path", toolPath, "--configfile", config, "--version", PortcullisCli.Version],
            StepTimeout, _directory);
        Assert.True(install.ExitCode == 0, $"dotnet tool install failed: {install}");
        var portcullis = Path.Combine(toolPath, "portcullis");
        Assert.True(File.Exists(portcullis), $"the tool's command is not 'portcullis': {string.Join(", ", Directory.GetFiles(toolPath))}");

        var version = await InstallProcess.RunAsync(portcullis, ["--version"], StepTimeout);
        Assert.True(version.ExitCode == 0, version.ToString());
        Assert.StartsWith(PortcullisCli.Version, version.Stdout.Trim(), StringComparison.Ordinal);

        // The quickstart's TLS listener needs the development certificate run.sh makes; the installed tool makes it too.
        var certs = Path.Combine(_directory, "certs");
        var dev = await InstallProcess.RunAsync(portcullis, ["certs", "dev", "--out", certs, "--hosts", "localhost,127.0.0.1"], StepTimeout);
        Assert.True(dev.ExitCode == 0, dev.ToString());

        var quickstart = Path.Combine(root, "examples", "quickstart", "portcullis.yaml");
        var validate = await InstallProcess.RunAsync(portcullis, ["validate", "-c", quickstart], StepTimeout,
            environment: new Dictionary<string, string?> { ["QUICKSTART_CERTS"] = certs });
        Assert.True(validate.ExitCode == 0, validate.ToString());
        Assert.Contains($"{quickstart}: OK", validate.Stdout, StringComparison.Ordinal);
    }
}
