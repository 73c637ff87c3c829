using Portcullis.Configuration;

namespace Portcullis.Routing;

/// <summary>Validation and compilation of maps (lookup tables from a file and/or inline entries).</summary>
internal static class MapsCompiler
{
    internal static Dictionary<string, CompiledMap> Compile(CompileContext context, IReadOnlyDictionary<string, MapOptions> all)
    {
        var maps = new Dictionary<string, CompiledMap>(StringComparer.Ordinal);
        foreach (var (name, options) in all)
        {
            var path = "maps." + name;
            var entries = new List<MapEntry>();
            var before = new List<ConfigDiagnostic>();
            if (options.File is null && options.Entries.Count == 0)
            {
                context.Error(path, $"map '{name}' has neither a file nor entries", "add file: maps/" + name + ".map");
            }

            if (options.File is not null)
            {
                var full = context.Loaded.Resolve(options.File);
                context.Files.Add(full);
                try
                {
                    var text = File.ReadAllText(full);
                    context.FileContents.Add(text);
                    entries.AddRange(MapFileParser.Parse(text, full, options.Kind, options.IgnoreCase, before));
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    context.Error(path + ".file", $"cannot read map file '{options.File}' ({full}): {ConfigLoader.Describe(ex)}", "paths are relative to the config file");
                }
            }

            var comparison = options.IgnoreCase ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
            foreach (var (key, value) in options.Entries)
            {
                var entryPath = path + ".entries." + key;
                if (entries.Any(e => string.Equals(e.Key, key, comparison)))
                {
                    context.Error(entryPath, $"map key '{key}' is in both the file and entries", "keep one");
                    continue;
                }

                if (string.IsNullOrWhiteSpace(value))
                {
                    context.Error(entryPath + "#key", $"map entry '{key}' has no value", $"write {key}: VALUE");
                    continue;
                }

                System.Text.RegularExpressions.Regex? pattern = null;
                if (options.Kind == MapKind.Regex && (pattern = MapFileParser.CompilePattern(key, options.IgnoreCase, out var error, out var hint)) is null)
                {
                    context.Error(entryPath + "#key", error!, hint);
                    continue;
                }

                var (line, _) = context.Loaded.Locations.Of(entryPath);
                entries.Add(new MapEntry(key, value, line, pattern));
            }

            foreach (var d in before) context.Add(d);
            maps[name] = new CompiledMap(name, options.Kind, options.IgnoreCase, options.Default, entries);
        }

        return maps;
    }
}
