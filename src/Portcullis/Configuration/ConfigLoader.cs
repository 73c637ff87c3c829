namespace Portcullis.Configuration;

/// <summary>A config file read and bound to the model, with the positions of everything in it.</summary>
internal sealed record LoadedConfig(string Path, PortcullisConfig Config, SourceLocations Locations, string Text)
{
    public string BaseDirectory => System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(Path)) ?? ".";

    public string Resolve(string relative) => System.IO.Path.GetFullPath(relative, BaseDirectory);
}

internal static class ConfigLoader
{
    /// <summary>Reads and binds a config file. Returns null with diagnostics when it cannot be read or parsed.</summary>
    public static LoadedConfig? Load(string path, Func<string, string?> environment, List<ConfigDiagnostic> diagnostics)
    {
        string text;
        if (Directory.Exists(path))
        {
            // Reading a directory fails as "access denied", which sends the operator after permissions.
            diagnostics.Add(new ConfigDiagnostic(path, 1, 1, "cannot read the configuration file: it is a directory",
                $"pass the YAML file itself, e.g. {System.IO.Path.Combine(path, "portcullis.yaml")}"));
            return null;
        }

        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            diagnostics.Add(new ConfigDiagnostic(path, 1, 1, $"cannot read the configuration file: {Describe(ex)}", "check the path and its permissions"));
            return null;
        }

        return Parse(path, text, environment, diagnostics);
    }

    public static LoadedConfig? Parse(string path, string text, Func<string, string?> environment, List<ConfigDiagnostic> diagnostics)
    {
        var locations = new SourceLocations(path);
        var binder = new YamlConfigBinder(path, environment, diagnostics, locations);
        var config = binder.BindDocument<PortcullisConfig>(text);
        if (config is null) return null;
        return new LoadedConfig(path, config, locations, text);
    }

    internal static string Describe(Exception ex) => Files.FileErrors.Describe(ex);
}
