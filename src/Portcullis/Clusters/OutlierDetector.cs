using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Portcullis.Configuration;
using Portcullis.Observability;
using Yarp.ReverseProxy;
using Yarp.ReverseProxy.Health;
using Yarp.ReverseProxy.Model;

namespace Portcullis.Clusters;

/// <summary>
/// healthCheck.outlierDetection, off the request path: every cluster's interval, takes each destination's counts
/// (kept by the passive policy with Interlocked increments), finds the outliers (<see cref="OutlierMath"/>) and
/// ejects them through YARP's passive health with the ejection time as reactivation period — so an ejection
/// composes with consecutive-failure ejections (both are passive health) and active health (either keeps a
/// destination out), and YARP brings the destination back by itself.
/// </summary>
internal sealed partial class OutlierDetector(
    SnapshotStore snapshots,
    IProxyStateLookup proxy,
    DestinationCounterTable counters,
    IDestinationHealthUpdater healthUpdater,
    IClusterDestinationsUpdater destinationsUpdater,
    DrainRegistry drains,
    DestinationHealthHistory history,
    TimeProvider time,
    ILogger<OutlierDetector> logger) : BackgroundService
{
    /// <summary>The longest the loop sleeps, so that a reload that adds or shortens an interval is picked up soon.</summary>
    private static readonly TimeSpan MaxSleep = TimeSpan.FromSeconds(1);

    private readonly Dictionary<string, DateTimeOffset> _due = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<(string Cluster, string Reason), long> _ejections = new();
    private readonly ConcurrentDictionary<string, long> _capped = new(StringComparer.Ordinal);

    /// <summary>Ejections so far, by cluster and reason (metric).</summary>
    public IReadOnlyDictionary<(string Cluster, string Reason), long> Ejections => _ejections;

    /// <summary>Outliers left in service because of maxEjectionPercent or the last available destination, by cluster (metric).</summary>
    public IReadOnlyDictionary<string, long> Capped => _capped;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await Task.Yield(); // not on the host's start-up thread
        while (!stoppingToken.IsCancellationRequested)
        {
            var sleep = snapshots.IsInitialized ? Tick() : MaxSleep;
            try
            {
                await Task.Delay(sleep, time, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>Evaluates every cluster whose interval ended; returns how long until the next one is due.</summary>
    internal TimeSpan Tick()
    {
        var now = time.GetUtcNow();
        var next = now + MaxSleep;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, cluster) in snapshots.Current.Clusters)
        {
            if (cluster.Outliers is not { } settings || !proxy.TryGetCluster(name, out var state)) continue;
            seen.Add(name);
            if (!_due.TryGetValue(name, out var due))
            {
                // The first interval starts now: what was counted before (another config, or none) is not judged.
                foreach (var destination in state.Destinations.Values) counters.Of(destination).Window.Take();
                due = now + settings.Interval;
            }
            else if (now >= due)
            {
                try
                {
                    Evaluate(state, settings);
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    Log.EvaluationFailed(logger, name, e);
                }

                due = now + settings.Interval;
            }

            _due[name] = due;
            if (due < next) next = due;
        }

        foreach (var name in _due.Keys.Where(n => !seen.Contains(n)).ToList()) _due.Remove(name);
        var sleep = next - now;
        return sleep > TimeSpan.Zero ? sleep : TimeSpan.FromMilliseconds(1);
    }

    /// <summary>One interval of one cluster: returns ended ejections, judges the counts, ejects within the budget.</summary>
    internal void Evaluate(ClusterState cluster, CompiledOutlierDetection settings)
    {
        var now = time.GetUtcNow();
        var destinations = cluster.Destinations.Values.OrderBy(d => d.DestinationId, StringComparer.Ordinal).ToArray();
        var samples = new OutlierSample[destinations.Length];
        var inService = new bool[destinations.Length];
        var usable = new bool[destinations.Length];
        int ejectedNow = 0, usableCount = 0;
        for (var i = 0; i < destinations.Length; i++)
        {
            var destination = destinations[i];
            var state = counters.Of(destination);
            samples[i] = state.Window.Take();
            var passiveOut = destination.Health.Passive == DestinationHealth.Unhealthy;
            if (state.Ejection is { } ejection && !passiveOut)
            {
                // YARP's reactivation (at the ejection's end) put it back.
                state.Ejection = null;
                Log.Returned(logger, destination.DestinationId, cluster.ClusterId, ejection.Reason, now - ejection.At);
                history.Record(cluster.ClusterId, destination.DestinationId, HealthCheckKind.Passive, healthy: true);
            }

            inService[i] = !passiveOut;
            if (passiveOut) ejectedNow++;
            usable[i] = !passiveOut && destination.Health.Active != DestinationHealth.Unhealthy && !drains.IsDrained(cluster.ClusterId, destination.DestinationId);
            if (usable[i]) usableCount++;
        }

        var verdicts = OutlierMath.FindOutliers(settings, samples);
        var budget = OutlierMath.EjectionBudget(destinations.Length, settings.MaxEjectionPercent, ejectedNow, usableCount);
        var outlier = new bool[destinations.Length];
        var ejectedAny = false;
        foreach (var verdict in verdicts)
        {
            var i = verdict.Index;
            if (!inService[i]) continue;
            outlier[i] = true;
            var destination = destinations[i];
            if (budget <= 0 || (usable[i] && usableCount <= 1))
            {
                _capped.AddOrUpdate(cluster.ClusterId, 1, static (_, n) => n + 1);
                Log.EjectionCapped(logger, destination.DestinationId, cluster.ClusterId, verdict.Reason, verdict.Detail, ejectedNow, destinations.Length, settings.MaxEjectionPercent);
                continue;
            }

            var state = counters.Of(destination);
            var times = ++state.EjectionMultiplier;
            var duration = OutlierMath.EjectionTime(settings, times);
            state.Ejection = new OutlierEjection(verdict.Reason, now, now + duration, times);
            healthUpdater.SetPassive(cluster, destination, DestinationHealth.Unhealthy, duration);
            budget--;
            ejectedNow++;
            if (usable[i]) usableCount--;
            ejectedAny = true;
            _ejections.AddOrUpdate((cluster.ClusterId, verdict.Reason), 1, static (_, n) => n + 1);
            Log.Ejected(logger, destination.DestinationId, cluster.ClusterId, verdict.Reason, verdict.Detail, duration, times);
            history.Record(cluster.ClusterId, destination.DestinationId, HealthCheckKind.Passive, healthy: false);
        }

        // A destination that passed an interval in service works its multiplier down (Envoy does the same).
        for (var i = 0; i < destinations.Length; i++)
        {
            if (!inService[i] || outlier[i]) continue;
            var state = counters.Of(destinations[i]);
            if (state.EjectionMultiplier > 0) state.EjectionMultiplier--;
        }

        // YARP recomputes the available destinations on the thread pool after SetPassive; now too, so the next
        // request already skips the ejected ones.
        if (ejectedAny) destinationsUpdater.UpdateAvailableDestinations(cluster);
    }

    /// <summary>The destination's outlier ejection while it is out; null otherwise (admin API).</summary>
    public OutlierEjection? EjectionOf(DestinationState destination) =>
        destination.Health.Passive == DestinationHealth.Unhealthy ? counters.Of(destination).Ejection : null;

    private static partial class Log
    {
        [LoggerMessage(2104, LogLevel.Warning, "Destination {Destination} of cluster {Cluster} ejected as an outlier ({Reason}): {Detail}; out for {Duration} (ejection {Times} in a row)")]
        public static partial void Ejected(ILogger logger, string destination, string cluster, string reason, string detail, TimeSpan duration, int times);

        [LoggerMessage(2105, LogLevel.Warning, "Destination {Destination} of cluster {Cluster} is an outlier ({Reason}: {Detail}) but stays in service: {Ejected} of {Destinations} destinations are out already (maxEjectionPercent {MaxPercent}) or it is the last available one")]
        public static partial void EjectionCapped(ILogger logger, string destination, string cluster, string reason, string detail, int ejected, int destinations, int maxPercent);

        [LoggerMessage(2106, LogLevel.Information, "Destination {Destination} of cluster {Cluster} is back in service after its outlier ejection ({Reason}, {Duration} out)")]
        public static partial void Returned(ILogger logger, string destination, string cluster, string reason, TimeSpan duration);

        [LoggerMessage(2107, LogLevel.Error, "Outlier evaluation of cluster {Cluster} failed")]
        public static partial void EvaluationFailed(ILogger logger, string cluster, Exception exception);
    }
}

/// <summary>The outlier instruments: ejections by cluster and reason, outliers kept in by the caps, destinations out now.</summary>
internal sealed class OutlierMetrics(OutlierDetector detector, IProxyStateLookup proxy) : IMetricsContributor
{
    public void Register(Meter meter)
    {
        meter.CreateObservableCounter("portcullis.upstream.outlier.ejections", ObserveEjections, "{ejection}",
            "Outlier ejections by cluster and reason (outlier.success-rate, outlier.failure-percentage, outlier.latency).");
        meter.CreateObservableCounter("portcullis.upstream.outlier.capped", ObserveCapped, "{outlier}",
            "Outliers left in service because maxEjectionPercent destinations were out already, or it was the last available one, by cluster.");
        meter.CreateObservableGauge("portcullis.upstream.outlier.ejected", ObserveEjected, "{destination}",
            "Destinations out by an outlier ejection now, by cluster and reason.");
    }

    private IEnumerable<Measurement<long>> ObserveEjections()
    {
        foreach (var ((cluster, reason), count) in detector.Ejections)
        {
            yield return new Measurement<long>(count, new TagList { { "cluster", cluster }, { "reason", reason } });
        }
    }

    private IEnumerable<Measurement<long>> ObserveCapped()
    {
        foreach (var (cluster, count) in detector.Capped)
        {
            yield return new Measurement<long>(count, new KeyValuePair<string, object?>("cluster", cluster));
        }
    }

    private IEnumerable<Measurement<int>> ObserveEjected()
    {
        foreach (var cluster in proxy.GetClusters())
        {
            var byReason = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var destination in cluster.Destinations.Values)
            {
                if (detector.EjectionOf(destination) is { } ejection) byReason[ejection.Reason] = byReason.GetValueOrDefault(ejection.Reason) + 1;
            }

            foreach (var (reason, count) in byReason)
            {
                yield return new Measurement<int>(count, new TagList { { "cluster", cluster.ClusterId }, { "reason", reason } });
            }
        }
    }
}
