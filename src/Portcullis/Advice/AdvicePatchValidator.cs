using Portcullis.Configuration;
using Yarp.ReverseProxy.Configuration;

namespace Portcullis.Advice;

/// <summary>
/// Whether a patch, merged into the config file a snapshot was loaded from, still validates: the merged text is
/// loaded and compiled exactly as `portcullis validate` and a reload do (<see cref="ConfigLoader"/>,
/// <see cref="SnapshotBuilder"/>, YARP's validator), in memory — no file is written, nothing is swapped.
/// </summary>
/// <remarks>
/// An advisor run checks its patches together (<see cref="CheckAll"/>): a compile costs as much as a reload (seconds
/// at tens of thousands of routes) and one run can propose a patch per cluster, so the patches written into the same
/// file are merged and compiled once; when that fails, the group is halved until each failing patch stands alone
/// (group testing: a set of k bad patches among n costs about 1 + k·log2(n) compiles). Patches of one run change
/// distinct entries, so a group that validates is taken to validate patch by patch; `advise --apply` checks the one
/// patch alone again before writing it. Verdicts are remembered per snapshot, and a run spends at most
/// <see cref="CompilesPerRun"/> compiles: what it leaves undecided is decided by the next runs.
/// </remarks>
/// <param name="compilesPerRun">Compiles one <see cref="CheckAll"/> call may spend (each costs about a reload of the config).</param>
internal sealed class AdvicePatchValidator(Func<string, string?>? environment, IConfigValidator? proxyValidator, TimeProvider time, int compilesPerRun = AdvicePatchValidator.DefaultCompilesPerRun)
{
    /// <summary>Enough for one bad patch among 50,000 (about 2·log2 n) with room; a run that needs more goes on next time.</summary>
    public const int DefaultCompilesPerRun = 40;

    public int CompilesPerRun => compilesPerRun;

    // Weak: the verdicts are for one generation, which they must not keep alive after a reload replaced it.
    private readonly WeakReference<GatewaySnapshot?> _cachedFor = new(null);
    private Dictionary<string, PatchVerdict> _cache = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    /// <summary>How many compiles the checks have run since start (each one a whole-config load and compile).</summary>
    public long Compiles => Interlocked.Read(ref _compiles);

    private long _compiles;

