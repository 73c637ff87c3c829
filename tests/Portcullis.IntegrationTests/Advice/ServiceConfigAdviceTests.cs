using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Portcullis.Advice;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.Testing;
using Portcullis.Tls;
using static Portcullis.IntegrationTests.Advice.AdviceKindGateway;
using static Portcullis.IntegrationTests.Analytics.AnalyticsTestSupport;

namespace Portcullis.IntegrationTests.Advice;

/// <summary>
/// The service findings that come from how clusters, routes and listeners are set up, checked against a running
/// gateway: its live config, its analytics store (real traffic through real upstreams decides which clusters
/// matter), its response-header counters, and the gateway's own engine run now; findings read from
/// GET /admin/advice with the patches the engine validated against the running config. Each test has a twin set
/// up right beside the one that is wrong, and only the wrong one is reported.
/// </summary>
public sealed class ServiceConfigAdviceTests : IAsyncLifetime
{
    private readonly string _directory = Directory.CreateTempSubdirectory("portcullis-service-config-it-").FullName;
    private TestUpstream _a = null!;
    private TestUpstream _b = null!;

    public async Task InitializeAsync()
    {
        _a = await TestUpstream.StartAsync("a");
        _b = await TestUpstream.StartAsync("b");
    }

    public async Task DisposeAsync()
    {
        await _a.DisposeAsync();
        await _b.DisposeAsync();
        Directory.Delete(_directory, recursive: true);
    }

    private string Database => Path.Combine(_directory, "analytics.duckdb");

    private static async Task SendOkAsync(TestGateway gateway, string prefix, int count) =>
        Assert.All(await SendManyAsync(gateway, count, i => $"{prefix}/{i}"), s => Assert.Equal(HttpStatusCode.OK, s));

    [Fact]
    public async Task Busy_clusters_with_one_destination_or_no_health_check_are_found_and_a_checked_or_idle_cluster_is_not()
    {
        await using var gateway = await TestGateway.StartAsync($$"""
            analytics: { path: "{{Database}}", flushInterval: 200ms }
            advice:
              interval: 1h
              services: { minTrafficRequests: 20 }
            routes:
              - { name: solo, match: { pathPrefix: /solo }, cluster: solo }
              - { name: pair, match: { pathPrefix: /pair }, cluster: pair }
              - { name: checked, match: { pathPrefix: /checked }, cluster: checked }
              - { name: idle, match: { pathPrefix: /idle }, cluster: idle }
            clusters:
              solo: { destinations: [{{_a.Url}}] }
              pair: { destinations: [{{_a.Url}}, {{_b.Url}}] }
              checked: { destinations: [{{_a.Url}}, {{_b.Url}}], healthCheck: { passive: { failures: 5, reactivation: 1m } } }
              idle: { destinations: [{{_b.Url}}] }
            """);
        var live = DateTime.UtcNow;
        await SendOkAsync(gateway, "/solo", 30);
        await SendOkAsync(gateway, "/pair", 30);
        await SendOkAsync(gateway, "/checked", 30);
        await SendOkAsync(gateway, "/idle", 5); // under minTrafficRequests: its single destination is not worth a finding
        await FlushedAsync(gateway, live, 95);

        var single = Assert.Single(await RunAsync(gateway, FindingKinds.SingleDestination));
        Assert.Equal(("cluster", "solo"), (SubjectKind(single), Subject(single)));
        Assert.Equal("info", Severity(single));
        Assert.Equal(1, Value(single, "destinations"));
        Assert.Equal(30, Value(single, "requests"));
        Assert.Contains($"Cluster solo served 30 requests over the last", Explanation(single), StringComparison.Ordinal);
        Assert.Contains(_a.Url, Explanation(single), StringComparison.Ordinal);
        Assert.Null(Patch(single));

        var unchecked_ = Assert.Single(await RunAsync(gateway, FindingKinds.NoHealthCheck));
        Assert.Equal(("cluster", "pair"), (SubjectKind(unchecked_), Subject(unchecked_)));
        Assert.Equal("warning", Severity(unchecked_));
        Assert.Equal(2, Value(unchecked_, "destinations"));
        Assert.Equal(30, Value(unchecked_, "requests"));
        Assert.Contains("with neither an active nor a passive health check", Explanation(unchecked_), StringComparison.Ordinal);
        Assert.Matches(@"clusters:\s+pair:\s+healthCheck:\s+passive:\s+failures: 3", Patch(unchecked_));
    }

