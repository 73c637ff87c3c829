using System.Diagnostics;

namespace Portcullis.Advice;

/// <summary>
/// Keeps a slow detector off the engine's cycle in a running gateway. The rate-limit replay over a week of
/// per-second arrivals takes about a minute on a large store, so running it inline would delay every other
/// check by as much. Live, the computation runs on the thread pool: the engine waits at most
/// <see cref="WaitBudget"/> for it (small stores finish inside it, so their findings are as fresh as inline) and
/// otherwise gets the last completed result. The next computation starts no sooner than
/// <see cref="DutyFactor"/> × the last one's duration after it ended, so a slow one uses at most about a tenth
/// of a core — except after the first computation, which (for the rate-limit advisor) reads and replays the whole
/// window while later ones only continue it, so its duration says nothing about the next. Offline (`portcullis advise`, tests with <see cref="OfflineAdviceRuntime"/>) it runs inline.
/// One instance per detector; only the engine's thread calls <see cref="Detect"/>.
/// </summary>
internal sealed class BackgroundDetection
{
    public static readonly TimeSpan WaitBudget = TimeSpan.FromMilliseconds(500);
    public const int DutyFactor = 10;

    private readonly TimeSpan _waitBudget;
    private Task<(IReadOnlyList<Finding> Findings, TimeSpan Took)>? _running;
    private IReadOnlyList<Finding> _last = [];
    private DateTime _nextStart = DateTime.MinValue;
    private long _completed;

    public BackgroundDetection(TimeSpan? waitBudget = null) => _waitBudget = waitBudget ?? WaitBudget;

    /// <summary>True while a computation started by an earlier run has not completed.</summary>
    public bool IsRunning => _running is not null;

    /// <summary>How long the last completed computation took (live only).</summary>
    public TimeSpan LastDuration { get; private set; }

    /// <summary>Waits for a computation in progress to complete (the benchmark spaces its cycles as the gateway's minute does).</summary>
    public bool WaitForCompletion(TimeSpan timeout) => _running is not { } task || ((IAsyncResult)task).AsyncWaitHandle.WaitOne(timeout);

    public IReadOnlyList<Finding> Detect(AdviceContext context, Func<AdviceContext, IReadOnlyList<Finding>> compute)
    {
        if (!context.Runtime.IsLive) return compute(context);
        if (_running is null && context.Now >= _nextStart)
        {
            // A thread of its own, not the pool's, at lower priority: the request path's threads are never taken for seconds of replay.
            _running = Task.Factory.StartNew(() =>
            {
                BackgroundPriority.LowerCurrentThread();
                var started = Stopwatch.GetTimestamp();
                var findings = compute(context);
                return (findings, Stopwatch.GetElapsedTime(started));
            }, context.Cancellation, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        }

        if (_running is not { } task) return _last;
        if (!task.IsCompleted && !((IAsyncResult)task).AsyncWaitHandle.WaitOne(_waitBudget)) return _last;
        _running = null;
        var (latest, took) = task.GetAwaiter().GetResult(); // a failure surfaces as this run's detector error
        _last = latest;
        LastDuration = took;
        _nextStart = ++_completed == 1 ? context.Now : context.Now + (took * DutyFactor);
        return _last;
    }
}
