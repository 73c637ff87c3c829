using System.Collections.Frozen;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace Portcullis.Advice;

/// <summary>What an operator decided about a finding: acknowledged (seen, stays listed under that state) or muted.</summary>
internal enum FindingDecision
{
    Acknowledged,
    Muted,
}

/// <summary>One decision: what, when, by whom (the admin caller's actor, never a credential).</summary>
internal sealed record FindingDecisionRecord(FindingDecision Decision, DateTime At, string By, string? Kind);

/// <summary>
/// Acknowledged and muted findings, by id, kept in advice.statePath (JSON, written to a temporary file then renamed
/// over the old one, mode 0600) so they survive restarts; without a path, in memory only. Readers take the
/// immutable <see cref="Current"/>; writes are serialized. A muted finding stays muted when it comes back.
/// </summary>
internal sealed partial class AdviceStateStore : IAdviceListener
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true, Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter(JsonNamingPolicy.CamelCase) } };

    private readonly ILogger _logger;
    private readonly Lock _write = new();
    private volatile FrozenDictionary<string, FindingDecisionRecord> _current;

    public AdviceStateStore(string? path, ILogger logger)
    {
        Path = path;
        _logger = logger;
        _current = Load(path, logger);
    }

    /// <summary>The file (absolute), or null when decisions are kept in memory only.</summary>
    public string? Path { get; }

    public FrozenDictionary<string, FindingDecisionRecord> Current => _current;

    public FindingDecisionRecord? Get(string id) => _current.GetValueOrDefault(id);

    /// <summary>Records (or with null, clears) the decision on a finding and writes the file.</summary>
    /// <exception cref="IOException">The file could not be written; the decision is not kept.</exception>
    public void Set(string id, FindingDecisionRecord? decision)
    {
        lock (_write)
        {
            var next = new Dictionary<string, FindingDecisionRecord>(_current, StringComparer.Ordinal);
            if (decision is null) next.Remove(id);
            else next[id] = decision;
            var frozen = next.ToFrozenDictionary(StringComparer.Ordinal);
            if (Path is not null) Write(Path, frozen);
            _current = frozen;
        }
    }

    /// <summary>Acknowledgements of findings the engine forgot (resolved for an hour) end: a recurrence is open again.</summary>
    public void Published(FindingSet set, IReadOnlyList<Finding> newFindings)
    {
        foreach (var id in set.Forgotten)
        {
            if (Get(id)?.Decision != FindingDecision.Acknowledged) continue;
            try
            {
                Set(id, null);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                Log.StateUnwritable(_logger, Path!, ex.Message);
            }
        }
    }

    private static void Write(string path, FrozenDictionary<string, FindingDecisionRecord> decisions)
    {
        var document = new StateFile(1, decisions.OrderBy(d => d.Key, StringComparer.Ordinal).ToDictionary(d => d.Key, d => d.Value, StringComparer.Ordinal));
        var directory = System.IO.Path.GetDirectoryName(path)!;
        Directory.CreateDirectory(directory);
        var temporary = System.IO.Path.Combine(directory, "." + System.IO.Path.GetFileName(path) + ".tmp-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
            if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            using (var stream = new FileStream(temporary, options))
            {
                JsonSerializer.Serialize(stream, document, Json);
                stream.Flush(flushToDisk: true);
            }

            File.Move(temporary, path, overwrite: true);
        }
        catch
        {
            File.Delete(temporary);
            throw;
        }
    }

    private static FrozenDictionary<string, FindingDecisionRecord> Load(string? path, ILogger logger)
    {
        if (path is null || !File.Exists(path)) return FrozenDictionary<string, FindingDecisionRecord>.Empty;
        try
        {
            using var stream = File.OpenRead(path);
            var document = JsonSerializer.Deserialize<StateFile>(stream, Json);
            return (document?.Findings ?? []).ToFrozenDictionary(StringComparer.Ordinal);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or JsonException)
        {
            // Decisions are convenience, not security: start without them rather than not start, and say so.
            Log.StateUnreadable(logger, path, ex.Message);
            return FrozenDictionary<string, FindingDecisionRecord>.Empty;
        }
    }

    private sealed record StateFile(int Version, Dictionary<string, FindingDecisionRecord> Findings);

    private static partial class Log
    {
        [LoggerMessage(9702, LogLevel.Warning, "Advice: cannot read the acknowledged/muted findings from {Path}: {Error}; starting without them (the file is replaced on the next change)")]
        public static partial void StateUnreadable(ILogger logger, string path, string error);

        [LoggerMessage(9706, LogLevel.Warning, "Advice: cannot write {Path}: {Error}")]
        public static partial void StateUnwritable(ILogger logger, string path, string error);
    }
}
