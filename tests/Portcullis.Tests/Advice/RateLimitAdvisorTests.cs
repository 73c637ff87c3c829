using System.Globalization;
using Microsoft.Extensions.Logging.Abstractions;
using Portcullis.Advice;
using Portcullis.Analytics;
using Portcullis.Configuration;
using Portcullis.Testing;
using Xunit.Abstractions;

namespace Portcullis.Tests.Advice;

/// <summary>
/// The rate-limit advisor on a real DuckDB store filled with generated arrivals: suggestions checked by an
/// independent replay through RateLimitMath, existing limits too loose / too tight / keyed on an absent part,
/// thin data, and every patch applied to the config and built with the real SnapshotBuilder.
/// </summary>
public sealed class RateLimitAdvisorTests(ITestOutputHelper output) : ConfigBuildTestBase("portcullis-advice-limits-")
{
    private static readonly DateTime Now = new(2026, 12, 1, 12, 0, 0, DateTimeKind.Utc);
    private static readonly long Start = new DateTimeOffset(Now).ToUnixTimeSeconds() - (2 * 86_400); // two days of history

    private const string Config = """
        listeners: [{ name: public, address: 127.0.0.1:8080 }]
        clusters:
          api: { destinations: [http://127.0.0.1:5001] }
        analytics: { path: analytics.duckdb }
        rateLimits:
          generous: { key: [consumer], limit: 1000, per: 1s }
          tight: { key: [consumer], limit: 1, per: 1s, burst: 2 }
          per-tenant: { key: [header:X-Tenant], limit: 10, per: 1s }
        routes:
          - name: reports
            match: { pathPrefix: /reports }
            cluster: api
          - name: orders
            match: { pathPrefix: /orders }
            cluster: api
            rateLimits: [generous]
          - name: search
            match: { pathPrefix: /search }
            cluster: api
            rateLimits: tight
          - name: tenants
            match: { pathPrefix: /tenants }
            cluster: api
            rateLimits: [per-tenant]
          - name: thin
            match: { pathPrefix: /thin }
            cluster: api
          - name: tiny
            match: { pathPrefix: /tiny }
            cluster: api
        """;

