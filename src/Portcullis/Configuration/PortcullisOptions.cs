namespace Portcullis.Configuration;

/// <summary>How the host runs the gateway.</summary>
public sealed class PortcullisOptions
{
    /// <summary>The YAML configuration file.</summary>
    public string ConfigPath { get; set; } = "portcullis.yaml";

    /// <summary>Files read after <see cref="ConfigPath"/>, in order, each overriding what came before by name (environment overlays).</summary>
    public IList<string> Overlays { get; } = [];

    /// <summary>Bind Kestrel to the configured listeners and limits (turn off when the host binds its own).</summary>
    public bool ConfigureKestrel { get; set; } = true;

    /// <summary>
    /// Changes the loaded configuration before it is compiled (portcullis explain turns off what would write files
    /// or shared counters). Not for gateways: what runs must be what the file says.
    /// </summary>
    internal Func<PortcullisConfig, PortcullisConfig>? Rewrite { get; set; }

    /// <summary>Where ${VAR} values come from; the process environment by default.</summary>
    public Func<string, string?>? Environment { get; set; }
}
