using Portcullis.Advice;

namespace Portcullis.Tests.Advice;

/// <summary>cluster.retry-non-idempotent and route.unauthenticated-sibling: config checks, offline too.</summary>
public sealed class ServiceRouteDetectorTests : ServiceAdviceTestBase
{
    [Fact]
    public void RetriesOnAClusterWhoseRoutesOnlyPostAreReportedWithRetriesZero()
    {
        var snapshot = Snapshot("""
            listeners:
              - { name: public, address: "127.0.0.1:8080" }
            routes:
              - { name: submit, match: { pathPrefix: /submit, methods: [POST, PATCH] }, cluster: writes }
              - { name: read, match: { pathPrefix: /read }, cluster: reads }
              - { name: mixed-post, match: { pathPrefix: /mixed, methods: [POST] }, cluster: mixed }
              - { name: mixed-get, match: { pathPrefix: /mixed, methods: [GET] }, cluster: mixed }
            clusters:
              writes: { destinations: ["http://127.0.0.1:1", "http://127.0.0.1:2"], retries: 2 }
              reads: { destinations: ["http://127.0.0.1:3"] }
              mixed: { destinations: ["http://127.0.0.1:4"] }
            """);
        var findings = new ServiceRouteDetector().Detect(Context(snapshot, store: false));
        Assert.Equal(2, findings.Count);
        Assert.All(findings, f => Assert.Equal(FindingKinds.RetryNonIdempotent, f.Kind));
        var writes = Assert.Single(findings, f => f.Subject.Name == "writes");
        Assert.Equal(0, Apply(writes.Patch).Config.Clusters["writes"].Retries.Attempts);

        // Its GET route still uses the retries: reported, no patch.
        var mixed = Assert.Single(findings, f => f.Subject.Name == "mixed");
        Assert.Null(mixed.Patch);
        Assert.Equal(1, mixed.Evidence.Values.Single(v => v.Name == "routes with only non-idempotent methods").Value);
        Assert.Equal(2, mixed.Evidence.Values.Single(v => v.Name == "routes to the cluster").Value);
    }

    [Fact]
    public void PublicRouteBesideAuthenticatedOnesGetsTheirAuth()
    {
        WriteFile("keys.yaml", "# no keys yet\n");
        var snapshot = Snapshot("""
            listeners:
              - { name: public, address: "127.0.0.1:8080" }
            identity:
              apiKeys: { file: keys.yaml }
            routes:
              - { name: orders, match: { path: "/orders/{id}" }, cluster: c, auth: { apiKey: true, scopes: [orders.read] } }
              - { name: orders-export, match: { pathPrefix: /orders/export }, cluster: c }
              - { name: health, match: { path: /health }, cluster: c, auth: { anonymous: true } }
              - { name: health-deep, match: { path: /health/deep }, cluster: c }
              - { name: docs, match: { pathPrefix: /docs }, cluster: c }
            clusters:
              c: { destinations: ["http://127.0.0.1:1"] }
            """);
        var finding = Assert.Single(new ServiceRouteDetector().Detect(Context(snapshot, store: false)));
        Assert.Equal(FindingKinds.UnauthenticatedSibling, finding.Kind);
        Assert.Equal(new FindingSubject(SubjectKind.Route, "orders-export"), finding.Subject);
        var patched = Apply(finding.Patch);
        var auth = patched.Config.Routes.Single(r => r.Name == "orders-export").Auth!;
        Assert.True(auth.ApiKey);
        Assert.Equal(["orders.read"], auth.Scopes);
    }
}
