using Microsoft.AspNetCore.Builder;

namespace Portcullis.Cli;

/// <summary>How every web host of the CLI (the gateway, explain, echo) is created.</summary>
internal static class HostDefaults
{
    /// <summary>
    /// No arguments for the host, and no watching of its appsettings.json (which Portcullis does not use): the
    /// default watches it with a recursive inotify watch of the working directory, so a gateway started in /tmp
    /// walked all 10,596 directories under it at start, and a large tree could exhaust fs.inotify.max_user_watches.
    /// The gateway watches its own files (portcullis.yaml, includes, maps, keys) itself.
    /// </summary>
    public static WebApplicationOptions Options() => new() { Args = ["--hostBuilder:reloadConfigOnChange=false"] };
}
