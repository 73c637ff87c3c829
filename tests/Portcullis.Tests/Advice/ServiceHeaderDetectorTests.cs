using Microsoft.Extensions.DependencyInjection;
using Portcullis.Advice;
using Portcullis.Clusters;
using Portcullis.Configuration;
using Portcullis.Observability;
using Portcullis.Tls;

namespace Portcullis.Tests.Advice;

/// <summary>headers.missing-security and headers.leaking: from the config (offline) and from the gateway's response-header findings.</summary>
public sealed class ServiceHeaderDetectorTests : ServiceAdviceTestBase
{
    [Fact]
    public void TlsListenerWithoutHstsGetsTheListenersHstsSetting()
    {
        var now = DateTimeOffset.UtcNow;
        using var certificate = DevCertificates.CreateServer(null, ["localhost"], now.AddDays(-1), now.AddDays(300));
        WriteFile("server.pem", DevCertificates.CertificatePem(certificate));
        WriteFile("server.key", DevCertificates.KeyPem(certificate));
        var snapshot = Snapshot("""
            listeners:
              - name: web
                address: "127.0.0.1:8443"
                tls: { certificates: [ { cert: server.pem, key: server.key } ] }
              - { name: plain, address: "127.0.0.1:8080" }
            routes:
              - { name: r, match: { pathPrefix: / }, cluster: c, responseHeaders: { forbid: [Server, X-Powered-By], action: strip } }
            clusters:
              c: { destinations: ["http://127.0.0.1:1"] }
            """);
        var finding = Assert.Single(new ServiceHeaderDetector().Detect(Context(snapshot, store: false)));
        Assert.Equal(FindingKinds.MissingSecurityHeaders, finding.Kind);
        Assert.Equal(new FindingSubject(SubjectKind.Listener, "web"), finding.Subject);
        var patched = Apply(finding.Patch);
        Assert.NotNull(patched.Listeners.Single(l => l.Name == "web").Tls!.Hsts);
    }

    [Fact]
    public void ClusterThatLetsServerThroughGetsAStripPatch()
    {
        var snapshot = Snapshot("""
            listeners:
              - { name: plain, address: "127.0.0.1:8080" }
            routes:
              - { name: a, match: { pathPrefix: /a }, cluster: leaky }
              - { name: b, match: { pathPrefix: /b }, cluster: tidy }
            clusters:
              leaky: { destinations: ["http://127.0.0.1:1"], responseHeaders: { require: [Cache-Control], forbid: [X-Debug] } }
              tidy: { destinations: ["http://127.0.0.1:2"], responseHeaders: { forbid: [Server, X-Powered-By], action: strip } }
            """);
        var finding = Assert.Single(new ServiceHeaderDetector().Detect(Context(snapshot, store: false)));
        Assert.Equal(FindingKinds.LeakingHeaders, finding.Kind);
        Assert.Equal("leaky", finding.Subject.Name);
        var headers = Apply(finding.Patch).Config.Clusters["leaky"].ResponseHeaders!;
        Assert.Equal(["X-Debug", "Server", "X-Powered-By"], headers.Forbid);
        Assert.Equal(["Cache-Control"], headers.Require);
        Assert.Equal(ResponseHeaderAction.Strip, headers.Action);
    }

    [Fact]
    public void ManyClustersLettingTheSameHeadersThroughAreOneFindingWithOnePatch()
    {
        var count = ServiceHeaderDetector.GroupAbove + 2;
        var routes = string.Concat(Enumerable.Range(0, count).Select(i => $"  - {{ name: r{i}, match: {{ pathPrefix: /r{i} }}, cluster: c{i} }}\n"));
        var clusters = string.Concat(Enumerable.Range(0, count).Select(i => $"  c{i}: {{ destinations: [\"http://127.0.0.1:{i + 1}\"] }}\n"));
        var snapshot = Snapshot($$"""
            listeners:
              - { name: plain, address: "127.0.0.1:8080" }
            routes:
            {{routes}}  - { name: own, match: { pathPrefix: /own }, cluster: own }
            clusters:
            {{clusters}}  own: { destinations: ["http://127.0.0.1:99"], responseHeaders: { require: [Cache-Control] } }
            """);
        var findings = new ServiceHeaderDetector().Detect(Context(snapshot, store: false));

        // The cluster with responseHeaders of its own keeps its finding; the others are one.
        Assert.Equal(2, findings.Count);
        Assert.Contains(findings, f => f.Subject == new FindingSubject(SubjectKind.Cluster, "own"));
        var grouped = Assert.Single(findings, f => f.Subject.Kind == SubjectKind.Gateway);
        Assert.Equal(FindingKinds.LeakingHeaders, grouped.Kind);
        Assert.Equal(count, grouped.Evidence.Values.Single(v => v.Name == "clusters not stripping them").Value);
        Assert.Contains($"{count} clusters", grouped.Title, StringComparison.Ordinal);
        var patched = Apply(grouped.Patch).Config.Clusters;
        for (var i = 0; i < count; i++)
        {
            var headers = patched[$"c{i}"].ResponseHeaders!;
            Assert.Equal(["Server", "X-Powered-By"], headers.Forbid);
            Assert.Equal(ResponseHeaderAction.Strip, headers.Action);
        }

        Assert.Empty(patched["own"].ResponseHeaders!.Forbid);
    }

