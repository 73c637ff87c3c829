using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Portcullis.Advice;
using Portcullis.Clusters;
using Portcullis.Testing;

namespace Portcullis.Tests.Advice;

/// <summary>destination.flapping (the real health history), cluster.single-destination and cluster.no-health-check under traffic.</summary>
public sealed class ServiceHealthDetectorTests : ServiceAdviceTestBase
{
    private const string Config = """
        listeners:
          - { name: public, address: "127.0.0.1:8080" }
        routes:
          - { name: orders, match: { pathPrefix: /orders }, cluster: orders }
          - { name: users, match: { pathPrefix: /users }, cluster: users }
          - { name: quiet, match: { pathPrefix: /quiet }, cluster: quiet }
        clusters:
          orders:
            destinations: ["http://127.0.0.1:1", "http://127.0.0.1:2"]
            healthCheck: { active: { interval: 5s, path: /healthz } }
          users:
            destinations: ["http://127.0.0.1:3", "http://127.0.0.1:4"]
          quiet:
            destinations: ["http://127.0.0.1:5"]
        """;

    private readonly FakeTimeProvider _time = new(Now.AddMinutes(-9));

    private (DestinationHealthHistory History, IAdviceRuntime Runtime) LiveRuntime()
    {
        var services = Services(s => s.AddSingleton<TimeProvider>(_time).AddSingleton<DestinationHealthHistory>());
        return (services.GetRequiredService<DestinationHealthHistory>(), Live(services));
    }

    [Fact]
    public void DestinationGoingUpAndDownIsFlappingAndThePatchRaisesTheHealthyThreshold()
    {
        var snapshot = Snapshot(Config);
        var (history, runtime) = LiveRuntime();
        for (var i = 0; i < 3; i++)
        {
            history.Record("orders", "d2", HealthCheckKind.Active, healthy: false);
            _time.Advance(TimeSpan.FromMinutes(1));
            history.Record("orders", "d2", HealthCheckKind.Active, healthy: true);
            _time.Advance(TimeSpan.FromMinutes(1));
        }

        // A destination that went down once and came back is not flapping.
        history.Record("orders", "d1", HealthCheckKind.Active, healthy: false);
        history.Record("orders", "d1", HealthCheckKind.Active, healthy: true);

        var finding = Assert.Single(new ServiceHealthDetector().Detect(Context(snapshot, store: false, runtime: runtime)));
        Assert.Equal(FindingKinds.DestinationFlapping, finding.Kind);
        Assert.Equal(new FindingSubject(SubjectKind.Destination, "orders/d2"), finding.Subject);
        Assert.Equal(6, finding.Evidence.Values.Single(v => v.Name == "health transitions").Value);
        Assert.Equal(Now.AddMinutes(-9), finding.FirstSeen);
        var patched = Apply(finding.Patch);
        Assert.Equal(3, patched.Config.Clusters["orders"].HealthCheck.Active!.HealthyThreshold);
    }

    [Fact]
    public void DestinationsOfAClusterChangingTogetherAreNotFlappingButOneFlappingOnItsOwnStillIs()
    {
        // A host stall: every probe of the cluster times out in the same seconds, three times. The clean evaluation
        // run read that as each destination flapping.
        var snapshot = Snapshot(Config);
        var (history, runtime) = LiveRuntime();
        for (var i = 0; i < 3; i++)
        {
            history.Record("orders", "d1", HealthCheckKind.Active, healthy: false);
            _time.Advance(TimeSpan.FromSeconds(3)); // within two probe intervals (10 s) of the other
            history.Record("orders", "d2", HealthCheckKind.Active, healthy: false);
            _time.Advance(TimeSpan.FromSeconds(40));
            history.Record("orders", "d2", HealthCheckKind.Active, healthy: true);
            history.Record("orders", "d1", HealthCheckKind.Active, healthy: true);
            _time.Advance(TimeSpan.FromSeconds(40));
        }

        Assert.Empty(new ServiceHealthDetector().Detect(Context(snapshot, store: false, runtime: runtime)));

        // d2 then flaps alone: its own changes count (not the shared ones).
        for (var i = 0; i < 2; i++)
        {
            history.Record("orders", "d2", HealthCheckKind.Active, healthy: false);
            _time.Advance(TimeSpan.FromSeconds(30));
            history.Record("orders", "d2", HealthCheckKind.Active, healthy: true);
            _time.Advance(TimeSpan.FromSeconds(30));
        }

        var finding = Assert.Single(new ServiceHealthDetector().Detect(Context(snapshot, store: false, runtime: runtime, now: _time.GetUtcNow().UtcDateTime)));
        Assert.Equal(new FindingSubject(SubjectKind.Destination, "orders/d2"), finding.Subject);
        Assert.Equal(4, finding.Evidence.Values.Single(v => v.Name == "health transitions").Value);
    }

