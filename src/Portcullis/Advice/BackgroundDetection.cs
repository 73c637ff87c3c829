using System.Diagnostics;

namespace Portcullis.Advice;

/// <summary>
/// Keeps a slow detector off the engine's cycle in a running gateway. The rate-limit replay over a week of
/// per-second arrivals takes about a minute on a large store, so running it inline would delay every other
/// check by as much. Live, the computation runs on a thread of its own: the engine waits at most
/// <see cref="WaitBudget"/> for it (small stores finish inside it, so their findings are as fresh as inline) and
/// otherwise gets the last completed result. The next computation starts no sooner than
/// <see cref="DutyFactor"/> × the last one's duration after it ended, so a slow one uses at most about a tenth
/// of a core — but no later than <see cref="MaxSpacing"/> after it (the duration is wall time, which a loaded
/// host inflates: a 2 s computation that took 20 s at load 30 must not push the next one 200 s away), and at the
/// first run after a reload (a new limit is judged against the config in force, not minutes later). The first
/// computation does not space the next either: it reads and replays the whole window while later ones only
/// continue it, so its duration says nothing about the next. Offline (`portcullis advise`, tests with
/// <see cref="OfflineAdviceRuntime"/>) it runs inline. One instance per detector; only the engine's thread calls
/// <see cref="Detect"/>.
/// </summary>
internal sealed class BackgroundDetection
{
    public static readonly TimeSpan WaitBudget = TimeSpan.FromMilliseconds(500);
    public static readonly TimeSpan DefaultMaxSpacing = TimeSpan.FromMinutes(1);
    public const int DutyFactor = 10;

    private readonly TimeSpan _waitBudget;
    private readonly TimeSpan _maxSpacing;
    private Task<(IReadOnlyList<Finding> Findings, TimeSpan Took)>? _running;
    private IReadOnlyList<Finding> _last = [];
    private DateTime _nextStart = DateTime.MinValue;
    private string? _startedFor;
    private long _completed;

    public BackgroundDetection(TimeSpan? waitBudget = null, TimeSpan? maxSpacing = null)
    {
        _waitBudget = waitBudget ?? WaitBudget;
        _maxSpacing = maxSpacing ?? DefaultMaxSpacing;
    }

    /// <summary>The longest wait between the end of a computation and the start of the next.</summary>
    public TimeSpan MaxSpacing => _maxSpacing;

    /// <summary>True while a computation started by an earlier run has not completed.</summary>
    public bool IsRunning => _running is not null;

    /// <summary>How long the last completed computation took (live only).</summary>
    public TimeSpan LastDuration { get; private set; }

    /// <summary>Waits for a computation in progress to complete (the benchmark spaces its cycles as the gateway's minute does).</summary>
    public bool WaitForCompletion(TimeSpan timeout) => _running is not { } task || ((IAsyncResult)task).AsyncWaitHandle.WaitOne(timeout);

    public IReadOnlyList<Finding> Detect(AdviceContext context, Func<AdviceContext, IReadOnlyList<Finding>> compute)
    {
        if (!context.Runtime.IsLive) return compute(context);
        var config = context.Snapshot.Fingerprint;
        if (_running is null && (context.Now >= _nextStart || !string.Equals(config, _startedFor, StringComparison.Ordinal)))
        {
            _startedFor = config;

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
        var spacing = took * DutyFactor;
        _nextStart = ++_completed == 1 ? context.Now : context.Now + (spacing < _maxSpacing ? spacing : _maxSpacing);
        return _last;
    }
}
