using Portcullis.Clusters;
using Portcullis.Configuration;

namespace Portcullis.Advice;

/// <summary>
/// destination.flapping (live: the health transitions the health policies recorded), and under real traffic (the
/// store's last day) cluster.single-destination and cluster.no-health-check.
/// </summary>
internal sealed class ServiceHealthDetector : IAdviceDetector
{
    private static readonly TimeSpan TrafficWindow = TimeSpan.FromDays(1);

    public string Name => "services.health";

    public IReadOnlyList<Finding> Detect(AdviceContext context)
    {
        var findings = new List<Finding>();
        if (context.Runtime.IsLive) Flapping(context, findings);
        if (context.Analytics is not null)
        {
            var from = context.Now - TrafficWindow < context.WindowStart ? context.WindowStart : context.Now - TrafficWindow;
            var traffic = ServiceAdvice.ClusterTraffic(context, from);
            Topology(context, traffic, from, findings);
        }

        return findings;
    }

    private static void Flapping(AdviceContext context, List<Finding> findings)
    {
        var options = context.Settings.Services;
        var from = context.Now - options.FlapWindow;
        var recorded = context.Runtime.HealthTransitions(from);
        var shared = SharedTransitions(context, recorded);
        var byDestination = recorded.Where(t => !shared.Contains(t)).GroupBy(t => (t.Cluster, t.Destination));
        foreach (var group in byDestination)
        {
            var transitions = group.OrderBy(t => t.At).ToList();

            // A passive ejection ends by reactivation (YARP's timer), which is not recorded; two ejections in a row mean one happened.
            var count = 0;
            bool? previous = null;
            foreach (var t in transitions)
            {
                if (previous == false && !t.Healthy) count++;
                count++;
                previous = t.Healthy;
            }

            if (count < options.FlapTransitions) continue;
            var (cluster, destination) = group.Key;
            if (!context.Snapshot.Config.Clusters.TryGetValue(cluster, out var clusterOptions)) continue;
            var downs = transitions.Count(t => !t.Healthy);
            var active = transitions.Any(t => t.Check == HealthCheckKind.Active);
            ConfigPatch? patch = null;
            string remedy;
            if (active && clusterOptions.HealthCheck.Active is { } activeOptions)
            {
                var threshold = Math.Min(10, Math.Max(3, activeOptions.HealthyThreshold * 2));
                patch = new ConfigPatch(ServiceAdvice.ClusterPatch(cluster, $"healthCheck:\n  active:\n    healthyThreshold: {threshold}"),
                    $"sets clusters.{cluster}.healthCheck.active.healthyThreshold to {threshold} (from {activeOptions.HealthyThreshold})");
                remedy = $"The patch makes a destination pass {threshold} probes in a row (instead of {activeOptions.HealthyThreshold}) before it gets traffic again, so a destination that only answers now and then stays out.";
            }
            else if (clusterOptions.HealthCheck.Passive is { } passiveOptions)
            {
                var reactivation = ServiceAdvice.ConfigDuration(passiveOptions.Reactivation * 4 > TimeSpan.FromMinutes(2) ? passiveOptions.Reactivation * 4 : TimeSpan.FromMinutes(2));
                patch = new ConfigPatch(ServiceAdvice.ClusterPatch(cluster, $"healthCheck:\n  passive:\n    reactivation: {reactivation}"),
                    $"sets clusters.{cluster}.healthCheck.passive.reactivation to {reactivation} (from {ServiceAdvice.ConfigDuration(passiveOptions.Reactivation)})");
                remedy = $"The patch keeps an ejected destination out for {reactivation} instead of {ServiceAdvice.ConfigDuration(passiveOptions.Reactivation)}, so fewer requests find it failing again.";
            }
            else
            {
                remedy = "Look at the destination itself.";
            }

            var first = transitions[0].At.UtcDateTime;
            var evidence = new Evidence(from, context.Now,
            [
                new("health transitions", count, "transitions", options.FlapTransitions),
                new("times marked unhealthy", downs, "times"),
                new("window", options.FlapWindow.TotalMinutes, "min"),
            ])
            {
                DashboardLink = DashboardLinks.Samples(from, context.Now, ("cluster", cluster), ("minStatus", "500")),
                Basis = $"{transitions.Count} recorded transitions ({(active ? "active probes" : "passive ejections")}) since {first:HH:mm:ss} UTC",
            };
            var explanation = $"Destination {destination} of cluster {cluster} changed between healthy and unhealthy {count} times in the last {ServiceAdvice.Number(options.FlapWindow.TotalMinutes)} minutes "
                + $"(marked unhealthy {downs} times). Each time it comes back, requests go to it until it fails again: clients see errors in waves. {remedy}";
            findings.Add(ServiceAdvice.Make(context, FindingKinds.DestinationFlapping, FindingSeverity.Warning, new FindingSubject(SubjectKind.Destination, cluster + "/" + destination),
                $"Destination {destination} of cluster {cluster} is flapping: {count} health changes in {ServiceAdvice.Number(options.FlapWindow.TotalMinutes)} min", explanation, evidence,
                count >= options.FlapTransitions * 2 ? FindingConfidence.High : FindingConfidence.Medium, patch) with { FirstSeen = first });
        }
    }

