using System.Net;
using Portcullis.Advice;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.Tls;

namespace Portcullis.IntegrationTests.Advice;

/// <summary>
/// The service checks against a real gateway, real upstreams and real traffic: the store the gateway writes, the
/// health checks it runs, the certificate it serves and the issuer keys it fetches.
/// </summary>
public sealed class ServiceAdviceIntegrationTests : IDisposable
{
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("portcullis-advice-services-it-");

    public void Dispose() => _directory.Delete(recursive: true);

    private string Database => Path.Combine(_directory.FullName, "analytics.duckdb");

    private static async Task SendAsync(HttpClient client, string path, int count)
    {
        var tasks = Enumerable.Range(0, count).Select(async _ =>
        {
            using var response = await client.GetAsync(path);
            await response.Content.ReadAsByteArrayAsync();
        });
        await Task.WhenAll(tasks);
    }

    [Fact]
    public async Task UpstreamThatStartsFailingIsFound()
    {
        await using var upstream = await TestUpstream.StartAsync("orders");
        await using var gateway = await TestGateway.StartAsync($$"""
            analytics: { path: "{{Database}}", flushInterval: 200ms }
            advice:
              services: { errorWindow: 30s, sustainedFor: 3s, minErrors: 10, minRequests: 20 }
            routes:
              - { name: orders, match: { pathPrefix: /orders }, cluster: orders }
            clusters:
              orders: { destinations: [{{upstream.Url}}], timeouts: { request: 5s } }
            """);

        // Healthy traffic first: no finding.
        await SendAsync(gateway.Client, "/orders/1", 40);
        Assert.DoesNotContain(new ServiceUpstreamDetector().Detect(ServiceAdviceGateway.Context(gateway)), f => f.Kind == FindingKinds.UpstreamErrors);

        // Then the upstream answers 500 to everything.
        upstream.Handler = context =>
        {
            context.Response.StatusCode = 500;
            return Task.CompletedTask;
        };
        var finding = await ServiceAdviceGateway.UntilAsync(gateway, new ServiceUpstreamDetector(), FindingKinds.UpstreamErrors, () => SendAsync(gateway.Client, "/orders/1", 10));
        Assert.Equal(new FindingSubject(SubjectKind.Cluster, "orders"), finding.Subject);
        Assert.True(finding.Evidence.Values.Single(v => v.Name == "error share").Value > 0.5, finding.Explanation);
        Assert.Contains("cluster=orders", finding.Evidence.DashboardLink, StringComparison.Ordinal);
    }

    [Fact]
    public async Task LatencyCreepingTowardTheTimeoutIsFoundAndThePatchRaisesIt()
    {
        await using var upstream = await TestUpstream.StartAsync("slow");
        await using var gateway = await TestGateway.StartAsync($$"""
            analytics: { path: "{{Database}}", flushInterval: 200ms }
            advice:
              services: { latencyWindow: 1m, minLatencyRequests: 20 }
            routes:
              - { name: slow, match: { pathPrefix: /slow }, cluster: slow }
            clusters:
              slow: { destinations: [{{upstream.Url}}], timeouts: { request: 1s } }
            """);

        // The upstream gets slower with every round: 100 ms, 200 ms, ... up to 900 ms (timeout 1s).
        var delay = TimeSpan.FromMilliseconds(100);
        var finding = await ServiceAdviceGateway.UntilAsync(gateway, new ServiceTimeoutDetector(TimeProvider.System), FindingKinds.TimeoutTooTight, async () =>
        {
            upstream.Delay = delay;
            await SendAsync(gateway.Client, "/slow/x", 20);
            if (delay < TimeSpan.FromMilliseconds(900)) delay += TimeSpan.FromMilliseconds(100);
        });
        Assert.Equal(new FindingSubject(SubjectKind.Cluster, "slow"), finding.Subject);
        // Near the 1 s timeout: a request cut off by it is recorded at 1 s plus however late a busy machine ran the
        // timer (1.08 s seen while a build ran beside the tests), so the upper bound has a margin.
        Assert.InRange(finding.Evidence.Values.Single(v => v.Name == "p99 upstream latency").Value, 0.8, 1.5);
        Assert.NotNull(finding.Patch);
        Assert.Contains("request: 2s", finding.Patch.Yaml, StringComparison.Ordinal);
    }

