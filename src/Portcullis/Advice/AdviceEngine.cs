using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Portcullis.Configuration;

namespace Portcullis.Advice;

/// <summary>Told after every run (the webhook, the metrics): the published set and the findings new in it.</summary>
internal interface IAdviceListener
{
    void Published(FindingSet set, IReadOnlyList<Finding> newFindings);
}

/// <summary>
/// One advisor run, the same code in the gateway's background service (<see cref="AdviceService"/>) and in
/// `portcullis advise`: every detector in turn (each timed; one that throws is skipped for the run and its error
/// logged once per distinct message), patches that would not validate dropped, first/last seen kept across runs
/// by id, findings no longer returned kept as resolved for <see cref="ResolvedKeep"/>, and the result published
/// as one immutable <see cref="FindingSet"/> (readers never lock).
/// </summary>
internal sealed partial class AdviceEngine(IEnumerable<IAdviceDetector> detectors, AdvicePatchValidator patches, ILogger<AdviceEngine> logger, IEnumerable<IAdviceListener>? listeners = null)
{
    /// <summary>How long a finding the runs no longer return stays listed (state resolved).</summary>
    public static readonly TimeSpan ResolvedKeep = TimeSpan.FromHours(1);

    private readonly IAdviceDetector[] _detectors = [.. detectors];
    private readonly IAdviceListener[] _listeners = [.. listeners ?? []];
    private readonly Lock _run = new();

    // Touched only under _run: the errors and dropped patches already logged (logged once, not every minute).
    private readonly HashSet<string> _logged = new(StringComparer.Ordinal);
    private volatile FindingSet _current = FindingSet.Empty;

    public FindingSet Current => _current;

    public IReadOnlyList<IAdviceDetector> Detectors => _detectors;

    /// <summary>Runs every detector over the context and publishes the result. Runs are serialized.</summary>
    public FindingSet Run(AdviceContext context)
    {
        lock (_run)
        {
            var started = Stopwatch.GetTimestamp();
            var allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
            var runs = new List<DetectorRunInfo>(_detectors.Length);
            var found = new Dictionary<string, Finding>(StringComparer.Ordinal);
            var foundBy = new Dictionary<string, string>(StringComparer.Ordinal); // finding id → detector name
            foreach (var detector in _detectors)
            {
                context.Cancellation.ThrowIfCancellationRequested();
                var detectorStarted = Stopwatch.GetTimestamp();
                var detectorAllocated = GC.GetAllocatedBytesForCurrentThread();
                IReadOnlyList<Finding> findings;
                string? error = null;
                try
                {
                    findings = detector.Detect(context);
                }
                catch (OperationCanceledException) when (context.Cancellation.IsCancellationRequested)
                {
                    throw;
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    findings = [];
                    error = ex.GetType().Name + ": " + ex.Message;
                    if (_logged.Add("error|" + detector.Name + "|" + error)) Log.DetectorFailed(logger, detector.Name, error, ex);
                }

                var kept = 0;
                foreach (var finding in findings)
                {
                    if (!found.TryAdd(finding.Id, finding))
                    {
                        if (_logged.Add("duplicate|" + finding.Id)) Log.DuplicateId(logger, detector.Name, finding.Id, finding.Kind);
                        continue;
                    }

                    foundBy[finding.Id] = detector.Name;
                    kept++;
                }

                runs.Add(new DetectorRunInfo(detector.Name, Stopwatch.GetElapsedTime(detectorStarted), kept, error)
                {
                    AllocatedBytes = GC.GetAllocatedBytesForCurrentThread() - detectorAllocated,
                });
            }

            WithValidPatches(context, found, foundBy);
            var previous = _current;
            var entries = new List<AdviceEntry>(found.Count);
            var fresh = new List<Finding>();
            foreach (var finding in found.Values.OrderByDescending(f => f.Severity).ThenBy(f => f.Kind, StringComparer.Ordinal).ThenBy(f => f.Id, StringComparer.Ordinal))
            {
                var merged = finding;
                if (previous.ById.TryGetValue(finding.Id, out var before))
                {
                    merged = finding with
                    {
                        FirstSeen = Min(before.Finding.FirstSeen, finding.FirstSeen),
                        LastSeen = Max(before.Finding.LastSeen, finding.LastSeen),
                    };
                }

                // New: not open after the previous run (a resolved one coming back counts as new again).
                if (before is null || before.Resolved) fresh.Add(merged);
                entries.Add(new AdviceEntry(merged));
            }

            var forgotten = new List<string>();
            foreach (var entry in previous.Entries)
            {
                if (found.ContainsKey(entry.Finding.Id)) continue;
                var resolvedAt = entry.ResolvedAt ?? context.Now;
                if (context.Now - resolvedAt < ResolvedKeep) entries.Add(entry with { ResolvedAt = resolvedAt });
                else forgotten.Add(entry.Finding.Id);
            }

            var info = new AdviceRunInfo(context.Now, Stopwatch.GetElapsedTime(started), runs)
            {
                AllocatedBytes = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore,
            };
            var set = new FindingSet(context.Now, info, context.Analytics is not null, entries, forgotten);
            _current = set;
            foreach (var listener in _listeners)
            {
                try
                {
                    listener.Published(set, fresh);
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    Log.ListenerFailed(logger, listener.GetType().Name, ex);
                }
            }

            return set;
        }
    }

