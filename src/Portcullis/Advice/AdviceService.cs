using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Portcullis.Analytics;
using Portcullis.Configuration;

namespace Portcullis.Advice;

/// <summary>
/// The advisor in the gateway: runs the <see cref="AdviceEngine"/> at start and then every advice.interval (of
/// the snapshot current at the time: a reload changes it), on a thread of its own (detectors block in DuckDB) at
/// lower priority than requests (<see cref="BackgroundPriority"/>), never on the request path. While a reload has turned the advisor off (advice.enabled: false) it skips runs.
/// </summary>
internal sealed partial class AdviceService(
    AdviceEngine engine,
    SnapshotStore store,
    IServiceProvider services,
    TimeProvider time,
    ILogger<AdviceService> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // The first run waits for the host to have started (the first generation built and the listeners bound): at
        // tens of thousands of routes its check of the patches costs as much as a reload, not to be paid during start.
        await WhenStarted(stoppingToken);
        while (!stoppingToken.IsCancellationRequested)
        {
            var settings = store.Current.Advice;
            if (settings is not null)
            {
                try
                {
                    // A thread of its own below the request path's priority (LongRunning: a new thread each run, so the niceness never leaks into the pool).
                    await Task.Factory.StartNew(() =>
                    {
                        BackgroundPriority.LowerCurrentThread();
                        var allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
                        var findings = RunOnce(stoppingToken);
                        // A run that compiled the whole config to check its patches leaves that compile's garbage.
                        services.GetService<Configuration.HeapTrim>()?.AfterBuild("the advisor's run", GC.GetAllocatedBytesForCurrentThread() - allocatedBefore);
                        return findings;
                    }, stoppingToken, TaskCreationOptions.LongRunning, TaskScheduler.Default);
                }
                catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    Log.RunFailed(logger, ex);
                }
            }

            try
            {
                await Task.Delay(settings?.Interval ?? TimeSpan.FromMinutes(1), time, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private async Task WhenStarted(CancellationToken stoppingToken)
    {
        await Task.Yield();
        if (services.GetService<IHostApplicationLifetime>() is not { } lifetime || lifetime.ApplicationStarted.IsCancellationRequested) return;
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var onStarted = lifetime.ApplicationStarted.Register(() => started.TrySetResult());
        using var onStopping = stoppingToken.Register(() => started.TrySetResult());
        await started.Task;
    }

    /// <summary>One run over the current snapshot, the store and the live state; null while the advisor is off.</summary>
    public FindingSet? RunOnce(CancellationToken cancellationToken = default)
    {
        var snapshot = store.Current;
        if (snapshot.Advice is not { } settings) return null;
        var context = new AdviceContext
        {
            Now = time.GetUtcNow().UtcDateTime,
            Snapshot = snapshot,
            Settings = settings,
            Analytics = Source(snapshot),
            Runtime = services.GetService<IAdviceRuntime>() ?? OfflineAdviceRuntime.Instance,
            Cancellation = cancellationToken,
        };
        return engine.Run(context);
    }

    // As the analytics query API reads: the fleet folder when analytics.fleetPath is set, else this instance's store.
    private AnalyticsSource? Source(GatewaySnapshot snapshot)
    {
        if (snapshot.Analytics is null || services.GetService<AnalyticsDatabase>() is not { } database) return null;
        if (snapshot.Analytics.FleetPath is { } fleet) return AnalyticsSource.Fleet(fleet);
        return AnalyticsSource.Local(database);
    }

    private static partial class Log
    {
        [LoggerMessage(9705, LogLevel.Error, "Advice: the run failed; the previous findings stay published")]
        public static partial void RunFailed(ILogger logger, Exception exception);
    }
}