    [Fact]
    public void TransitionsOutsideTheWindowDoNotCount()
    {
        var snapshot = Snapshot(Config);
        var (history, runtime) = LiveRuntime();
        for (var i = 0; i < 4; i++) history.Record("orders", "d2", HealthCheckKind.Active, healthy: i % 2 == 1);
        Assert.Single(new ServiceHealthDetector().Detect(Context(snapshot, store: false, runtime: runtime)));

        // 21 minutes later they are outside the 10-minute window.
        Assert.Empty(new ServiceHealthDetector().Detect(Context(snapshot, store: false, runtime: runtime, now: Now.AddMinutes(12))));
    }

    [Fact]
    public void RepeatedPassiveEjectionsCountTheirReactivations()
    {
        // Two ejections in a row: the reactivation between them (YARP's timer) is implied. 3 ejections = 5 transitions.
        var snapshot = Snapshot(Config.Replace("users:\n    destinations: [\"http://127.0.0.1:3\", \"http://127.0.0.1:4\"]",
            "users:\n    destinations: [\"http://127.0.0.1:3\", \"http://127.0.0.1:4\"]\n    healthCheck: { passive: { failures: 3, reactivation: 10s } }", StringComparison.Ordinal));
        var (history, runtime) = LiveRuntime();
        for (var i = 0; i < 3; i++) history.Record("users", "d1", HealthCheckKind.Passive, healthy: false);
        var finding = Assert.Single(new ServiceHealthDetector().Detect(Context(snapshot, store: false, runtime: runtime)));
        Assert.Equal(5, finding.Evidence.Values.Single(v => v.Name == "health transitions").Value);
        Assert.Equal(TimeSpan.FromMinutes(2), Apply(finding.Patch).Config.Clusters["users"].HealthCheck.Passive!.Reactivation);
    }

    [Fact]
    public void OfflineThereIsNoFlappingCheck()
    {
        Assert.Empty(new ServiceHealthDetector().Detect(Context(Snapshot(Config), store: false)));
    }

    [Fact]
    public void SingleDestinationAndNoHealthCheckSpeakOnlyUnderTraffic()
    {
        var snapshot = Snapshot(Config);
        var data = new AnalyticsDataGenerator();
        new ServiceTrafficGenerator(data, "users", "users").Add(Now.AddHours(-2), Now.AddHours(-2).AddMinutes(5), 1);
        new ServiceTrafficGenerator(data, "quiet", "quiet").Add(Now.AddHours(-2), Now.AddHours(-2).AddMinutes(5), 1);
        new ServiceTrafficGenerator(data, "orders", "orders").Add(Now.AddHours(-2), Now.AddHours(-2).AddMinutes(5), 1);
        Write(data);
        var findings = new ServiceHealthDetector().Detect(Context(snapshot));
        Assert.Equal(2, findings.Count);
        var single = Assert.Single(findings, f => f.Kind == FindingKinds.SingleDestination);
        Assert.Equal("quiet", single.Subject.Name);
        Assert.Null(single.Patch);
        var none = Assert.Single(findings, f => f.Kind == FindingKinds.NoHealthCheck);
        Assert.Equal("users", none.Subject.Name);
        var patched = Apply(none.Patch);
        Assert.Equal(3, patched.Config.Clusters["users"].HealthCheck.Passive!.Failures);

        // Without traffic (a fresh store) neither speaks.
        Assert.Empty(new ServiceHealthDetector().Detect(Context(snapshot, now: Now.AddDays(3))));
    }
}