    [Fact]
    public void The_suggestion_refuses_at_most_the_target_share_of_legitimate_requests_and_most_of_an_abusive_burst()
    {
        var data = new ArrivalData();
        var random = new Random(17);
        data.Legitimate(random, "reports", Start, 2 * 1440, 40, 1.5, groups: ["gold", "free"]);
        // mallory looks like the others, then hammers the route for ten minutes at 80 requests a second.
        data.Legitimate(random, "reports", Start, 2 * 1440, 1, 1.5, keyPrefix: "mallory");
        var burstStart = Start + (1000 * 60);
        for (var s = 0; s < 600; s++) data.Add("reports", "mallory0", burstStart + s, 80, "free");

        var findings = Run(data);
        var finding = Assert.Single(findings, f => f.Kind == FindingKinds.RateLimitSuggested);
        output.WriteLine(finding.Title);
        output.WriteLine(finding.Explanation);
        output.WriteLine(finding.Patch!.Yaml);
        Assert.Equal(new FindingSubject(SubjectKind.Route, "reports"), finding.Subject);
        Assert.Equal(FindingConfidence.High, finding.Confidence);
        Assert.Contains(finding.Evidence.Values, v => v.Name == "abusive callers (set aside)" && v.Value == 1);
        Assert.Contains(finding.Evidence.Values, v => v.Name == "group gold: per-second peak p99");
        Assert.Contains(finding.Evidence.Values, v => v.Name == "refused (replay): mallory0");

        // The patch validates, and the policy it adds is what the independent replay runs.
        var patched = ApplyAndBuild(finding.Patch);
        var route = patched.Routes["reports"];
        var policy = Assert.Single(route.RateLimits);
        Assert.Equal("suggested-reports", policy.Name);
        Assert.Equal("consumer", policy.Key.ToString());

        long legitimate = 0, legitimateRefused = 0;
        foreach (var key in data.KeysOf("reports").Where(k => k != "mallory0"))
        {
            var seconds = data.SecondsOf("reports", key);
            legitimate += seconds.Values.Sum();
            legitimateRefused += ArrivalData.Replay(seconds, policy).Refused;
        }

        var burst = ArrivalData.Replay(data.SecondsOf("reports", "mallory0"), policy, s => s >= burstStart && s < burstStart + 600);
        var legitShare = (double)legitimateRefused / legitimate;
        var burstShare = (double)burst.RefusedWithin / burst.Within;
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"policy {policy.Algorithm} {policy.Limit}/{policy.Per} capacity {policy.Capacity}: legitimate {legitimateRefused}/{legitimate} = {legitShare:P4}; burst {burst.RefusedWithin}/{burst.Within} = {burstShare:P2}"));
        Assert.True(legitShare <= 0.001, $"refused {legitShare:P4} of legitimate requests");
        Assert.True(burstShare >= 0.9, $"refused only {burstShare:P2} of the burst");
        Assert.Contains(finding.Evidence.Values, v => v.Name == "legitimate requests refused by the suggestion (replay)" && v.Value == legitimateRefused);
    }

    [Fact]
    public void A_limit_far_above_any_caller_is_too_loose_and_the_patch_lowers_it()
    {
        var data = new ArrivalData();
        data.Legitimate(new Random(3), "orders", Start, 2 * 1440, 10, 1.5);
        var finding = Assert.Single(Run(data), f => f.Kind == FindingKinds.RateLimitTooLoose);
        output.WriteLine(finding.Explanation + "\n" + finding.Patch!.Yaml);
        Assert.Equal(new FindingSubject(SubjectKind.RateLimit, "generous", "orders"), finding.Subject);
        var use = Assert.Single(finding.Evidence.Values, v => v.Name == "highest use of the limit");
        Assert.True(use.Value < 0.1, use.ToString());
        var policy = ApplyAndBuild(finding.Patch).RateLimits["generous"];
        Assert.True(policy.Limit < 1000 && policy.Per == TimeSpan.FromSeconds(1), $"{policy.Limit}/{policy.Per}");
    }

    [Fact]
    public void A_limit_that_refuses_much_of_legitimate_callers_traffic_is_too_tight_and_the_patch_raises_it()
    {
        var data = new ArrivalData();
        data.Legitimate(new Random(5), "search", Start, 2 * 1440, 10, 3);
        var finding = Assert.Single(Run(data), f => f.Kind == FindingKinds.RateLimitTooTight);
        output.WriteLine(finding.Explanation + "\n" + finding.Patch!.Yaml);
        Assert.Equal(FindingSeverity.Warning, finding.Severity);
        var share = Assert.Single(finding.Evidence.Values, v => v.Name == "largest share of one caller refused");
        Assert.True(share.Value >= 0.05, share.ToString());
        var policy = ApplyAndBuild(finding.Patch).RateLimits["tight"];
        long total = 0, refused = 0;
        foreach (var key in data.KeysOf("search"))
        {
            var seconds = data.SecondsOf("search", key);
            total += seconds.Values.Sum();
            refused += ArrivalData.Replay(seconds, policy).Refused;
        }

        Assert.True((double)refused / total <= 0.001, $"the raised limit still refuses {refused}/{total}");
    }

    [Fact]
    public void A_key_part_no_request_carries_is_reported_with_a_patch_that_keys_on_what_is_counted()
    {
        var data = new ArrivalData();
        data.Legitimate(new Random(7), "tenants", Start, 600, 5, 1, keyPrefix: "ip:10.0.0.", missing: "per-tenant header:X-Tenant");
        var finding = Assert.Single(Run(data), f => f.Kind == FindingKinds.RateLimitKeyAbsent);
        output.WriteLine(finding.Explanation + "\n" + finding.Patch!.Yaml);
        Assert.Equal(new FindingSubject(SubjectKind.RateLimit, "per-tenant", "tenants"), finding.Subject);
        Assert.Contains("header:X-Tenant", finding.Title, StringComparison.Ordinal);
        Assert.Equal("ip", ApplyAndBuild(finding.Patch).RateLimits["per-tenant"].Key.ToString());

        // Carried by half the requests: not absent.
        var half = new ArrivalData();
        half.Legitimate(new Random(7), "tenants", Start, 600, 5, 1, keyPrefix: "ip:10.0.0.", missing: "per-tenant header:X-Tenant");
        half.Legitimate(new Random(8), "tenants", Start, 600, 5, 1, keyPrefix: "ip:10.0.1.");
        Assert.DoesNotContain(Run(half), f => f.Kind == FindingKinds.RateLimitKeyAbsent);
    }

    [Fact]
    public void Thin_data_gives_a_low_confidence_suggestion_that_says_so_and_a_handful_of_requests_none()
    {
        var data = new ArrivalData();
        var recent = new DateTimeOffset(Now).ToUnixTimeSeconds() - 3600;
        data.Legitimate(new Random(11), "thin", recent, 30, 3, 2);
        for (var s = 0; s < 50; s++) data.Add("tiny", "t", recent + (s * 7), 1);
        Assert.InRange(data.Requests - 50, 100, 1_000);
        var findings = Run(data);
        var thin = Assert.Single(findings, f => f.Kind == FindingKinds.RateLimitSuggested);
        Assert.Equal("thin", thin.Subject.Name);
        Assert.Equal(FindingConfidence.Low, thin.Confidence);
        Assert.Contains("Confidence is low", thin.Explanation, StringComparison.Ordinal);
        Assert.Contains("min of data", thin.Evidence.Basis, StringComparison.Ordinal);
        Assert.DoesNotContain(findings, f => f.Subject.Name == "tiny");
        ApplyAndBuild(thin.Patch!);
    }

    [Fact]
    public void A_stopping_gateway_ends_the_replays_instead_of_finishing_them()
    {
        // The same data yields a suggestion (previous test); a cancelled run replays nothing and says so by throwing.
        var data = new ArrivalData();
        data.Legitimate(new Random(17), "reports", Start, 2 * 1440, 40, 1.5, groups: ["gold", "free"]);
        using var stopping = new CancellationTokenSource();
        stopping.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => Run(data, stopping.Token));
    }

    [Fact]
    public void Without_arrivals_there_is_nothing_to_say()
    {
        Assert.Empty(Run(new ArrivalData()));
    }

    private List<Finding> Run(ArrivalData data, CancellationToken cancellation = default)
    {
        var snapshot = BuildSnapshot(Config);
        var database = new AnalyticsDatabase(snapshot.Analytics!.Path);
        data.WriteTo(database);
        var context = new AdviceContext
        {
            Now = Now,
            Snapshot = snapshot,
            Settings = snapshot.Advice!,
            Analytics = AnalyticsSource.Local(database),
            Runtime = OfflineAdviceRuntime.Instance,
            Cancellation = cancellation,
        };
        var findings = new RateLimitAdvisor(NullLogger<RateLimitAdvisor>.Instance).Detect(context).ToList();
        foreach (var finding in findings) output.WriteLine($"{finding.Kind} {finding.Subject} {finding.Confidence}: {finding.Title}");
        return findings;
    }

    private GatewaySnapshot ApplyAndBuild(ConfigPatch patch) => BuildSnapshot(ConfigPatcher.Apply(Config, patch.Yaml));

    private GatewaySnapshot BuildSnapshot(string yaml)
    {
        var result = Build(yaml);
        Assert.True(result.Succeeded, Dump(result) + "\n" + yaml);
        return result.Snapshot!;
    }
}