    /// <summary>
    /// A verdict for each distinct patch (by its YAML) merged into <paramref name="snapshot"/>'s files; patches left
    /// out of the answer were not decided within this call's budget (offer them without the patch for now).
    /// </summary>
    public IReadOnlyDictionary<string, PatchVerdict> CheckAll(GatewaySnapshot snapshot, IEnumerable<ConfigPatch> patches, CancellationToken cancellation = default)
    {
        lock (_lock)
        {
            if (!_cachedFor.TryGetTarget(out var cachedFor) || !ReferenceEquals(cachedFor, snapshot))
            {
                _cachedFor.SetTarget(snapshot);
                _cache = new(StringComparer.Ordinal);
            }

            var answer = new Dictionary<string, PatchVerdict>(StringComparer.Ordinal);
            var byTarget = new Dictionary<string, List<string>>(StringComparer.Ordinal);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var patch in patches)
            {
                if (!seen.Add(patch.Yaml)) continue;
                if (_cache.TryGetValue(patch.Yaml, out var known))
                {
                    answer[patch.Yaml] = known;
                    continue;
                }

                if (TargetOf(snapshot.Source, patch.Yaml, out var error) is not { } target)
                {
                    answer[patch.Yaml] = _cache[patch.Yaml] = new PatchVerdict(null, [error!]);
                    continue;
                }

                if (!byTarget.TryGetValue(target, out var group)) byTarget[target] = group = [];
                group.Add(patch.Yaml);
            }

            var budget = CompilesPerRun;
            foreach (var (target, group) in byTarget)
            {
                Decide(snapshot, target, group, knownToFail: false, ref budget, cancellation);
            }

            // What the budget left undecided stays out of the answer (and out of the cache: the next run goes on).
            foreach (var group in byTarget.Values)
            {
                foreach (var yaml in group)
                {
                    if (_cache.TryGetValue(yaml, out var verdict)) answer[yaml] = verdict;
                }
            }

            return answer;
        }
    }

    // Group testing: the group's patches merged and compiled at once; a failing group is halved. A half is not
    // compiled when its sibling passed and the parent failed (it must hold the failure).
    private void Decide(GatewaySnapshot snapshot, string target, List<string> group, bool knownToFail, ref int budget, CancellationToken cancellation)
    {
        if (group.Count == 0) return;
        IReadOnlyList<string> errors;
        if (knownToFail && group.Count > 1)
        {
            errors = ["(split)"];
        }
        else
        {
            if (budget <= 0) return;
            cancellation.ThrowIfCancellationRequested();
            budget--;
            Interlocked.Increment(ref _compiles);
            errors = Compile(snapshot.Source, target, group, snapshot).Errors;
        }

        if (errors.Count == 0)
        {
            foreach (var yaml in group) _cache[yaml] = new PatchVerdict(target, []);
            return;
        }

        if (group.Count == 1)
        {
            _cache[group[0]] = new PatchVerdict(null, errors);
            return;
        }

        var half = group.Count / 2;
        var left = group.GetRange(0, half);
        var right = group.GetRange(half, group.Count - half);
        Decide(snapshot, target, left, knownToFail: false, ref budget, cancellation);
        var leftPassed = left.TrueForAll(yaml => _cache.TryGetValue(yaml, out var v) && v.Valid);
        Decide(snapshot, target, right, knownToFail: leftPassed, ref budget, cancellation);
    }

    private static string? TargetOf(LoadedConfig source, string patchYaml, out string? error)
    {
        error = null;
        try
        {
            var fragment = ConfigPatcher.Parse(patchYaml);
            if (source.Provenance is not { } provenance) return Path.GetFullPath(source.Paths[0]);
            var file = provenance.TargetOf(fragment, out var conflict);
            error = conflict;
            return file;
        }
        catch (ConfigPatchException ex)
        {
            error = ex.Message;
            return null;
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
        if (TargetOf(source, patch.Yaml, out var error) is not { } target) return new PatchCheck(null, null, [error!]);
        return Compile(source, target, [patch.Yaml]);
    }

    // The target file's text with the patches merged, and the whole configuration loaded and compiled with it
    // (with the serving snapshot, when known, as the previous generation: what the patches leave alone is not validated again).
    private PatchCheck Compile(LoadedConfig source, string target, IReadOnlyList<string> patches, GatewaySnapshot? serving = null)
    {
        var main = Path.GetFullPath(source.Paths[0]);
        string patched;
        try
        {
            var text = target == main ? source.MainText
                : source.Provenance!.Texts.TryGetValue(target, out var known) ? known : File.ReadAllText(target);
            patched = ConfigPatcher.ApplyAll(text, patches);
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
        var result = loaded is null ? new BuildResult(null, diagnostics) : new SnapshotBuilder(env, proxyValidator, time).Compile(loaded, 0, diagnostics, serving);
        var errors = result.Errors.Select(e => e.ToString()).ToList();
        return new PatchCheck(patched, result.Snapshot, errors) { TargetFile = target };
    }
}

/// <summary>An advisor run's verdict on one patch: valid (and the file it goes into) or why not.</summary>
/// <param name="TargetFile">The file the patch is merged into (full path); null when it is not valid.</param>
/// <param name="Errors">Why it does not validate (empty when it does).</param>
internal sealed record PatchVerdict(string? TargetFile, IReadOnlyList<string> Errors)
{
    public bool Valid => TargetFile is not null && Errors.Count == 0;
}

/// <summary>The outcome of <see cref="AdvicePatchValidator.Check(LoadedConfig, ConfigPatch)"/>.</summary>
/// <param name="PatchedText">The whole target file with the patch merged (null when it could not be merged).</param>
/// <param name="Snapshot">The compiled result (null when it does not validate).</param>
/// <param name="Errors">Why it does not validate.</param>
/// <param name="TargetFile">The file the patch is merged into (full path): the main file, or the included file or overlay that defines what it changes.</param>
internal sealed record PatchCheck(string? PatchedText, GatewaySnapshot? Snapshot, IReadOnlyList<string> Errors)
{
    public string? TargetFile { get; init; }

    public bool Valid => PatchedText is not null && Errors.Count == 0;
}
