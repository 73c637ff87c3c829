using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Portcullis.Clusters;
using Portcullis.Configuration;
using Yarp.ReverseProxy;
using Yarp.ReverseProxy.Health;
using Yarp.ReverseProxy.Model;

namespace Portcullis.Tests.Clusters;

/// <summary>
/// healthCheck.outlierDetection: the rules on synthetic counts (stdev, failure percentage, latency), the
/// ejection budget, the growing ejection time and the way back, on a fake clock; validation positions.
/// </summary>
public sealed class OutlierDetectionTests() : ConfigBuildTestBase("portcullis-outlier-")
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 4, 12, 0, 0, TimeSpan.Zero));
    private readonly DestinationCounterTable _counters = new();

    private static CompiledOutlierDetection Settings(
        CompiledSuccessRateRule? successRate = null,
        CompiledFailurePercentageRule? failurePercentage = null,
        CompiledLatencyRule? latency = null,
        int maxEjectionPercent = 50) =>
        new(TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(100), maxEjectionPercent, successRate, failurePercentage, latency);

    private static readonly CompiledSuccessRateRule SuccessRate = new(MinRequests: 100, MinDestinations: 3, StdevFactor: 1.9);
    private static readonly CompiledFailurePercentageRule FailurePercent = new(Threshold: 50, MinRequests: 50, MinDestinations: 3);

    private static OutlierSample[] Samples(params (int Requests, int Failures)[] counts) =>
        [.. counts.Select(c => new OutlierSample(c.Requests, c.Failures, 0, null))];

    [Fact]
    public void Success_rate_ejects_the_destination_more_than_stdevFactor_deviations_below_the_mean()
    {
        // Mean 91.7 %, stdev 18.6 %: threshold 56.3 %; 50 % is below it, 90 % is not.
        var verdicts = OutlierMath.FindOutliers(Settings(SuccessRate), Samples((200, 0), (200, 0), (200, 0), (200, 0), (200, 0), (200, 100)));
        var verdict = Assert.Single(verdicts);
        Assert.Equal((5, OutlierReasons.SuccessRate), (verdict.Index, verdict.Reason));

        // Spread evenly (100, 95, 90, 95, 100, 90 %): mean 95 %, stdev 4.1 %, threshold 87.2 %: nobody stands out.
        Assert.Empty(OutlierMath.FindOutliers(Settings(SuccessRate), Samples((200, 0), (200, 10), (200, 20), (200, 10), (200, 0), (200, 20))));
    }

    [Fact]
    public void Success_rate_cannot_single_out_one_of_four_at_factor_1_9_but_can_below_sqrt_3()
    {
        // One outlier among N lies at most √(N−1) deviations from the mean: √3 = 1.73 for four destinations.
        var samples = Samples((200, 0), (200, 0), (200, 0), (200, 200));
        Assert.Empty(OutlierMath.FindOutliers(Settings(SuccessRate), samples));
        var verdict = Assert.Single(OutlierMath.FindOutliers(Settings(SuccessRate with { StdevFactor = 1.5 }), samples));
        Assert.Equal(3, verdict.Index);
    }

    [Fact]
    public void Success_rate_needs_minDestinations_with_minRequests()
    {
        // Only two destinations reached 100 requests: not enough to judge anyone.
        Assert.Empty(OutlierMath.FindOutliers(Settings(SuccessRate with { StdevFactor = 0.5 }), Samples((200, 0), (99, 99), (200, 150), (50, 50))));
    }

    [Fact]
    public void Failure_percentage_ejects_at_or_above_the_threshold_with_enough_requests()
    {
        var verdicts = OutlierMath.FindOutliers(Settings(failurePercentage: FailurePercent), Samples((100, 0), (100, 50), (100, 49), (49, 49)));
        var verdict = Assert.Single(verdicts);
        Assert.Equal((1, OutlierReasons.FailurePercentage), (verdict.Index, verdict.Reason));
    }

    [Fact]
    public void Failure_percentage_comes_first_and_verdicts_are_worst_first()
    {
        var verdicts = OutlierMath.FindOutliers(Settings(SuccessRate, FailurePercent), Samples((100, 60), (100, 90), (100, 70), (100, 0), (100, 0)));
        Assert.Equal([1, 2, 0], verdicts.Select(v => v.Index));
        Assert.All(verdicts, v => Assert.Equal(OutlierReasons.FailurePercentage, v.Reason));
    }

    [Fact]
    public void Latency_ejects_a_p90_far_above_the_median_but_not_below_minLatency()
    {
        var rule = new CompiledLatencyRule(Factor: 3, MinRequests: 100, MinDestinations: 3, MinLatency: TimeSpan.FromMilliseconds(100));
        OutlierSample Sample(double ms) => new(200, 0, 200, TimeSpan.FromMilliseconds(ms));
        var verdict = Assert.Single(OutlierMath.FindOutliers(Settings(latency: rule), [Sample(20), Sample(25), Sample(500), Sample(22)]));
        Assert.Equal((2, OutlierReasons.Latency), (verdict.Index, verdict.Reason));

        // 80 ms is 4× the median but under minLatency: noise, not an outlier.
        Assert.Empty(OutlierMath.FindOutliers(Settings(latency: rule), [Sample(20), Sample(25), Sample(80), Sample(22)]));
    }

    [Fact]
    public void The_budget_keeps_maxEjectionPercent_and_never_the_last_destination()
    {
        Assert.Equal(2, OutlierMath.EjectionBudget(destinations: 4, maxEjectionPercent: 50, ejectedNow: 0, usable: 4));
        Assert.Equal(1, OutlierMath.EjectionBudget(4, 50, ejectedNow: 1, usable: 3));
        Assert.Equal(0, OutlierMath.EjectionBudget(4, 50, ejectedNow: 2, usable: 2));
        Assert.Equal(1, OutlierMath.EjectionBudget(4, 10, 0, 4)); // at least one, as Envoy does
        Assert.Equal(1, OutlierMath.EjectionBudget(2, 100, 0, 2)); // never the last
        Assert.Equal(0, OutlierMath.EjectionBudget(1, 100, 0, 1));
    }

    [Fact]
    public void Three_failing_of_four_eject_only_two_the_worst_first_and_no_more_on_the_next_interval()
    {
        var (detector, cluster, _) = Detector(4);
        var settings = Settings(failurePercentage: FailurePercent);
        Count(cluster, ("d1", 100, 60), ("d2", 100, 80), ("d3", 100, 70), ("d4", 100, 0));
        detector.Evaluate(cluster, settings);
        Assert.Equal(["d2", "d3"], Ejected(cluster));
        Assert.Equal(OutlierReasons.FailurePercentage, detector.EjectionOf(cluster.Destinations["d2"])!.Reason);

        _time.Advance(settings.Interval);
        Count(cluster, ("d1", 100, 60), ("d4", 100, 0));
        detector.Evaluate(cluster, settings);
        Assert.Equal(["d2", "d3"], Ejected(cluster));
        Assert.Equal(1, detector.Capped["c"]);
    }

    [Fact]
    public void Ejection_time_grows_with_ejections_in_a_row_up_to_the_maximum_and_the_destination_comes_back()
    {
        var (detector, cluster, updater) = Detector(4);
        var settings = Settings(failurePercentage: FailurePercent);
        var expected = new[] { 30, 60, 90, 100, 100 };
        foreach (var seconds in expected)
        {
            Count(cluster, ("d1", 100, 100), ("d2", 100, 0), ("d3", 100, 0), ("d4", 100, 0));
            detector.Evaluate(cluster, settings);
            var ejection = detector.EjectionOf(cluster.Destinations["d1"]);
            Assert.NotNull(ejection);
            Assert.Equal(TimeSpan.FromSeconds(seconds), ejection.Until - ejection.At);
            Assert.Equal(TimeSpan.FromSeconds(seconds), updater.LastReactivation);

            // Still out a moment before the end; back (YARP's reactivation) at it.
            _time.Advance(TimeSpan.FromSeconds(seconds) - TimeSpan.FromMilliseconds(1));
            Assert.Equal(DestinationHealth.Unhealthy, cluster.Destinations["d1"].Health.Passive);
            _time.Advance(TimeSpan.FromMilliseconds(1));
            Assert.Equal(DestinationHealth.Unknown, cluster.Destinations["d1"].Health.Passive);
            Assert.Null(detector.EjectionOf(cluster.Destinations["d1"]));
        }

        Assert.Equal(5, detector.Ejections[("c", OutlierReasons.FailurePercentage)]);
    }

    [Fact]
    public void Good_intervals_work_the_multiplier_down()
    {
        var (detector, cluster, _) = Detector(4);
        var settings = Settings(failurePercentage: FailurePercent);
        for (var i = 0; i < 2; i++)
        {
            Count(cluster, ("d1", 100, 100), ("d2", 100, 0), ("d3", 100, 0), ("d4", 100, 0));
            detector.Evaluate(cluster, settings);
            _time.Advance(TimeSpan.FromMinutes(2));
        }

        // Ejected twice in a row (multiplier 2); one good interval takes one off: the next ejection is 2 × 30 s.
        Count(cluster, ("d1", 100, 0), ("d2", 100, 0), ("d3", 100, 0), ("d4", 100, 0));
        detector.Evaluate(cluster, settings); // d1 back in service: the return is noted, the interval passes
        Count(cluster, ("d1", 100, 100), ("d2", 100, 0), ("d3", 100, 0), ("d4", 100, 0));
        detector.Evaluate(cluster, settings);
        var ejection = detector.EjectionOf(cluster.Destinations["d1"])!;
        Assert.Equal((TimeSpan.FromSeconds(60), 2), (ejection.Until - ejection.At, ejection.Times));
    }

    [Fact]
    public void A_destination_out_by_consecutive_failures_counts_toward_the_share()
    {
        var (detector, cluster, _) = Detector(4);
        cluster.Destinations["d4"].Health.Passive = DestinationHealth.Unhealthy;
        Count(cluster, ("d1", 100, 90), ("d2", 100, 80), ("d3", 100, 0));
        detector.Evaluate(cluster, Settings(failurePercentage: FailurePercent));
        Assert.Equal(["d1", "d4"], Ejected(cluster));
    }

    [Fact]
    public void Window_counts_requests_failures_and_latency_and_resets_when_taken()
    {
        var window = new OutlierWindow();
        for (var i = 0; i < 100; i++)
        {
            window.Record(failed: i % 4 == 0, 0, 0);
            window.RecordLatency(TimeSpan.FromMilliseconds(i < 90 ? 10 : 400));
        }

        var sample = window.Take();
        Assert.Equal((100, 25, 100), (sample.Requests, sample.Failures, sample.Answered));
        Assert.InRange(sample.P90!.Value.TotalMilliseconds, 8.5, 12); // rank 89 of 100 is the last 10 ms one
        Assert.Equal(new OutlierSample(0, 0, 0, null), window.Take());
    }

    [Fact]
    public void Latency_buckets_are_within_a_fifth_of_the_value()
    {
        foreach (var micros in new long[] { 5, 17, 999, 1_000, 12_345, 1_000_000, 37_000_000 })
        {
            var value = LatencyHistogram.ValueOf(LatencyHistogram.BucketOf(micros));
            Assert.InRange(value / micros, 0.8, 1.2);
        }
    }

    [Fact]
    public void Validation_reports_each_bad_key_at_its_position()
    {
        var result = Build("""
            listeners: [{ name: public, address: 127.0.0.1:8080 }]
            routes:
              - { name: a, match: { pathPrefix: /a }, cluster: a }
            clusters:
              a:
                destinations: [http://127.0.0.1:1, http://127.0.0.1:2, http://127.0.0.1:3]
                healthCheck:
                  outlierDetection:
                    interval: 0s
                    maxEjectionPercent: 0
                    successRate: { minRequests: 0, minDestinations: 1, stdevFactor: -1 }
                    failurePercentage: { threshold: 101 }
                    latency: { factor: 1 }
              b:
                destinations: [http://127.0.0.1:1]
                healthCheck:
                  outlierDetection: { baseEjectionTime: 1m, maxEjectionTime: 30s }
            """);
        Assert.False(result.Succeeded);
        AssertAt(ErrorContaining(result, "interval must be greater than zero"), 9, 19);
        AssertAt(ErrorContaining(result, "maxEjectionPercent must be between 1 and 100"), 10, 29);
        AssertAt(ErrorContaining(result, "minRequests must be at least 1"), 11, 37);
        AssertAt(ErrorContaining(result, "minDestinations must be at least 2"), 11, 57);
        AssertAt(ErrorContaining(result, "stdevFactor must be greater than zero"), 11, 73);
        AssertAt(ErrorContaining(result, "threshold must be a percentage"), 12, 41);
        AssertAt(ErrorContaining(result, "factor must be greater than 1"), 13, 28);
        AssertAt(ErrorContaining(result, "maxEjectionTime must be at least baseEjectionTime"), 17, 66);
        AssertAt(ErrorContaining(result, "outlierDetection has no rule"), 17, 25);
    }

    [Fact]
    public void A_success_rate_rule_that_cannot_fire_for_the_cluster_size_is_a_warning_and_outliers_turn_on_passive_health()
    {
        var result = Build("""
            listeners: [{ name: public, address: 127.0.0.1:8080 }]
            routes:
              - { name: a, match: { pathPrefix: /a }, cluster: a }
            clusters:
              a:
                destinations: [http://127.0.0.1:1, http://127.0.0.1:2, http://127.0.0.1:3, http://127.0.0.1:4]
                healthCheck:
                  outlierDetection:
                    successRate: { stdevFactor: 1.9 }
            """);
        Assert.True(result.Succeeded, Dump(result));
        var warning = Assert.Single(result.Diagnostics, d => d.Message.Contains("can never eject", StringComparison.Ordinal));
        AssertAt(warning, 9, 37);
        var cluster = result.Snapshot!.Clusters["a"];
        Assert.False(cluster.ConsecutiveFailures);
        Assert.Equal(5, cluster.Outliers!.SuccessRate!.MinDestinations);
        var passive = result.Snapshot.ProxyClusters.Single(c => c.ClusterId == "a").HealthCheck!.Passive!;
        Assert.True(passive.Enabled);
        Assert.Equal(ClustersCompiler.PassiveHealthPolicy, passive.Policy);
    }

    private (OutlierDetector Detector, ClusterState Cluster, ReactivatingUpdater Updater) Detector(int destinations)
    {
        var cluster = new ClusterState("c");
        for (var i = 1; i <= destinations; i++) cluster.Destinations[$"d{i}"] = new DestinationState($"d{i}");
        var updater = new ReactivatingUpdater(_time);
        var detector = new OutlierDetector(new SnapshotStore(), new NoProxyState(), _counters, updater, new NoDestinationsUpdate(), new DrainRegistry(),
            new DestinationHealthHistory(_time), _time, NullLogger<OutlierDetector>.Instance);
        return (detector, cluster, updater);
    }

    private void Count(ClusterState cluster, params (string Destination, int Requests, int Failures)[] counts)
    {
        foreach (var (destination, requests, failures) in counts)
        {
            var window = _counters.Of(cluster.Destinations[destination]).Window;
            for (var i = 0; i < requests; i++) window.Record(i < failures, 0, 0);
        }
    }

    private static List<string> Ejected(ClusterState cluster) =>
        [.. cluster.Destinations.Values.Where(d => d.Health.Passive == DestinationHealth.Unhealthy).Select(d => d.DestinationId).Order(StringComparer.Ordinal)];

    /// <summary>YARP's passive state change with its reactivation timer, on the fake clock.</summary>
    private sealed class ReactivatingUpdater(TimeProvider time) : IDestinationHealthUpdater
    {
        private readonly List<ITimer> _timers = [];

        public TimeSpan LastReactivation { get; private set; }

        public void SetActive(ClusterState cluster, IEnumerable<NewActiveDestinationHealth> newHealthPairs) => throw new NotSupportedException();

        public void SetPassive(ClusterState cluster, DestinationState destination, DestinationHealth newHealth, TimeSpan reactivationPeriod)
        {
            if (destination.Health.Passive == newHealth) return;
            destination.Health.Passive = newHealth;
            LastReactivation = reactivationPeriod;
            _timers.Add(time.CreateTimer(_ => destination.Health.Passive = DestinationHealth.Unknown, null, reactivationPeriod, Timeout.InfiniteTimeSpan));
        }
    }

    private sealed class NoDestinationsUpdate : IClusterDestinationsUpdater
    {
        public void UpdateAllDestinations(ClusterState cluster)
        {
        }

        public void UpdateAvailableDestinations(ClusterState cluster)
        {
        }
    }

    private sealed class NoProxyState : IProxyStateLookup
    {
        public bool TryGetRoute(string id, out RouteModel route) => throw new NotSupportedException();

        public IEnumerable<RouteModel> GetRoutes() => [];

        public bool TryGetCluster(string id, out ClusterState cluster) => throw new NotSupportedException();

        public IEnumerable<ClusterState> GetClusters() => [];
    }
}