    [Fact]
    public async Task DestinationWhoseHealthToggles_IsFlapping()
    {
        await using var steady = await TestUpstream.StartAsync("steady");
        await using var flaky = await TestUpstream.StartAsync("flaky");
        await using var gateway = await TestGateway.StartAsync($$"""
            advice:
              services: { flapWindow: 1m, flapTransitions: 4 }
            routes:
              - { name: api, match: { pathPrefix: /api }, cluster: api }
            clusters:
              api:
                destinations: [{ name: steady, address: "{{steady.Url}}" }, { name: flaky, address: "{{flaky.Url}}" }]
                healthCheck: { active: { interval: 100ms, timeout: 100ms, path: /healthz, unhealthyThreshold: 1, healthyThreshold: 1 } }
            """);

        // The flaky destination's health endpoint answers 503 and 200 in turns of 400 ms, probed by the gateway's real checks.
        using var stop = new CancellationTokenSource();
        var toggler = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                flaky.Healthy = !flaky.Healthy;
                await Task.Delay(400);
            }
        });
        try
        {
            var finding = await ServiceAdviceGateway.UntilAsync(gateway, new ServiceHealthDetector(), FindingKinds.DestinationFlapping);
            Assert.Equal(new FindingSubject(SubjectKind.Destination, "api/flaky"), finding.Subject);
            Assert.True(finding.Evidence.Values.Single(v => v.Name == "health transitions").Value >= 4);
            Assert.Contains("healthyThreshold: 3", finding.Patch!.Yaml, StringComparison.Ordinal);
            Assert.DoesNotContain(new ServiceHealthDetector().Detect(ServiceAdviceGateway.Context(gateway)), f => f.Subject.Name == "api/steady");
        }
        finally
        {
            stop.Cancel();
            await toggler;
        }
    }

    [Fact]
    public async Task ServedCertificateNearExpiryIsCritical()
    {
        var now = DateTimeOffset.UtcNow;
        using var certificate = DevCertificates.CreateServer(null, ["localhost"], now.AddDays(-80), now.AddDays(5));
        await using var gateway = await TestGateway.StartAsync("""
            listeners:
              - name: web
                address: "127.0.0.1:{{PORT}}"
                tls: { certificates: [ { name: main, cert: server.pem, key: server.key } ], hsts: {} }
              - { name: admin, address: "127.0.0.1:{{ADMIN_PORT}}", admin: true }
            routes:
              - { name: r, match: { pathPrefix: / }, respond: { status: 204 } }
            """, new Dictionary<string, string>
        {
            ["server.pem"] = DevCertificates.CertificatePem(certificate),
            ["server.key"] = DevCertificates.KeyPem(certificate),
        });
        var finding = Assert.Single(new ServiceTrustDetector().Detect(ServiceAdviceGateway.Context(gateway)));
        Assert.Equal(FindingKinds.CertificateExpiring, finding.Kind);
        Assert.Equal(FindingSeverity.Critical, finding.Severity);
        Assert.Equal(new FindingSubject(SubjectKind.Certificate, "web/main"), finding.Subject);
        Assert.Equal("the certificate in use", finding.Evidence.Basis);
    }

    [Fact]
    public async Task IssuerThatStopsIsFoundWhileItsLastKeysServe()
    {
        var idp = await TestIdentityProvider.StartAsync("idp-advice");
        try
        {
            await using var upstream = await TestUpstream.StartAsync("orders");
            await using var gateway = await TestGateway.StartAsync(IssuerRouteConfig.Orders(idp.Authority, upstream.Url, "{ refreshInterval: 1s, staleFor: 1h, timeout: 1s }", """
                advice:
                  services: { jwksFailingFor: 2s }
                """));
            var token = await idp.GetAccessTokenAsync(TestIdentityProvider.Reader);
            // Keys fetched once a token passes.
            var watch = System.Diagnostics.Stopwatch.StartNew();
            while (true)
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, "/orders/1");
                request.Headers.Authorization = new("Bearer", token);
                using var response = await gateway.Client.SendAsync(request);
                if (response.StatusCode == HttpStatusCode.OK) break;
                Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), $"the token was not accepted within 30s: {response.StatusCode}");
                await Task.Delay(100);
            }

            Assert.Empty(new ServiceTrustDetector().Detect(ServiceAdviceGateway.Context(gateway)));

            await idp.StopAsync();
            var finding = await ServiceAdviceGateway.UntilAsync(gateway, new ServiceTrustDetector(), FindingKinds.JwksFailing);
            Assert.Equal(new FindingSubject(SubjectKind.Issuer, "corp"), finding.Subject);
            Assert.Equal(FindingSeverity.Warning, finding.Severity);
            Assert.True(finding.Evidence.Values.Single(v => v.Name == "failed fetches since start").Value >= 1);
        }
        finally
        {
            await idp.DisposeAsync();
        }
    }
}
