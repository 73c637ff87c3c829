using System.Reflection;
using Portcullis.Advice;

namespace Portcullis.IntegrationTests.Advice;

/// <summary>
/// Issue 17: "every finding kind has an integration test with the gateway, the store and the engine all real".
/// The map below names, per kind, the tests that produce it through a running gateway; a kind added to
/// <see cref="FindingKinds"/> without an entry here fails this test, and so does an entry whose test is gone
/// (nameof keeps the names honest at compile time). docs/advisor.md ("Tests") lists the same map.
/// </summary>
public sealed class FindingKindCoverageTests
{
    private static (Type Class, string Method) T<TClass>(string method) => (typeof(TClass), method);

    internal static readonly Dictionary<string, (Type Class, string Method)[]> Tests = new(StringComparer.Ordinal)
    {
        [FindingKinds.RateLimitSuggested] = [T<RateLimitAdviceTests>(nameof(RateLimitAdviceTests.Real_traffic_gives_a_suggestion_whose_patch_refuses_the_hammering_consumer_and_not_the_others))],
        [FindingKinds.RateLimitTooLoose] = [T<RateLimitAdviceTests>(nameof(RateLimitAdviceTests.Real_traffic_shows_a_loose_limit_a_tight_limit_and_a_key_part_requests_never_carry))],
        [FindingKinds.RateLimitTooTight] = [T<RateLimitAdviceTests>(nameof(RateLimitAdviceTests.Real_traffic_shows_a_loose_limit_a_tight_limit_and_a_key_part_requests_never_carry))],
        [FindingKinds.RateLimitKeyAbsent] = [T<RateLimitAdviceTests>(nameof(RateLimitAdviceTests.Real_traffic_shows_a_loose_limit_a_tight_limit_and_a_key_part_requests_never_carry))],

        [FindingKinds.UnmatchedScanner] =
        [
            T<AnomalyAdviceTests>(nameof(AnomalyAdviceTests.A_scanner_probing_well_known_paths_is_found_with_its_address_and_paths_and_ordinary_clients_are_not)),
            T<QuickstartAdviceTests>(nameof(QuickstartAdviceTests.Traffic_script_makes_a_live_scanner_finding_on_the_running_quickstart)),
        ],
        [FindingKinds.UnmatchedEnumeration] = [T<CallerAnomalyAdviceTests>(nameof(CallerAnomalyAdviceTests.An_address_walking_through_ids_is_an_enumeration_unmatched_and_on_a_route_and_a_client_with_a_few_404s_is_not))],
        [FindingKinds.RouteVolume] = [T<RouteAnomalyAdviceTests>(nameof(RouteAnomalyAdviceTests.A_route_whose_traffic_jumps_to_many_times_its_baseline_is_a_volume_anomaly_and_flat_routes_are_not))],
        [FindingKinds.RouteErrors] = [T<RouteAnomalyAdviceTests>(nameof(RouteAnomalyAdviceTests.A_route_whose_upstream_starts_answering_5xx_is_an_error_anomaly_and_a_route_at_its_usual_share_is_not))],
        [FindingKinds.RouteLatency] = [T<RouteAnomalyAdviceTests>(nameof(RouteAnomalyAdviceTests.One_route_whose_upstream_slows_down_is_a_latency_anomaly_while_the_flat_routes_are_not))],
        [FindingKinds.GatewayLatency] = [T<RouteAnomalyAdviceTests>(nameof(RouteAnomalyAdviceTests.Every_route_slowing_at_once_is_one_gateway_latency_finding_not_one_per_route))],
        [FindingKinds.ConsumerNewRoute] = [T<AnomalyAdviceTests>(nameof(AnomalyAdviceTests.A_consumer_calling_the_admin_route_for_the_first_time_is_a_new_route_finding_against_the_stored_history))],
        [FindingKinds.ConsumerSurge] = [T<CallerAnomalyAdviceTests>(nameof(CallerAnomalyAdviceTests.A_consumer_calling_a_route_at_many_times_its_usual_peak_is_a_rate_surge_and_a_consumer_at_its_pace_is_not))],
        [FindingKinds.AuthFailureBurst] = [T<AnomalyAdviceTests>(nameof(AnomalyAdviceTests.A_burst_of_unknown_api_keys_from_one_address_is_an_auth_failure_burst_and_a_client_without_a_key_now_and_then_is_not))],
        [FindingKinds.NewPathShape] = [T<CallerAnomalyAdviceTests>(nameof(CallerAnomalyAdviceTests.Paths_of_a_shape_never_seen_under_a_route_prefix_are_a_new_path_shape_and_a_known_shape_is_not))],

        [FindingKinds.UpstreamErrors] =
        [
            T<ServiceAdviceEngineTests>(nameof(ServiceAdviceEngineTests.FailingUpstreamAndFlappingDestinationAreOnTheAdviceApi)),
            T<ServiceAdviceIntegrationTests>(nameof(ServiceAdviceIntegrationTests.UpstreamThatStartsFailingIsFound)),
        ],
        [FindingKinds.UpstreamTimeouts] = [T<ServiceAdviceEngineTests>(nameof(ServiceAdviceEngineTests.UpstreamSlowerThanItsTimeoutGivesTimeoutsAndATooTightTimeoutWithAPatch))],
        [FindingKinds.TimeoutTooTight] =
        [
            T<ServiceAdviceEngineTests>(nameof(ServiceAdviceEngineTests.UpstreamSlowerThanItsTimeoutGivesTimeoutsAndATooTightTimeoutWithAPatch)),
            T<ServiceAdviceIntegrationTests>(nameof(ServiceAdviceIntegrationTests.LatencyCreepingTowardTheTimeoutIsFoundAndThePatchRaisesIt)),
        ],
        [FindingKinds.TimeoutTooLoose] = [T<ServiceConfigAdviceTests>(nameof(ServiceConfigAdviceTests.A_timeout_far_above_the_upstream_latency_is_too_loose_and_one_a_few_times_the_latency_is_not))],
        [FindingKinds.DestinationFlapping] =
        [
            T<ServiceAdviceEngineTests>(nameof(ServiceAdviceEngineTests.FailingUpstreamAndFlappingDestinationAreOnTheAdviceApi)),
            T<ServiceAdviceIntegrationTests>(nameof(ServiceAdviceIntegrationTests.DestinationWhoseHealthToggles_IsFlapping)),
        ],
        [FindingKinds.SingleDestination] = [T<ServiceConfigAdviceTests>(nameof(ServiceConfigAdviceTests.Busy_clusters_with_one_destination_or_no_health_check_are_found_and_a_checked_or_idle_cluster_is_not))],
        [FindingKinds.NoHealthCheck] = [T<ServiceConfigAdviceTests>(nameof(ServiceConfigAdviceTests.Busy_clusters_with_one_destination_or_no_health_check_are_found_and_a_checked_or_idle_cluster_is_not))],
        [FindingKinds.RetryNonIdempotent] = [T<ServiceConfigAdviceTests>(nameof(ServiceConfigAdviceTests.Retries_on_a_post_only_route_and_a_public_route_beside_authenticated_ones_are_found_and_their_twins_are_not))],
        [FindingKinds.UnauthenticatedSibling] = [T<ServiceConfigAdviceTests>(nameof(ServiceConfigAdviceTests.Retries_on_a_post_only_route_and_a_public_route_beside_authenticated_ones_are_found_and_their_twins_are_not))],
        [FindingKinds.MissingSecurityHeaders] = [T<ServiceConfigAdviceTests>(nameof(ServiceConfigAdviceTests.Answers_lacking_a_security_header_or_carrying_a_leaking_one_and_a_listener_without_hsts_are_found_and_a_clean_route_is_not))],
        [FindingKinds.LeakingHeaders] = [T<ServiceConfigAdviceTests>(nameof(ServiceConfigAdviceTests.Answers_lacking_a_security_header_or_carrying_a_leaking_one_and_a_listener_without_hsts_are_found_and_a_clean_route_is_not))],
        [FindingKinds.CertificateExpiring] =
        [
            T<ServiceTrustAdviceTests>(nameof(ServiceTrustAdviceTests.A_served_certificate_expiring_within_30_days_is_a_warning_and_one_valid_for_a_year_is_not)),
            T<ServiceAdviceIntegrationTests>(nameof(ServiceAdviceIntegrationTests.ServedCertificateNearExpiryIsCritical)),
        ],
        [FindingKinds.JwksFailing] =
        [
            T<ServiceTrustAdviceTests>(nameof(ServiceTrustAdviceTests.An_issuer_whose_provider_stops_is_jwks_failing_while_its_last_keys_still_serve)),
            T<ServiceAdviceIntegrationTests>(nameof(ServiceAdviceIntegrationTests.IssuerThatStopsIsFoundWhileItsLastKeysServe)),
        ],
    };

