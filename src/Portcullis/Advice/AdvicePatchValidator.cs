using Portcullis.Configuration;
using Yarp.ReverseProxy.Configuration;

namespace Portcullis.Advice;

/// <summary>
/// Whether a patch, merged into the config file a snapshot was loaded from, still validates: the merged text is
/// loaded and compiled exactly as `portcullis validate` and a reload do (<see cref="ConfigLoader"/>,
/// <see cref="SnapshotBuilder"/>, YARP's validator), in memory — no file is written, nothing is swapped.
/// Answers are remembered per snapshot, so an unchanged patch costs one compile per config version.
/// </summary>
internal sealed class AdvicePatchValidator(Func<string, string?>? environment, IConfigValidator? proxyValidator, TimeProvider time)
{
    private GatewaySnapshot? _cachedFor;
    private Dictionary<string, PatchCheck> _cache = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    /// <summary>The patched text and, when it does not validate, the first errors (file:line:column).</summary>
    public PatchCheck Check(GatewaySnapshot snapshot, ConfigPatch patch)
    {
        lock (_lock)
        {
            if (!ReferenceEquals(_cachedFor, snapshot))
            {
                _cachedFor = snapshot;
                _cache = new(StringComparer.Ordinal);
            }

            if (_cache.TryGetValue(patch.Yaml, out var known)) return known;
            var check = Check(snapshot.Source, patch);
            _cache[patch.Yaml] = check with { Snapshot = null }; // the answer, not the compiled config
            return check;
        }
    }

    /// <summary>Merges the patch into <paramref name="configText"/> (the file at <paramref name="configPath"/>, read alone) and compiles the result.</summary>
    public PatchCheck Check(string configPath, string configText, ConfigPatch patch)
    {
        var env = environment ?? Environment.GetEnvironmentVariable;
        var diagnostics = new List<ConfigDiagnostic>();
        var loaded = ConfigLoader.Load([configPath], env, diagnostics, mainText: configText);
        if (loaded is null) return new PatchCheck(null, null, [.. diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error).Select(d => d.ToString())]);
        return Check(loaded, patch);
    }

    /// <summary>
    /// Merges the patch into the file that defines what it changes (<see cref="ConfigProvenance.TargetOf"/>: the main
    /// file, an included file, or the overlay whose definition wins) and compiles the whole configuration with that
    /// file's text replaced; the other files are taken as <paramref name="source"/> read them (a folder include
    /// still lists its folder). A patch that changes entries of several files is not offered.
    /// </summary>
    public PatchCheck Check(LoadedConfig source, ConfigPatch patch)
    {
        var main = Path.GetFullPath(source.Paths[0]);
        string target;
        string patched;
        try
        {
            var fragment = ConfigPatcher.Parse(patch.Yaml);
            if (source.Provenance is { } provenance)
            {
                if (provenance.TargetOf(fragment, out var conflict) is not { } file) return new PatchCheck(null, null, [conflict!]);
                target = file;
            }
            else
            {
                target = main;
            }

            var text = target == main ? source.MainText
                : source.Provenance!.Texts.TryGetValue(target, out var known) ? known : File.ReadAllText(target);
            patched = ConfigPatcher.Apply(text, patch.Yaml);
        }
        catch (ConfigPatchException ex)
        {
            return new PatchCheck(null, null, [ex.Message]);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return new PatchCheck(null, null, [$"cannot read the file the patch is for: {ex.Message}"]);
        }

        var texts = new Dictionary<string, string>(source.Provenance?.Texts ?? new Dictionary<string, string>(), StringComparer.Ordinal) { [target] = patched };
        var env = environment ?? Environment.GetEnvironmentVariable;
        var diagnostics = new List<ConfigDiagnostic>();
        var loaded = ConfigLoader.Load(source.Paths, env, diagnostics, mainText: target == main ? patched : source.MainText, texts: texts);
        var result = loaded is null ? new BuildResult(null, diagnostics) : new SnapshotBuilder(env, proxyValidator, time).Compile(loaded, 0, diagnostics);
        var errors = result.Errors.Select(e => e.ToString()).ToList();
        return new PatchCheck(patched, result.Snapshot, errors) { TargetFile = target };
    }
}

/// <summary>The outcome of <see cref="AdvicePatchValidator.Check(GatewaySnapshot, ConfigPatch)"/>.</summary>
/// <param name="PatchedText">The whole target file with the patch merged (null when it could not be merged).</param>
/// <param name="Snapshot">The compiled result (null when it does not validate).</param>
/// <param name="Errors">Why it does not validate.</param>
/// <param name="TargetFile">The file the patch is merged into (full path): the main file, or the included file or overlay that defines what it changes.</param>
internal sealed record PatchCheck(string? PatchedText, GatewaySnapshot? Snapshot, IReadOnlyList<string> Errors)
{
    public string? TargetFile { get; init; }

    public bool Valid => PatchedText is not null && Errors.Count == 0;
}
