using System.Net;
using System.Text.Json;
using Portcullis.Advice;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.Testing;
using Portcullis.Tls;
using static Portcullis.IntegrationTests.Advice.AdviceKindGateway;

namespace Portcullis.IntegrationTests.Advice;

/// <summary>
/// certificate.expiring and issuer.jwks-failing through the gateway's own engine (ServiceAdviceIntegrationTests
/// runs the detector alone over the same live state): the certificate a TLS listener really serves, and the
/// signing keys of a real OIDC provider that stops answering; findings read from GET /admin/advice.
/// </summary>
public sealed class ServiceTrustAdviceTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("portcullis-service-trust-it-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private string Database => Path.Combine(_directory, "analytics.duckdb");

    [Fact]
    public async Task A_served_certificate_expiring_within_30_days_is_a_warning_and_one_valid_for_a_year_is_not()
    {
        var now = DateTimeOffset.UtcNow;
        using var expiring = DevCertificates.CreateServer(null, ["localhost"], now.AddDays(-70), now.AddDays(20).AddHours(12));
        using var fresh = DevCertificates.CreateServer(null, ["localhost"], now.AddDays(-1), now.AddDays(365));
        var (soonPort, laterPort) = (Ports.GetFree(), Ports.GetFree());
        await using var gateway = await TestGateway.StartAsync($$$"""
            listeners:
              - { name: admin, address: "127.0.0.1:{{ADMIN_PORT}}", admin: true }
              - name: soon
                address: "127.0.0.1:{{{soonPort}}}"
                tls: { certificates: [ { name: main, cert: soon.pem, key: soon.key } ], hsts: {} }
              - name: later
                address: "127.0.0.1:{{{laterPort}}}"
                tls: { certificates: [ { name: main, cert: later.pem, key: later.key } ], hsts: {} }
            analytics: { path: "{{{Database}}}", flushInterval: 200ms }
            advice: { interval: 1h }
            routes:
              - { name: r, match: { pathPrefix: / }, respond: { status: 204 } }
            """, new Dictionary<string, string>
        {
            ["soon.pem"] = DevCertificates.CertificatePem(expiring),
            ["soon.key"] = DevCertificates.KeyPem(expiring),
            ["later.pem"] = DevCertificates.CertificatePem(fresh),
            ["later.key"] = DevCertificates.KeyPem(fresh),
        });

        // The handshake on listener soon presents the expiring certificate.
        DateTime? served = null;
        using (var handler = new HttpClientHandler { ServerCertificateCustomValidationCallback = (_, certificate, _, _) => (served = certificate!.NotAfter.ToUniversalTime()) is not null })
        using (var client = new HttpClient(handler))
        {
            using var response = await client.GetAsync($"https://127.0.0.1:{soonPort}/");
            Assert.Equal(HttpStatusCode.NoContent, response.StatusCode);
        }

        Assert.Equal(expiring.NotAfter.ToUniversalTime(), served);

        var finding = Assert.Single(await RunAsync(gateway, FindingKinds.CertificateExpiring));
        Assert.Equal(("certificate", "soon/main"), (SubjectKind(finding), Subject(finding)));
        Assert.Equal("warning", Severity(finding)); // critical within 7 days
        Assert.Equal(20, Value(finding, "days to expiry"));
        Assert.Equal(30, Baseline(finding, "days to expiry"));
        Assert.Contains("The server certificate main of listener soon", Explanation(finding), StringComparison.Ordinal);
        Assert.Contains("in 20 days", Explanation(finding), StringComparison.Ordinal);
        Assert.Contains("soon.pem", Explanation(finding), StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_issuer_whose_provider_stops_is_jwks_failing_while_its_last_keys_still_serve()
    {
        var idp = await TestIdentityProvider.StartAsync("idp-advice-engine");
        try
        {
            await using var upstream = await TestUpstream.StartAsync("orders");
            await using var gateway = await TestGateway.StartAsync(IssuerRouteConfig.Orders(idp.Authority, upstream.Url, "{ refreshInterval: 1s, staleFor: 1h, timeout: 1s }", $$"""
                analytics: { path: "{{Database}}", flushInterval: 200ms }
                advice:
                  interval: 1h
                  services: { jwksFailingFor: 2s }
                """));
            var token = await idp.GetAccessTokenAsync(TestIdentityProvider.Reader);
            async Task<HttpStatusCode> CallAsync()
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, "/orders/1");
                request.Headers.Authorization = new("Bearer", token);
                using var response = await gateway.Client.SendAsync(request);
                return response.StatusCode;
            }

            await Eventually.TrueAsync(async () => await CallAsync() == HttpStatusCode.OK, "the token accepted (keys fetched)");
            var healthy = await RunAsync(gateway, FindingKinds.JwksFailing);
            Assert.True(healthy.Count == 0, Describe(healthy));

            await idp.StopAsync();
            List<JsonElement> findings = [];
            await Eventually.TrueAsync(async () => (findings = await RunAsync(gateway, FindingKinds.JwksFailing)).Count > 0,
                "an issuer.jwks-failing finding after the provider stopped", TimeSpan.FromSeconds(60), () => Task.FromResult(gateway.Logs.ToString()));
            var finding = Assert.Single(findings);
            Assert.Equal(("issuer", "corp"), (SubjectKind(finding), Subject(finding)));
            Assert.Equal("warning", Severity(finding)); // critical once no usable keys are left
            Assert.True(Value(finding, "failed fetches since start") >= 1, finding.ToString());
            Assert.True(Value(finding, "good fetches since start") >= 1, finding.ToString());
            Assert.True(Value(finding, "failing for") >= 2, finding.ToString());
            Assert.Contains("Every refresh of issuer corp's signing keys", Explanation(finding), StringComparison.Ordinal);
            Assert.Contains("still serve", Explanation(finding), StringComparison.Ordinal);

            // As the finding says: the last good keys still serve.
            Assert.Equal(HttpStatusCode.OK, await CallAsync());
        }
        finally
        {
            await idp.DisposeAsync();
        }
    }
}
