using System.Collections.Frozen;
using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Portcullis.Configuration;
using Yarp.ReverseProxy.Configuration;
using Yarp.ReverseProxy.Forwarder;
using Yarp.ReverseProxy.Health;
using Yarp.ReverseProxy.Model;
using Portcullis.Pipeline;

namespace Portcullis.Clusters;

/// <summary>
/// Active health with both thresholds (YARP's built-in policy only has the unhealthy one): N failed
/// probes eject a destination, M good probes in a row bring it back. YARP logs the ejection (Warning)
/// but the way back only at Information under its own category, which the gateway filters out: the
/// recovery is logged here, once per transition.
/// </summary>
internal sealed partial class ThresholdActiveHealthPolicy(IDestinationHealthUpdater healthUpdater, SnapshotStore snapshots, DestinationHealthHistory history, ILogger<ThresholdActiveHealthPolicy> logger) : IActiveHealthCheckPolicy
{
    private readonly ConditionalWeakTable<DestinationState, ProbeCounters> _counters = new();

    public string Name => ClustersCompiler.ActiveHealthPolicy;

    public void ProbingCompleted(ClusterState cluster, IReadOnlyList<DestinationProbingResult> probingResults)
    {
        if (probingResults.Count == 0) return;
        snapshots.Current.Clusters.TryGetValue(cluster.ClusterId, out var settings);
        var unhealthyThreshold = settings?.UnhealthyThreshold ?? 2;
        var healthyThreshold = settings?.HealthyThreshold ?? 1;
        var updates = new NewActiveDestinationHealth[probingResults.Count];
        for (var i = 0; i < probingResults.Count; i++)
        {
            var result = probingResults[i];
            var destination = result.Destination;
            var counters = _counters.GetOrCreateValue(destination);
            var previous = destination.Health.Active;
            DestinationHealth next;
            int successes;
            string? cause = null;
            var repeat = false;
            lock (counters)
            {
                if (result.Response is { IsSuccessStatusCode: true })
                {
                    counters.Failures = 0;
                    counters.LastCause = null;
                    counters.Successes++;
                    next = previous == DestinationHealth.Unhealthy && counters.Successes < healthyThreshold ? DestinationHealth.Unhealthy : DestinationHealth.Healthy;
                }
                else
                {
                    counters.Successes = 0;
                    counters.Failures++;
                    next = counters.Failures >= unhealthyThreshold ? DestinationHealth.Unhealthy : previous;
                    cause = ProbeFailureCause(result);
                    repeat = cause == counters.LastCause;
                    counters.LastCause = cause;
                }

                successes = counters.Successes;
            }

            // One Warning line when a destination starts failing (or fails differently); the same failure
            // probe after probe only at Debug. The ejection itself is YARP's own Warning line.
            if (cause is not null) UpstreamFailureLog.ProbeFailed(logger, destination.DestinationId, cluster.ClusterId, cause, repeat, result.Exception);

            // Probing is serialized per cluster, so the previous state seen here is the one this update replaces.
            if (previous == DestinationHealth.Unhealthy && next == DestinationHealth.Healthy)
            {
                Log.ActiveRecovered(logger, destination.DestinationId, cluster.ClusterId, successes);
            }

            // Unknown → healthy is the first probe, not a change worth counting.
            if (previous != next && !(previous == DestinationHealth.Unknown && next == DestinationHealth.Healthy))
            {
                history.Record(cluster.ClusterId, destination.DestinationId, HealthCheckKind.Active, next == DestinationHealth.Healthy);
            }

            updates[i] = new NewActiveDestinationHealth(destination, next);
        }

        healthUpdater.SetActive(cluster, updates);
    }

    private static string ProbeFailureCause(DestinationProbingResult result) => result switch
    {
        { Response: { } response } => $"answered {(int)response.StatusCode}",
        // YARP cancels a probe at the cluster's probe timeout.
        { Exception: OperationCanceledException { InnerException: not TimeoutException } } => "no answer within the probe timeout",
        _ => UpstreamFailureLog.Describe(result.Exception),
    };

    private sealed class ProbeCounters
    {
        public int Failures;
        public int Successes;
        public string? LastCause;
    }

    private static partial class Log
    {
        [LoggerMessage(2101, LogLevel.Information, "Destination {Destination} of cluster {Cluster} is healthy again after {Probes} good probe(s) in a row; it gets traffic again")]
        public static partial void ActiveRecovered(ILogger logger, string destination, string cluster, int probes);
    }
}

