using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Portcullis.Advice;
using Portcullis.Clusters;
using Portcullis.Identity;
using Portcullis.Tls;

namespace Portcullis.Tests.Advice;

/// <summary>certificate.expiring (config files offline) and issuer.jwks-failing (a real issuer key cache failing to fetch).</summary>
public sealed class ServiceTrustDetectorTests : ServiceAdviceTestBase
{
    private GatewaySnapshotAndDays Listener(int days)
    {
        using var certificate = DevCertificates.CreateServer(null, ["localhost"], Now.AddDays(-10), Now.AddDays(days));
        WriteFile("server.pem", DevCertificates.CertificatePem(certificate));
        WriteFile("server.key", DevCertificates.KeyPem(certificate));
        return new(Snapshot("""
            listeners:
              - name: web
                address: "127.0.0.1:8443"
                tls: { certificates: [ { name: main, cert: server.pem, key: server.key } ], hsts: {} }
            routes:
              - { name: r, match: { pathPrefix: / }, respond: { status: 204 } }
            """), days);
    }

    internal sealed record GatewaySnapshotAndDays(Portcullis.Configuration.GatewaySnapshot Snapshot, int Days);

    [Theory]
    [InlineData(5, "Critical")]
    [InlineData(20, "Warning")]
    public void CertificateNearExpiryIsFoundFromItsFile(int days, string severityName)
    {
        var severity = Enum.Parse<FindingSeverity>(severityName);
        var (snapshot, _) = Listener(days);
        var finding = Assert.Single(new ServiceTrustDetector().Detect(Context(snapshot, store: false)));
        Assert.Equal(FindingKinds.CertificateExpiring, finding.Kind);
        Assert.Equal(severity, finding.Severity);
        Assert.Equal(new FindingSubject(SubjectKind.Certificate, "web/main"), finding.Subject);
        Assert.InRange(finding.Evidence.Values.Single().Value, days - 1, days);
    }

    [Fact]
    public void CertificateFarFromExpiryIsNot()
    {
        Assert.Empty(new ServiceTrustDetector().Detect(Context(Listener(90).Snapshot, store: false)));
    }

    [Fact]
    public void IssuerWhoseKeysCannotBeFetchedIsReportedOnceFailingLongEnough()
    {
        var snapshot = Snapshot("""
            listeners:
              - { name: plain, address: "127.0.0.1:8080" }
            routes:
              - { name: r, match: { pathPrefix: / }, respond: { status: 204 } }
            """);
        var time = new FakeTimeProvider(Now.AddMinutes(-5));
        using var services = Services(s => s.AddSingleton<TimeProvider>(time).AddSingleton<DestinationHealthHistory>()
            .AddSingleton<ILoggerFactory>(NullLoggerFactory.Instance).AddHttpClient().AddSingleton<IssuerRegistry>());
        var registry = services.GetRequiredService<IssuerRegistry>();
        var missing = Path.Combine(_directory.FullName, "no-such-jwks.json");
        registry.Sync([new IssuerKeySource("corp", null, null, missing, TimeSpan.FromMinutes(10), TimeSpan.FromSeconds(30), TimeSpan.FromHours(1), TimeSpan.FromSeconds(5), TimeSpan.FromMinutes(1))]);
        var cache = registry.Get("corp")!;
        var watch = Stopwatch.StartNew();
        while (cache.FailingSince is null)
        {
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), "the first fetch did not fail within 10s");
            Thread.Sleep(10);
        }

        var runtime = Live(services);
        Assert.Empty(new ServiceTrustDetector().Detect(Context(snapshot, store: false, runtime: runtime, now: Now.AddMinutes(-5).AddSeconds(30))));
        var finding = Assert.Single(new ServiceTrustDetector().Detect(Context(snapshot, store: false, runtime: runtime)));
        Assert.Equal(FindingKinds.JwksFailing, finding.Kind);
        Assert.Equal(FindingSeverity.Critical, finding.Severity);
        Assert.Equal(new FindingSubject(SubjectKind.Issuer, "corp"), finding.Subject);
        Assert.Equal(Now.AddMinutes(-5), finding.FirstSeen);
        Assert.Equal(300, finding.Evidence.Values.Single(v => v.Name == "failing for").Value);
        registry.Dispose();
    }
}