    /// <summary>
    /// Changes most of a cluster's destinations made together — the same way (all down, or all back up) within a
    /// couple of probe intervals, on at least <see cref="SharedShare"/> of its destinations and at least two. When
    /// every probe of a cluster times out at once, the cause is the prober's side (a starved host, the gateway's own
    /// network) or something all destinations share, not each destination: the clean evaluation run's stall at load
    /// 65 flipped all three destinations of a cluster in the same seconds, which read as three flapping destinations.
    /// Those changes do not count toward destination.flapping; a destination that also flaps on its own still does.
    /// </summary>
    internal static HashSet<HealthTransition> SharedTransitions(AdviceContext context, IReadOnlyList<HealthTransition> transitions)
    {
        var shared = new HashSet<HealthTransition>();
        foreach (var cluster in transitions.GroupBy(t => t.Cluster))
        {
            if (!context.Snapshot.Config.Clusters.TryGetValue(cluster.Key, out var options) || options.Destinations.Count < 2) continue;
            var needed = Math.Max(2, (int)Math.Ceiling(SharedShare * options.Destinations.Count));
            var window = options.HealthCheck.Active is { } active && active.Interval * 2 > MinSharedWindow ? active.Interval * 2 : MinSharedWindow;
            var ordered = cluster.OrderBy(t => t.At).ToList();
            foreach (var t in ordered)
            {
                var together = ordered.Where(o => o.Healthy == t.Healthy && (o.At - t.At).Duration() <= window).Select(o => o.Destination).Distinct(StringComparer.Ordinal).Count();
                if (together >= needed) shared.Add(t);
            }
        }

        return shared;
    }

    /// <summary>The share of a cluster's destinations that changing together makes a change shared.</summary>
    internal const double SharedShare = 0.75;

    private static readonly TimeSpan MinSharedWindow = TimeSpan.FromSeconds(5);

    private static void Topology(AdviceContext context, Dictionary<string, long> traffic, DateTime from, List<Finding> findings)
    {
        var options = context.Settings.Services;
        foreach (var (cluster, clusterOptions) in context.Snapshot.Config.Clusters)
        {
            var requests = traffic.GetValueOrDefault(cluster);
            if (requests < options.MinTrafficRequests) continue;
            var hours = Math.Round((context.Now - from).TotalHours, 1);
            var basis = $"{requests} requests to the cluster over the last {ServiceAdvice.Number(hours)} h";
            var link = DashboardLinks.Samples(from, context.Now, ("cluster", cluster));
            var destinations = clusterOptions.Destinations.Count;
            if (destinations == 1)
            {
                var evidence = new Evidence(from, context.Now, [new("destinations", 1, "destinations"), new("requests", requests, "requests")]) { DashboardLink = link, Basis = basis };
                findings.Add(ServiceAdvice.Make(context, FindingKinds.SingleDestination, FindingSeverity.Info, new FindingSubject(SubjectKind.Cluster, cluster),
                    $"Cluster {cluster} has a single destination and real traffic",
                    $"Cluster {cluster} served {ServiceAdvice.Number(requests)} requests over the last {ServiceAdvice.Number(hours)} hours from one destination ({clusterOptions.Destinations[0].Address}). "
                    + "When it restarts or fails, every one of those requests fails: there is nothing to retry on or fail over to. Add a second destination (no patch: only you know its address).",
                    evidence));
            }

            var health = clusterOptions.HealthCheck;
            if (destinations >= 2 && health.Active is null && health.Passive is null)
            {
                var evidence = new Evidence(from, context.Now, [new("destinations", destinations, "destinations"), new("requests", requests, "requests")]) { DashboardLink = link, Basis = basis };
                var patch = new ConfigPatch(ServiceAdvice.ClusterPatch(cluster, "healthCheck:\n  passive:\n    failures: 3\n    reactivation: 30s"),
                    $"adds a passive health check to cluster {cluster} (3 failed requests in a row eject a destination for 30s)");
                findings.Add(ServiceAdvice.Make(context, FindingKinds.NoHealthCheck, FindingSeverity.Warning, new FindingSubject(SubjectKind.Cluster, cluster),
                    $"Cluster {cluster} has {destinations} destinations and no health check",
                    $"Cluster {cluster} served {ServiceAdvice.Number(requests)} requests over the last {ServiceAdvice.Number(hours)} hours across {destinations} destinations, with neither an active nor a passive health check. "
                    + "A destination that goes down keeps getting its share of the requests, which fail. The patch adds a passive check (no probe endpoint needed): "
                    + "3 failed requests in a row take a destination out for 30 s. An active check (healthCheck.active with the upstream's health path) also catches it before a request does.",
                    evidence, patch: patch));
            }
        }
    }
}
