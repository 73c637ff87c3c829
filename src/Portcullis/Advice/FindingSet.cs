using System.Collections.Frozen;

namespace Portcullis.Advice;

/// <summary>
/// What the advisor published after a run: immutable, swapped whole by the engine, read without locks by the
/// API, the dashboard, metrics and the webhook. Open findings (returned by the last run) come first, then the
/// resolved ones kept for <see cref="AdviceEngine.ResolvedKeep"/>.
/// </summary>
internal sealed class FindingSet
{
    public static readonly FindingSet Empty = new(DateTime.MinValue, null, false, []);

    public FindingSet(DateTime generatedAt, AdviceRunInfo? lastRun, bool storeAvailable, IReadOnlyList<AdviceEntry> entries, IReadOnlyList<string>? forgotten = null)
    {
        Forgotten = forgotten ?? [];
        GeneratedAt = generatedAt;
        LastRun = lastRun;
        StoreAvailable = storeAvailable;
        Entries = entries;
        ById = entries.ToFrozenDictionary(e => e.Finding.Id, StringComparer.Ordinal);
    }

    /// <summary>When the set was published (the run's Now); MinValue before the first run.</summary>
    public DateTime GeneratedAt { get; }

    public AdviceRunInfo? LastRun { get; }

    /// <summary>Whether the run had an analytics store to read (without one only config checks ran).</summary>
    public bool StoreAvailable { get; }

    public IReadOnlyList<AdviceEntry> Entries { get; }

    public FrozenDictionary<string, AdviceEntry> ById { get; }

    /// <summary>Ids this run stopped listing (resolved for longer than the engine keeps them).</summary>
    public IReadOnlyList<string> Forgotten { get; }

    public IEnumerable<AdviceEntry> Open => Entries.Where(e => e.ResolvedAt is null);
}

/// <summary>A finding as the engine keeps it: <see cref="ResolvedAt"/> is set once a run no longer returned it.</summary>
internal sealed record AdviceEntry(Finding Finding, DateTime? ResolvedAt = null)
{
    public bool Resolved => ResolvedAt is not null;
}

/// <summary>
/// One run: when, how long, and each detector's time, count and error (null when it ran fine). Allocated bytes are
/// counted on the run's thread: at tens of thousands of routes they say which detector grows an idle gateway's heap.
/// </summary>
internal sealed record AdviceRunInfo(DateTime At, TimeSpan Duration, IReadOnlyList<DetectorRunInfo> Detectors)
{
    /// <summary>What the run allocated, detectors and the patch check together.</summary>
    public long AllocatedBytes { get; init; }
}

internal sealed record DetectorRunInfo(string Name, TimeSpan Duration, int Findings, string? Error)
{
    public long AllocatedBytes { get; init; }
}
