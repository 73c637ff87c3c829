using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Portcullis.Configuration;
using Portcullis.Listeners;
using Yarp.ReverseProxy;

namespace Portcullis.Hosting;

/// <summary>
/// The gateway's shutdown, the way an operator knows it from Envoy's drain or HAProxy's <c>grace</c>. The host
/// runs <see cref="StoppingAsync"/> before any service stops, Kestrel included, so every listener is still up
/// here; it signals ApplicationStopping (/readyz: 503 <c>stopping</c>) as the first step:
/// <list type="number">
/// <item>for <c>limits.shutdownDelay</c> the route listeners keep accepting and serving, each response
/// closing its connection, so clients and load balancers move elsewhere;</item>
/// <item>then the route listeners' sockets close (connects are refused) and the proxied requests in flight
/// get up to <c>limits.shutdownTimeout</c>, while the admin listener keeps answering;</item>
/// <item>then Kestrel stops everything (what still runs at the timeout is cut).</item>
/// </list>
/// The host's own stop token fires at shutdownDelay + shutdownTimeout (<see cref="KestrelSetup"/>). Each step
/// is logged: stopping with the requests in flight, then that they all finished or how many were cut.
/// The in-flight count is YARP's per-destination concurrency counter, so nothing is counted per request here.
/// </summary>
internal sealed partial class GatewayShutdown(IProxyStateLookup proxyState, SnapshotStore store, RouteListenerGate routeListeners, IHostApplicationLifetime lifetime,
    TimeProvider time, ILogger<GatewayShutdown> logger)
    : IHostedLifecycleService, IDisposable
{
    private static readonly TimeSpan Margin = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(50);

    // Limits are read at start (a reload cannot change them): the host's stop timeout was set from these.
    private readonly LimitsOptions _limits = store.Current.Config.Limits;
    private long _stoppingAt;
    private int _stillRunning;
    private ITimer? _timer;
    private CancellationTokenRegistration _timedOut;

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        _stoppingAt = time.GetTimestamp();
        var delay = _limits.ShutdownDelay;
        var timeout = _limits.ShutdownTimeout;
        // On SIGTERM the console lifetime signals ApplicationStopping before the host stops; a host stopped by
        // code (StopAsync) signals it only after StoppingAsync. Signal it now: /readyz says stopping either way.
        lifetime.StopApplication();
        routeListeners.BeginDrain();
        if (delay > TimeSpan.Zero)
        {
            Log.Draining(logger, delay, InFlight());
            await DelayAsync(delay, cancellationToken);
        }

        await routeListeners.StopAcceptingAsync(cancellationToken);
        Log.Stopping(logger, InFlight(), timeout);

        // The host's token fires at shutdownDelay + shutdownTimeout and Kestrel then cuts what still runs,
        // unwinding those requests at once (possibly inside that same cancellation): count them just before.
        var left = delay + timeout - time.GetElapsedTime(_stoppingAt);
        var before = left > Margin * 2 ? left - Margin : left / 2;
        _timer = time.CreateTimer(static state => ((GatewayShutdown)state!).CountStillRunning(), this, before > TimeSpan.Zero ? before : TimeSpan.Zero, Timeout.InfiniteTimeSpan);
        // And at the timeout itself, in case the timer ran late on a busy machine.
        _timedOut = cancellationToken.UnsafeRegister(static state => ((GatewayShutdown)state!).CountStillRunning(), this);

        // The admin listener stays up (and /readyz answers 503) while proxied requests finish.
        while (InFlight() > 0 && !cancellationToken.IsCancellationRequested) await DelayAsync(PollInterval, cancellationToken);
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    // Runs after every service stopped: Kestrel has drained or cut its connections.
    public Task StoppedAsync(CancellationToken cancellationToken)
    {
        _timer?.Dispose();
        _timedOut.Dispose();
        var elapsed = time.GetElapsedTime(_stoppingAt);
        // A cancelled token: the stop ran into limits.shutdownTimeout.
        if (cancellationToken.IsCancellationRequested) Log.Cut(logger, Volatile.Read(ref _stillRunning), _limits.ShutdownTimeout);
        else Log.Stopped(logger, elapsed);
        return Task.CompletedTask;
    }

    private async Task DelayAsync(TimeSpan delay, CancellationToken cancellationToken)
    {
        try
        {
            await Task.Delay(delay, time, cancellationToken);
        }
        catch (OperationCanceledException)
        {
            // The stop's time is up (or the caller gave up): go on to the next step at once.
        }
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

        [LoggerMessage(1023, LogLevel.Information, "Shutting down: /readyz answers 503; the route listeners keep accepting for {Delay} (limits.shutdownDelay), each response closing its connection; {InFlight} proxied request(s) in flight")]
        public static partial void Draining(ILogger logger, TimeSpan delay, int inFlight);
    }
}