/// <summary>
/// Passive health like Envoy's outlier detection. healthCheck.passive: N consecutive failed requests (transport
/// errors, and the configured 5xx codes) eject a destination for the reactivation period. YARP logs neither the
/// ejection nor the reactivation above Information under its own (filtered) category, so both are logged here:
/// the ejection when it happens, the recovery at the first good answer after it. healthCheck.outlierDetection:
/// every request is counted (Interlocked, in the destination's own counters) for <see cref="OutlierDetector"/>.
/// </summary>
internal sealed partial class ConsecutiveFailuresPassivePolicy(IDestinationHealthUpdater healthUpdater, IClusterDestinationsUpdater destinationsUpdater, SnapshotStore snapshots, DestinationCounterTable table, DestinationHealthHistory history, ILogger<ConsecutiveFailuresPassivePolicy> logger) : IPassiveHealthCheckPolicy
{
    public string Name => ClustersCompiler.PassiveHealthPolicy;

    public void RequestProxied(HttpContext context, ClusterState cluster, DestinationState destination)
    {
        var gateway = context.Features.Get<GatewayFeature>();
        CompiledCluster? settings;
        if (gateway is not null) gateway.Snapshot.Clusters.TryGetValue(cluster.ClusterId, out settings);
        else snapshots.Current.Clusters.TryGetValue(cluster.ClusterId, out settings);
        var error = context.Features.Get<IForwarderErrorFeature>();

        // A client that gave up or sent a broken body says nothing about the destination: neither a failure
        // nor a success.
        if (error is not null && !IsDestinationFailure(error.Error)) return;
        var counter = table.Of(destination);
        if (settings?.Outliers is not null)
        {
            // Any 5xx counts against the destination here; the latency is this attempt's, request sent → headers.
            var answered = error is null && gateway is not null;
            counter.Window.Record(error is not null || context.Response.StatusCode >= 500, answered ? gateway!.Times.AttemptStart : 0, answered ? gateway!.Times.UpstreamEnd : 0);
        }

        if (settings is { ConsecutiveFailures: false }) return;
        var failed = error is not null
            || (settings is not null && settings.FailureStatusCodes.Count > 0 && settings.FailureStatusCodes.Contains(context.Response.StatusCode));
        if (!failed)
        {
            if (Volatile.Read(ref counter.ConsecutiveFailures) != 0) Interlocked.Exchange(ref counter.ConsecutiveFailures, 0);
            // Once per ejection: only the request that clears the flag logs.
            if (Volatile.Read(ref counter.ConsecutiveEjected) != 0 && Interlocked.Exchange(ref counter.ConsecutiveEjected, 0) != 0)
            {
                Log.PassiveRecovered(logger, destination.DestinationId, cluster.ClusterId);
                history.Record(cluster.ClusterId, destination.DestinationId, HealthCheckKind.Passive, healthy: true);
            }

            return;
        }

        var count = Interlocked.Increment(ref counter.ConsecutiveFailures);
        var threshold = settings?.PassiveFailures ?? 3;
        if (count >= threshold)
        {
            Interlocked.Exchange(ref counter.ConsecutiveFailures, 0);
            var reactivation = settings?.PassiveReactivation ?? TimeSpan.FromSeconds(30);
            if (Interlocked.Exchange(ref counter.ConsecutiveEjected, 1) == 0 || destination.Health.Passive != DestinationHealth.Unhealthy)
            {
                Log.PassiveEjected(logger, destination.DestinationId, cluster.ClusterId, count, reactivation);
                history.Record(cluster.ClusterId, destination.DestinationId, HealthCheckKind.Passive, healthy: false);
            }

            healthUpdater.SetPassive(cluster, destination, DestinationHealth.Unhealthy, reactivation);

            // YARP recomputes the available destinations on the thread pool after SetPassive; do it now
            // too so that the very next request already skips the ejected destination.
            destinationsUpdater.UpdateAvailableDestinations(cluster);
        }
    }

    /// <summary>Connect/send/receive failures and timeouts on the destination's side.</summary>
    private static bool IsDestinationFailure(ForwarderError error) => error is ForwarderError.Request
        or ForwarderError.RequestTimedOut
        or ForwarderError.RequestBodyDestination
        or ForwarderError.ResponseBodyDestination
        or ForwarderError.UpgradeRequestDestination
        or ForwarderError.UpgradeResponseDestination;

    private static partial class Log
    {
        [LoggerMessage(2102, LogLevel.Warning, "Destination {Destination} of cluster {Cluster} ejected after {Failures} failed request(s) in a row; it is tried again in {Reactivation}")]
        public static partial void PassiveEjected(ILogger logger, string destination, string cluster, int failures, TimeSpan reactivation);

