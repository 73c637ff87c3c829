using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Portcullis.Configuration;
using Yarp.ReverseProxy;

namespace Portcullis.Hosting;

/// <summary>
/// Says what a shutdown does: "stopping" with the proxied requests in flight and the time they get
/// (<c>limits.shutdownTimeout</c>), then either that they all finished or how many were cut at the timeout.
/// The in-flight count is YARP's per-destination concurrency counter, so nothing is counted per request here.
/// </summary>
internal sealed partial class ShutdownLog(IProxyStateLookup proxyState, SnapshotStore store, TimeProvider time, ILogger<ShutdownLog> logger) : IHostedLifecycleService, IDisposable
{
    private static readonly TimeSpan Margin = TimeSpan.FromMilliseconds(100);
    private long _stoppingAt;
    private int _stillRunning;
    private ITimer? _timer;
    private CancellationTokenRegistration _timedOut;

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    // Runs before any service stops (Kestrel included): the listeners still accept at this point.
    public Task StoppingAsync(CancellationToken cancellationToken)
    {
        var timeout = store.Current.Config.Limits.ShutdownTimeout;
        _stoppingAt = time.GetTimestamp();
        Log.Stopping(logger, InFlight(), timeout);
        // The host's token for this stop fires at limits.shutdownTimeout and Kestrel then cuts what still runs,
        // unwinding those requests at once (possibly inside that same cancellation): count them just before.
        var before = timeout > Margin * 2 ? timeout - Margin : timeout / 2;
        _timer = time.CreateTimer(static state => ((ShutdownLog)state!).CountStillRunning(), this, before, Timeout.InfiniteTimeSpan);
        // And at the timeout itself, in case the timer ran late on a busy machine.
        _timedOut = cancellationToken.UnsafeRegister(static state => ((ShutdownLog)state!).CountStillRunning(), this);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    // Runs after every service stopped: Kestrel has drained or cut its connections.
    public Task StoppedAsync(CancellationToken cancellationToken)
    {
        _timer?.Dispose();
        _timedOut.Dispose();
        var elapsed = time.GetElapsedTime(_stoppingAt);
        // A cancelled token: the stop ran into limits.shutdownTimeout.
        if (cancellationToken.IsCancellationRequested) Log.Cut(logger, Volatile.Read(ref _stillRunning), store.Current.Config.Limits.ShutdownTimeout);
        else Log.Stopped(logger, elapsed);
        return Task.CompletedTask;
    }

    // The larger of the two counts (the requests being cut only decrease it).
    private void CountStillRunning()
    {
        var count = InFlight();
        if (count > Volatile.Read(ref _stillRunning)) Volatile.Write(ref _stillRunning, count);
    }

    private int InFlight()
    {
        var count = 0;
        foreach (var cluster in proxyState.GetClusters())
        {
            foreach (var destination in cluster.Destinations.Values) count += destination.ConcurrentRequestCount;
        }

        return count;
    }

    public void Dispose()
    {
        _timer?.Dispose();
        _timedOut.Dispose();
    }

    private static partial class Log
    {
        [LoggerMessage(1020, LogLevel.Information, "Stopping: no new connections; {InFlight} proxied request(s) in flight get up to {Timeout} (limits.shutdownTimeout) to finish")]
        public static partial void Stopping(ILogger logger, int inFlight, TimeSpan timeout);

        [LoggerMessage(1021, LogLevel.Information, "Stopped after {Elapsed}: every in-flight request finished")]
        public static partial void Stopped(ILogger logger, TimeSpan elapsed);

        [LoggerMessage(1022, LogLevel.Warning, "Stopped at the shutdown timeout ({Timeout}): {Cut} proxied request(s) still running were cut")]
        public static partial void Cut(ILogger logger, int cut, TimeSpan timeout);
    }
}