    [Fact]
    public async Task A_timeout_far_above_the_upstream_latency_is_too_loose_and_one_a_few_times_the_latency_is_not()
    {
        _b.Delay = TimeSpan.FromMilliseconds(300);
        string Config(string fastTimeout) => $$"""
            analytics: { path: "{{Database}}", flushInterval: 200ms }
            advice:
              interval: 1h
              services: { minLooseRequests: 40 }
            routes:
              - { name: fast, match: { pathPrefix: /fast }, cluster: fast }
              - { name: measured, match: { pathPrefix: /measured }, cluster: measured }
            clusters:
              fast: { destinations: [{{_a.Url}}], timeouts: { request: {{fastTimeout}} } }
              measured: { destinations: [{{_b.Url}}], timeouts: { request: 3s } }
            """;
        await using var gateway = await TestGateway.StartAsync(Config("60s"));
        var live = DateTime.UtcNow;
        await SendOkAsync(gateway, "/fast", 50);
        await SendOkAsync(gateway, "/measured", 50);
        await FlushedAsync(gateway, live, 100);

        // The check reads a day of sketches, so it is recomputed hourly or when the config changes: the run at start-up
        // (no traffic yet) is what a run now would repeat. An operator's reload (the timeout 60s → 50s) makes it look again.
        var generation = gateway.Generation;
        await gateway.WriteConfigAsync(Config("50s"));
        var (status, body) = await gateway.ReloadAsync();
        Assert.True(status == 200, body.ToString());
        await gateway.WaitForGenerationAsync(generation);

        var finding = Assert.Single(await RunAsync(gateway, FindingKinds.TimeoutTooLoose));
        Assert.Equal(("cluster", "fast"), (SubjectKind(finding), Subject(finding)));
        Assert.Equal("info", Severity(finding));
        Assert.Equal(50, Value(finding, "proxied requests"));
        Assert.Equal(50, Value(finding, "timeouts.request"));
        Assert.True(Value(finding, "timeout / p99") > 20, finding.ToString());
        Assert.Equal(20, Baseline(finding, "timeout / p99"));
        Assert.Contains("but its timeouts.request is 50s", Explanation(finding), StringComparison.Ordinal);
        var patch = Patch(finding);
        Assert.NotNull(patch);
        Assert.Matches(@"clusters:\s+fast:\s+timeouts:\s+request: \d+s", patch);
        var suggested = int.Parse(System.Text.RegularExpressions.Regex.Match(patch, @"request: (\d+)s").Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(suggested, 1, 25); // at most half the current timeout
    }

    [Fact]
    public async Task Retries_on_a_post_only_route_and_a_public_route_beside_authenticated_ones_are_found_and_their_twins_are_not()
    {
        // Both destinations of payments drop the connection: the POST is not retried on the other one.
        foreach (var upstream in (TestUpstream[])[_a, _b])
        {
            upstream.Handler = context =>
            {
                if (context.Request.Path.StartsWithSegments("/pay/fail", StringComparison.Ordinal)) context.Abort();
                return Task.CompletedTask;
            };
        }

        var (keys, alice, _) = await KeysAsync(_directory);
        await using var gateway = await TestGateway.StartAsync($$"""
            analytics: { path: "{{Database}}", flushInterval: 200ms }
            advice: { interval: 1h }
            identity:
              apiKeys: { file: keys.yaml }
            routes:
              - { name: orders-export, match: { pathPrefix: /orders/export }, cluster: orders }
              - { name: orders-health, match: { path: /orders/health }, auth: { anonymous: true }, cluster: orders }
              - { name: orders, match: { pathPrefix: /orders }, auth: { apiKey: true }, cluster: orders }
              - { name: pay, match: { pathPrefix: /pay, methods: [POST] }, cluster: payments }
            clusters:
              orders: { destinations: [{{_a.Url}}], retries: 2 }
              payments: { destinations: [{{_a.Url}}, {{_b.Url}}], retries: 2 }
            """, new Dictionary<string, string> { ["keys.yaml"] = keys });

        // What the findings say, as the running gateway does it: the export is open to anyone, orders needs a key,
        // and a POST whose connection drops fails without a second attempt.
        Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway, "/orders/export/all"));
        Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway, "/orders/health"));
        Assert.Equal(HttpStatusCode.Unauthorized, await SendAsync(gateway, "/orders/1"));
        Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway, "/orders/1", key: alice));
        var before = _a.Requests + _b.Requests;
        Assert.Equal(HttpStatusCode.BadGateway, await SendAsync(gateway, "/pay/fail", method: HttpMethod.Post));
        Assert.Equal(before + 1, _a.Requests + _b.Requests);

        var retry = Assert.Single(await RunAsync(gateway, FindingKinds.RetryNonIdempotent));
        Assert.Equal(("cluster", "payments"), (SubjectKind(retry), Subject(retry)));
        Assert.Equal("info", Severity(retry));
        Assert.Equal(2, Value(retry, "retries"));
        Assert.Equal(1, Value(retry, "routes with only non-idempotent methods"));
        Assert.Contains("route(s) pay accept only POST", Explanation(retry), StringComparison.Ordinal);
        Assert.Matches(@"clusters:\s+payments:\s+retries: 0", Patch(retry));

        var sibling = Assert.Single(await RunAsync(gateway, FindingKinds.UnauthenticatedSibling));
        Assert.Equal(("route", "orders-export"), (SubjectKind(sibling), Subject(sibling)));
        Assert.Equal("warning", Severity(sibling));
        Assert.Equal(1, Value(sibling, "authenticated routes on /orders"));
        Assert.Contains("Route orders-export (/orders/export) has no auth section", Explanation(sibling), StringComparison.Ordinal);
        Assert.Matches(@"routes:\s+- name: orders-export\s+auth:\s+apiKey: true", Patch(sibling));
    }

    [Fact]
    public async Task Answers_lacking_a_security_header_or_carrying_a_leaking_one_and_a_listener_without_hsts_are_found_and_a_clean_route_is_not()
    {
        _a.Handler = context =>
        {
            context.Response.Headers["X-Powered-By"] = "PHP/5.6.40";
            return context.Response.WriteAsync("{}");
        };
        _b.Handler = context =>
        {
            context.Response.Headers["X-Content-Type-Options"] = "nosniff";
            context.Response.Headers["X-Powered-By"] = "PHP/5.6.40"; // stripped by route clean
            return context.Response.WriteAsync("{}");
        };
        var now = DateTimeOffset.UtcNow;
        using var certificate = DevCertificates.CreateServer(null, ["localhost"], now.AddDays(-1), now.AddDays(365));
        await using var gateway = await TestGateway.StartAsync($$$"""
            listeners:
              - { name: public, address: "127.0.0.1:{{PORT}}" }
              - { name: admin, address: "127.0.0.1:{{ADMIN_PORT}}", admin: true }
              - name: web
                address: "127.0.0.1:{{{Ports.GetFree()}}}"
                tls: { certificates: [ { name: main, cert: server.pem, key: server.key } ] }
            analytics: { path: "{{{Database}}}", flushInterval: 200ms }
            advice:
              interval: 1h
              services: { minTrafficRequests: 10, leakingHeaders: [X-Powered-By] }
            routes:
              - name: legacy
                match: { pathPrefix: /legacy }
                cluster: legacy
                responseHeaders: { require: [X-Content-Type-Options], forbid: [X-Powered-By], action: log }
              - name: clean
                match: { pathPrefix: /clean }
                cluster: clean
                responseHeaders: { require: [X-Content-Type-Options], forbid: [X-Powered-By], action: strip }
            clusters:
              legacy: { destinations: [{{{_a.Url}}}] }
              clean: { destinations: [{{{_b.Url}}}] }
            """, new Dictionary<string, string>
        {
            ["server.pem"] = DevCertificates.CertificatePem(certificate),
            ["server.key"] = DevCertificates.KeyPem(certificate),
        });
        var live = DateTime.UtcNow;
        await SendOkAsync(gateway, "/legacy", 12);
        await SendOkAsync(gateway, "/clean", 12);
        await FlushedAsync(gateway, live, 24);

        List<JsonElement> missing = [], leaking = [];
        await Eventually.TrueAsync(async () =>
        {
            missing = await RunAsync(gateway, FindingKinds.MissingSecurityHeaders);
            leaking = await RunAsync(gateway, FindingKinds.LeakingHeaders);
            return missing.Any(f => Subject(f) == "legacy" && Value(f, "answers without X-Content-Type-Options") == 12)
                && leaking.Any(f => Subject(f) == "legacy" && Value(f, "answers with X-Powered-By") == 12);
        }, "the header findings of route legacy's 12 answers", context: () => Task.FromResult(Describe([.. missing, .. leaking])));

        // Missing: route legacy's answers (seen) and listener web (configured); clean's answers had the header.
        Assert.True(missing.Count == 2, Describe(missing));
        var seen = Assert.Single(missing, f => SubjectKind(f) == "route");
        Assert.Equal(("legacy", "warning"), (Subject(seen), Severity(seen)));
        Assert.Contains("12 answers of route legacy came from the upstream without X-Content-Type-Options", Explanation(seen), StringComparison.Ordinal);
        var hsts = Assert.Single(missing, f => SubjectKind(f) == "listener");
        Assert.Equal(("web", "info"), (Subject(hsts), Severity(hsts)));
        Assert.Matches(@"listeners:\s+- name: web\s+tls:\s+hsts:\s+maxAge: 180d", Patch(hsts));

        // Leaking: route legacy only logs X-Powered-By, so clients got it (seen), and nothing strips it from cluster
        // legacy (configured); route clean strips it, so neither clean nor its cluster is reported.
        Assert.True(leaking.Count == 2, Describe(leaking));
        Assert.DoesNotContain(leaking, f => Subject(f) == "clean");
        var passed = Assert.Single(leaking, f => SubjectKind(f) == "route");
        Assert.Equal(("legacy", "warning"), (Subject(passed), Severity(passed)));
        Assert.Matches(@"routes:\s+- name: legacy\s+responseHeaders:\s+action: strip", Patch(passed));
        var cluster = Assert.Single(leaking, f => SubjectKind(f) == "cluster");
        Assert.Equal(("legacy", "info"), (Subject(cluster), Severity(cluster)));
        Assert.Equal(12, Value(cluster, "requests"));
        Assert.Contains("forbid: [X-Powered-By]", Patch(cluster), StringComparison.Ordinal);
    }
}