        [LoggerMessage(2103, LogLevel.Information, "Destination {Destination} of cluster {Cluster} answers again after its passive ejection")]
        public static partial void PassiveRecovered(ILogger logger, string destination, string cluster);
    }
}

/// <summary>
/// Destinations an operator drained through the admin API; survives reloads. Drains of this instance
/// (scope=instance) and fleet-wide drains read from Redis (scope=fleet, <see cref="FleetDrains"/>) are
/// kept apart: a destination is drained while either says so, and each is undrained through its own scope.
/// </summary>
internal sealed class DrainRegistry
{
    private volatile FrozenSet<(string Cluster, string Destination)> _drained = FrozenSet<(string, string)>.Empty;
    private volatile FrozenDictionary<(string Cluster, string Destination), FleetDrain> _fleet = FrozenDictionary<(string, string), FleetDrain>.Empty;
    private readonly Lock _writeLock = new();

    public bool IsDrained(string cluster, string destination) =>
        (_drained.Count > 0 && _drained.Contains((cluster, destination))) || (_fleet.Count > 0 && _fleet.ContainsKey((cluster, destination)));

    /// <summary>Drained on this instance only.</summary>
    public IReadOnlyCollection<(string Cluster, string Destination)> Drained => _drained;

    public bool IsDrainedHere(string cluster, string destination) => _drained.Count > 0 && _drained.Contains((cluster, destination));

    /// <summary>The fleet-wide drain of a destination, as last read from Redis; null when none.</summary>
    public FleetDrain? Fleet(string cluster, string destination) => _fleet.Count > 0 ? _fleet.GetValueOrDefault((cluster, destination)) : null;

    public IReadOnlyDictionary<(string Cluster, string Destination), FleetDrain> FleetDrains => _fleet;

    public bool Set(string cluster, string destination, bool drained)
    {
        lock (_writeLock)
        {
            var set = _drained.ToHashSet();
            var changed = drained ? set.Add((cluster, destination)) : set.Remove((cluster, destination));
            _drained = set.ToFrozenSet();
            return changed;
        }
    }

    /// <summary>Replaces the fleet-wide drains (all of them, as read from Redis); returns the clusters whose drains changed.</summary>
    public IReadOnlyCollection<string> SetFleet(IReadOnlyDictionary<(string Cluster, string Destination), FleetDrain> drains)
    {
        lock (_writeLock)
        {
            var before = _fleet;
            var changed = new HashSet<string>(StringComparer.Ordinal);
            foreach (var key in before.Keys) if (!drains.ContainsKey(key)) changed.Add(key.Cluster);
            foreach (var key in drains.Keys) if (!before.ContainsKey(key)) changed.Add(key.Cluster);
            if (changed.Count == 0 && drains.Count == before.Count) return [];
            _fleet = drains.ToFrozenDictionary();
            return changed;
        }
    }

    /// <summary>Applies one fleet-wide drain or undrain this instance itself wrote to Redis, without waiting for the next read.</summary>
    public void SetFleet(string cluster, string destination, FleetDrain? drain)
    {
        lock (_writeLock)
        {
            var next = _fleet.ToDictionary();
            if (drain is null) next.Remove((cluster, destination));
            else next[(cluster, destination)] = drain;
            _fleet = next.ToFrozenDictionary();
        }
    }
}

/// <summary>Who drained a destination fleet-wide, when, and through which instance.</summary>
internal sealed record FleetDrain(string By, DateTimeOffset At, string Instance);

/// <summary>Healthy-or-unknown destinations, minus drained ones (YARP's default, plus draining).</summary>
internal sealed class HealthyNotDrainedPolicy(DrainRegistry drains) : IAvailableDestinationsPolicy
{
    public string Name => ClustersCompiler.AvailableDestinationsPolicy;

    public IReadOnlyList<DestinationState> GetAvailalableDestinations(ClusterConfig config, IReadOnlyList<DestinationState> allDestinations)
    {
        var activeEnabled = config.HealthCheck?.Active?.Enabled ?? false;
        var passiveEnabled = config.HealthCheck?.Passive?.Enabled ?? false;
        List<DestinationState>? available = null;
        for (var i = 0; i < allDestinations.Count; i++)
        {
            var destination = allDestinations[i];
            var usable = !drains.IsDrained(config.ClusterId, destination.DestinationId)
                && (!activeEnabled || destination.Health.Active != DestinationHealth.Unhealthy)
                && (!passiveEnabled || destination.Health.Passive != DestinationHealth.Unhealthy);
            if (usable)
            {
                (available ??= new List<DestinationState>(allDestinations.Count)).Add(destination);
            }
        }

        return available is null ? [] : available.Count == allDestinations.Count ? allDestinations : available;
    }
}