    [Fact]
    public void Every_finding_kind_has_an_integration_test_and_every_entry_is_a_kind()
    {
        var untested = FindingJson.Kinds.Where(k => !Tests.ContainsKey(k)).Order(StringComparer.Ordinal).ToList();
        Assert.True(untested.Count == 0,
            $"finding kind(s) without an integration test: {string.Join(", ", untested)}. Add a test that produces each through a running gateway "
            + "(real upstreams, its analytics store, its engine; see AdviceKindGateway) and list it in FindingKindCoverageTests.Tests and docs/advisor.md (Tests).");
        var unknown = Tests.Keys.Where(k => !FindingJson.Kinds.Contains(k)).ToList();
        Assert.True(unknown.Count == 0, $"not a finding kind: {string.Join(", ", unknown)}");
    }

    [Fact]
    public void Every_listed_test_is_an_integration_fact_of_the_advice_tests()
    {
        foreach (var (kind, tests) in Tests)
        {
            Assert.NotEmpty(tests);
            foreach (var (type, name) in tests)
            {
                var method = type.GetMethod(name, BindingFlags.Public | BindingFlags.Instance);
                Assert.True(method is not null, $"{kind}: {type.Name}.{name} is not a public test method");
                Assert.True(method.GetCustomAttribute<FactAttribute>() is { Skip: null }, $"{kind}: {type.Name}.{name} is not a [Fact] that runs");
                Assert.Equal(typeof(FindingKindCoverageTests).Namespace, type.Namespace); // Advice/, not the opt-in Evaluation harness
            }
        }
    }

    [Fact]
    public void The_tests_section_of_the_advisor_docs_lists_the_same_map()
    {
        var root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "Portcullis.sln"))) root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("Portcullis.sln not found");
        var doc = File.ReadAllText(Path.Combine(root, "docs", "advisor.md"));
        var start = doc.IndexOf("\n### Tests\n", StringComparison.Ordinal);
        Assert.True(start >= 0, "docs/advisor.md has no ### Tests section");
        var end = doc.IndexOf("\n#", start + 10, StringComparison.Ordinal);
        var rows = doc[start..(end < 0 ? doc.Length : end)].Split('\n').Where(l => l.StartsWith("| `", StringComparison.Ordinal)).ToList();
        foreach (var (kind, tests) in Tests)
        {
            var row = rows.SingleOrDefault(r => r.StartsWith($"| `{kind}` |", StringComparison.Ordinal));
            Assert.True(row is not null, $"docs/advisor.md (Tests) has no row for {kind}");
            foreach (var (type, name) in tests) Assert.Contains($"{type.Name}.{name}", row, StringComparison.Ordinal);
        }

        Assert.Equal(Tests.Count, rows.Count);
    }
}