    [Fact]
    public void WhatEveryRouteToAClusterStripsIsNotReportedForIt()
    {
        var snapshot = Snapshot("""
            listeners:
              - { name: plain, address: "127.0.0.1:8080" }
            routes:
              - { name: a1, match: { pathPrefix: /a1 }, cluster: half, responseHeaders: { forbid: [Server], action: strip } }
              - { name: a2, match: { pathPrefix: /a2 }, cluster: half }
              - { name: b1, match: { pathPrefix: /b1 }, cluster: both, responseHeaders: { forbid: [Server], action: strip } }
              - { name: b2, match: { pathPrefix: /b2 }, cluster: both, responseHeaders: { forbid: [server, X-Debug], action: strip } }
              - { name: logs, match: { pathPrefix: /c }, cluster: logged, responseHeaders: { forbid: [Server, X-Powered-By] } }
              - { name: s, match: { pathPrefix: /s }, split: { clusters: [ { cluster: half, weight: 1 }, { cluster: split-only, weight: 1 } ] } }
            clusters:
              half: { destinations: ["http://127.0.0.1:1"] }
              both: { destinations: ["http://127.0.0.1:2"] }
              logged: { destinations: ["http://127.0.0.1:3"] }
              split-only: { destinations: ["http://127.0.0.1:4"] }
              unused: { destinations: ["http://127.0.0.1:5"] }
            """);
        var findings = new ServiceHeaderDetector().Detect(Context(snapshot, store: false));

        // Routes that only log what they forbid strip nothing; a cluster no route sends to is not looked at.
        string Missing(string cluster) => string.Join(", ", findings.Single(f => f.Subject.Name == cluster).Evidence.Values.Single(v => v.Name == "headers not stripped").Value);
        Assert.Equal(["both", "half", "logged", "split-only"], findings.Select(f => f.Subject.Name).Order(StringComparer.Ordinal));
        Assert.Equal("1", Missing("both"));
        Assert.Contains("X-Powered-By", findings.Single(f => f.Subject.Name == "both").Title, StringComparison.Ordinal);
        Assert.DoesNotContain("Server", findings.Single(f => f.Subject.Name == "both").Title, StringComparison.Ordinal);
        Assert.Equal("2", Missing("half"));
        Assert.Equal("2", Missing("logged"));
        Assert.Equal("2", Missing("split-only"));
    }

    [Fact]
    public void TheGroupedPatchIsBuiltAgainOnlyWhenItsClustersChange()
    {
        // It names every cluster (454 KB at 50,000 routes) and the advisor runs every minute.
        string Config(int count) => $$"""
            listeners:
              - { name: plain, address: "127.0.0.1:8080" }
            routes:
            {{string.Concat(Enumerable.Range(0, count).Select(i => $"  - {{ name: r{i}, match: {{ pathPrefix: /r{i} }}, cluster: c{i} }}\n"))}}clusters:
            {{string.Concat(Enumerable.Range(0, count).Select(i => $"  c{i}: {{ destinations: [\"http://127.0.0.1:{i + 1}\"] }}\n"))}}
            """;
        var detector = new ServiceHeaderDetector();
        var first = Snapshot(Config(ServiceHeaderDetector.GroupAbove + 2));
        var patch = Assert.Single(detector.Detect(Context(first, store: false))).Patch;
        Assert.Same(patch, Assert.Single(detector.Detect(Context(first, store: false))).Patch);

        var more = Snapshot(Config(ServiceHeaderDetector.GroupAbove + 3));
        var changed = Assert.Single(detector.Detect(Context(more, store: false))).Patch!;
        Assert.NotSame(patch, changed);
        Assert.Contains($"c{ServiceHeaderDetector.GroupAbove + 2}:", changed.Yaml, StringComparison.Ordinal);
    }

    [Fact]
    public void ObservedFindingsOfTheGatewayAreReported()
    {
        var snapshot = Snapshot("""
            listeners:
              - { name: plain, address: "127.0.0.1:8080" }
            routes:
              - name: a
                match: { pathPrefix: /a }
                cluster: c
                responseHeaders: { require: [X-Content-Type-Options], forbid: [Server, X-Powered-By] }
            clusters:
              c: { destinations: ["http://127.0.0.1:1"], responseHeaders: { forbid: [Server, X-Powered-By], action: strip } }
            """);
        using var services = Services(s => s.AddSingleton<ResponseHeaderFindings>().AddSingleton(TimeProvider.System).AddSingleton<DestinationHealthHistory>());
        var counts = services.GetRequiredService<ResponseHeaderFindings>();
        counts.Record("a", ["require:X-Content-Type-Options", "forbid:Server"]);
        counts.Record("a", ["forbid:Server"]);
        var findings = new ServiceHeaderDetector().Detect(Context(snapshot, store: false, runtime: Live(services)));
        Assert.Equal(2, findings.Count);
        var missing = Assert.Single(findings, f => f.Kind == FindingKinds.MissingSecurityHeaders);
        Assert.Equal(new FindingSubject(SubjectKind.Route, "a"), missing.Subject);
        Assert.Equal(1, missing.Evidence.Values.Single().Value);
        var leaking = Assert.Single(findings, f => f.Kind == FindingKinds.LeakingHeaders);
        Assert.Equal(2, leaking.Evidence.Values.Single().Value);
        Assert.Equal(ResponseHeaderAction.Strip, Apply(leaking.Patch).Config.Routes.Single().ResponseHeaders!.Action);
    }

    [Fact]
    public void EmptyListsTurnTheChecksOff()
    {
        var snapshot = Snapshot("""
            listeners:
              - { name: plain, address: "127.0.0.1:8080" }
            routes:
              - { name: a, match: { pathPrefix: /a }, cluster: c }
            clusters:
              c: { destinations: ["http://127.0.0.1:1"] }
            advice:
              services: { securityHeaders: [], leakingHeaders: [] }
            """);
        Assert.Empty(new ServiceHeaderDetector().Detect(Context(snapshot, store: false)));
    }
}