    // A patch is offered only if the config it makes validates; otherwise the finding goes out without it. The
    // run's patches are checked together (one compile when they all validate); one the budget left undecided goes
    // out without its patch this run and with it once a later run has decided.
    private void WithValidPatches(AdviceContext context, Dictionary<string, Finding> found, Dictionary<string, string> foundBy)
    {
        var patched = found.Values.Where(f => f.Patch is not null).ToList();
        if (patched.Count == 0) return;
        IReadOnlyDictionary<string, PatchVerdict> verdicts;
        try
        {
            verdicts = patches.CheckAll(context.Snapshot, patched.Select(f => f.Patch!), context.Cancellation);
        }
        catch (OperationCanceledException) when (context.Cancellation.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            var failed = new PatchVerdict(null, [ex.GetType().Name + ": " + ex.Message]);
            verdicts = patched.Select(f => f.Patch!.Yaml).Distinct(StringComparer.Ordinal).ToDictionary(y => y, _ => failed, StringComparer.Ordinal);
        }

        var main = Path.GetFullPath(context.Snapshot.Source.Paths[0]);
        var undecided = 0;
        foreach (var finding in patched)
        {
            var patch = finding.Patch!;
            if (!verdicts.TryGetValue(patch.Yaml, out var verdict))
            {
                undecided++;
                found[finding.Id] = finding with { Patch = null };
                continue;
            }

            if (verdict.Valid)
            {
                found[finding.Id] = finding with { Patch = patch with { File = ConfigProvenance.DisplayRelativeTo(main, verdict.TargetFile!) } };
                continue;
            }

            if (_logged.Add("patch|" + context.Snapshot.Fingerprint + "|" + finding.Id))
            {
                Log.PatchDropped(logger, foundBy[finding.Id], finding.Id, finding.Kind, string.Join("; ", verdict.Errors.Take(3)));
            }

            found[finding.Id] = finding with { Patch = null };
        }

        if (undecided > 0) Log.PatchesDeferred(logger, undecided, patches.CompilesPerRun);
    }

    private static DateTime Min(DateTime a, DateTime b) => a <= b ? a : b;

    private static DateTime Max(DateTime a, DateTime b) => a >= b ? a : b;

    private static partial class Log
    {
        [LoggerMessage(9700, LogLevel.Error, "Advice: detector {Detector} failed and was skipped: {Error} (logged once per distinct error)")]
        public static partial void DetectorFailed(ILogger logger, string detector, string error, Exception exception);

        [LoggerMessage(9701, LogLevel.Warning, "Advice: detector {Detector} proposed a patch for finding {Id} ({Kind}) that does not validate; the finding is shown without it: {Errors}")]
        public static partial void PatchDropped(ILogger logger, string detector, string id, string kind, string errors);

        [LoggerMessage(9703, LogLevel.Warning, "Advice: detector {Detector} returned finding {Id} ({Kind}) already returned by an earlier detector this run; kept the first")]
        public static partial void DuplicateId(ILogger logger, string detector, string id, string kind);

        [LoggerMessage(9707, LogLevel.Information, "Advice: {Count} findings go out without their patch this run: checking them needs more than the {Compiles} whole-config compiles a run may spend; later runs go on")]
        public static partial void PatchesDeferred(ILogger logger, int count, int compiles);

        [LoggerMessage(9704, LogLevel.Error, "Advice: {Listener} failed on the published findings")]
        public static partial void ListenerFailed(ILogger logger, string listener, Exception exception);
    }
}
