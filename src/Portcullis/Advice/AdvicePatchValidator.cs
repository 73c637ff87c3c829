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
            var check = Check(snapshot.Source.Paths, snapshot.Source.MainText, patch);
            _cache[patch.Yaml] = check with { Snapshot = null }; // the answer, not the compiled config
            return check;
        }
    }

    /// <summary>Merges the patch into <paramref name="configText"/> (the file at <paramref name="configPath"/>) and compiles the result.</summary>
    public PatchCheck Check(string configPath, string configText, ConfigPatch patch) => Check([configPath], configText, patch);

    /// <summary>
    /// Merges the patch into <paramref name="mainText"/> (the main file's text; includes and overlays are read from
    /// disk) and compiles the result. A patch for something an included file defines conflicts and is not offered.
    /// </summary>
    public PatchCheck Check(IReadOnlyList<string> configPaths, string mainText, ConfigPatch patch)
    {
        var configText = mainText;
        string patched;
        try
        {
            patched = ConfigPatcher.Apply(configText, patch.Yaml);
        }
        catch (ConfigPatchException ex)
        {
            return new PatchCheck(null, null, [ex.Message]);
        }

        var env = environment ?? Environment.GetEnvironmentVariable;
        var diagnostics = new List<ConfigDiagnostic>();
        var loaded = ConfigLoader.Load(configPaths, env, diagnostics, mainText: patched);
        var result = loaded is null ? new BuildResult(null, diagnostics) : new SnapshotBuilder(env, proxyValidator, time).Compile(loaded, 0, diagnostics);
        var errors = result.Errors.Select(e => e.ToString()).ToList();
        return new PatchCheck(patched, result.Snapshot, errors);
    }
}

/// <summary>The outcome of <see cref="AdvicePatchValidator.Check(GatewaySnapshot, ConfigPatch)"/>.</summary>
/// <param name="PatchedText">The whole config with the patch merged (null when it could not be merged).</param>
/// <param name="Snapshot">The compiled result (null when it does not validate).</param>
/// <param name="Errors">Why it does not validate.</param>
internal sealed record PatchCheck(string? PatchedText, GatewaySnapshot? Snapshot, IReadOnlyList<string> Errors)
{
    public bool Valid => PatchedText is not null && Errors.Count == 0;
}
