using Portcullis.Configuration;

namespace Portcullis.IntegrationTests.Install;

/// <summary>Runs only where systemd-analyze is installed (Debian: the systemd package); skipped with the reason elsewhere.</summary>
public sealed class SystemdAnalyzeFactAttribute : FactAttribute
{
    public SystemdAnalyzeFactAttribute()
    {
        if (SystemdUnitTests.SystemdAnalyze() is null) Skip = "systemd-analyze is not installed (apt-get install systemd) — the unit is checked where it is";
    }
}

/// <summary>
/// Install path 4: deploy/systemd/portcullis.service is accepted by systemd itself (`systemd-analyze verify`,
/// warnings included), keeps its hardening (`systemd-analyze security --offline`) and agrees with the gateway:
/// SIGHUP reloads, SIGTERM drains for limits.shutdownTimeout, which systemd must outwait.
/// </summary>
public sealed class SystemdUnitTests : IDisposable
{
    private const string Installed = "/opt/portcullis/portcullis";
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(2);
    private readonly string _directory = Directory.CreateTempSubdirectory("portcullis-systemd-").FullName;

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

    internal static string? SystemdAnalyze() =>
        new[] { "/usr/bin/systemd-analyze", "/bin/systemd-analyze" }.FirstOrDefault(File.Exists);

    private static string UnitText() => File.ReadAllText(Path.Combine(InstallProcess.RepoRoot(), "deploy", "systemd", "portcullis.service"));

    /// <summary>The unit with its binary path pointed at a stand-in: verify checks that ExecStart is executable.</summary>
    private string StagedUnit()
    {
        var binary = Path.Combine(_directory, "portcullis");
        File.WriteAllText(binary, "#!/bin/sh\n");
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(binary, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var unit = Path.Combine(_directory, "portcullis.service");
        var text = UnitText();
        Assert.Contains(Installed, text, StringComparison.Ordinal);
        File.WriteAllText(unit, text.Replace(Installed, binary, StringComparison.Ordinal));
        return unit;
    }

    [SystemdAnalyzeFact]
    public async Task Unit_PassesSystemdAnalyzeVerify_WithoutAWarning()
    {
        var verify = await InstallProcess.RunAsync(SystemdAnalyze()!, ["verify", StagedUnit()], Timeout);

        Assert.True(verify.ExitCode == 0, verify.ToString());
        // verify exits 0 on unknown keys and unparsable values (it only warns): every line it prints is a finding.
        Assert.True(verify.Stderr.Trim().Length == 0 && verify.Stdout.Trim().Length == 0, verify.ToString());
    }

    [SystemdAnalyzeFact]
    public async Task Unit_ExposureLevel_StaysAtMost2()
    {
        // The scale is 0 (locked down) to 10 (unsandboxed); --threshold is in tenths. Today: 1.8.
        var security = await InstallProcess.RunAsync(SystemdAnalyze()!, ["security", "--offline=true", "--threshold=20", "--no-pager", StagedUnit()], Timeout);

        Assert.True(security.ExitCode == 0, security.ToString());
    }

    [Fact]
    public void Unit_AgreesWithTheGateway_OnSignalsShutdownAndHardening()
    {
        var settings = UnitText().Split('\n')
            .Select(l => l.Trim())
            .Where(l => l.Length > 0 && l[0] is not ('#' or ';' or '[') && l.Contains('=', StringComparison.Ordinal))
            .Select(l => l.Split('=', 2))
            .ToLookup(p => p[0].Trim(), p => p[1].Trim(), StringComparer.Ordinal);
        string One(string key) => Assert.Single(settings[key]);

        Assert.Equal($"{Installed} run -c ${{CONFIGURATION_DIRECTORY}}/portcullis.yaml", One("ExecStart"));
        Assert.Equal("/bin/kill -HUP $MAINPID", One("ExecReload"));
        Assert.Equal("on-failure", One("Restart"));

        // systemd sends SIGKILL after TimeoutStopSec: it must outlast the gateway's drain, with margin.
        var stop = TimeSpan.FromSeconds(int.Parse(One("TimeoutStopSec").TrimEnd('s'), System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(stop >= new LimitsOptions().ShutdownTimeout + TimeSpan.FromSeconds(10), $"TimeoutStopSec={stop} does not outlast shutdownTimeout {new LimitsOptions().ShutdownTimeout}");

        Assert.Equal("yes", One("DynamicUser"));
        Assert.Equal("strict", One("ProtectSystem"));
        Assert.Equal("yes", One("NoNewPrivileges"));
        Assert.Equal("CAP_NET_BIND_SERVICE", One("CapabilityBoundingSet"));
        Assert.Equal("CAP_NET_BIND_SERVICE", One("AmbientCapabilities"));
        foreach (var directory in new[] { "ConfigurationDirectory", "StateDirectory", "LogsDirectory" }) Assert.Equal("portcullis", One(directory));
        // The JIT needs W+X pages: this setting would make the gateway crash at start.
        Assert.Empty(settings["MemoryDenyWriteExecute"]);
    }
}
