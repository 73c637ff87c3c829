using Portcullis.Configuration;

namespace Portcullis.Tests.Traffic;

/// <summary>Plans (`plans`, `plan`): what compiles, and mistakes refused at file:line:column with a hint.</summary>
public sealed class PlanConfigTests() : ConfigBuildTestBase("portcullis-plans-")
{
    // Line numbers below count from here: the plans block starts on line 9.
    private const string Head = """
        listeners: [{ name: public, address: 127.0.0.1:8080 }]
        clusters:
          api: { destinations: [http://127.0.0.1:5001] }
        rateLimits:
          per-consumer: { limit: 10, per: 1m }
          per-consumer-pro: { limit: 100, per: 1m }
        quotas:
          daily: { limit: 1000, store: local }
        plans:

        """;

    private const string Routes = """

        routes:
          - { name: orders, match: { pathPrefix: /orders }, cluster: api, rateLimits: [per-consumer] }
          - { name: reports, match: { pathPrefix: /reports }, cluster: api }
          - { name: health, match: { path: /health }, cluster: api, plans: false }
        """;

    [Fact]
    public void Plans_compile_into_per_plan_copies_and_a_lookup_per_route()
    {
        var result = Build(Head + """
              free: { rateLimits: [per-consumer], quota: daily, routes: [orders] }
              pro: { rateLimits: [per-consumer], routes: ["rep*", orders] }
              enterprise: {}
            plan: { from: consumerGroup, default: free }
            """ + Routes);
        Assert.True(result.Succeeded, Dump(result));
        var snapshot = result.Snapshot!;
        var plans = snapshot.Plans!;
        Assert.Equal("per-consumer@free", plans.Plans["free"].RateLimits[0].Counter);
        Assert.Equal("per-consumer@pro", plans.Plans["pro"].RateLimits[0].Counter);
        Assert.Equal("per-consumer", plans.Plans["pro"].RateLimits[0].Name); // headers and details keep the policy's name
        Assert.Equal("daily@free", plans.Plans["free"].Quota!.Counter);
        Assert.NotEqual(plans.Plans["free"].RateLimits[0].Identity, plans.Plans["pro"].RateLimits[0].Identity);
        Assert.Equal("per-consumer", snapshot.Routes["orders"].RateLimits[0].Counter); // the route's own policy is untouched
        Assert.NotNull(snapshot.Routes["reports"].Plans);
        Assert.Null(snapshot.Routes["health"].Plans);
        Assert.False(snapshot.Routes["health"].HasTrafficControl);
    }

    [Fact]
    public void Without_plans_routes_have_none()
    {
        var result = Build(Head.Replace("plans:\n", "", StringComparison.Ordinal) + Routes);
        Assert.True(result.Succeeded, Dump(result));
        Assert.Null(result.Snapshot!.Plans);
        Assert.Null(result.Snapshot.Routes["reports"].Plans);
    }

    [Theory]
    [InlineData("  free: { rateLimits: [per-consumr] }", "names unknown rate limit 'per-consumr'", 10, 24, "did you mean 'per-consumer'?")]
    [InlineData("  free: { quota: dayly }", "names unknown quota 'dayly'", 10, 18, "did you mean 'daily'?")]
    [InlineData("  free: { routes: [ordres] }", "names unknown route 'ordres'", 10, 20, "did you mean 'orders'?")]
    [InlineData("  \"free tier\": { rateLimits: [per-consumer] }", "has characters other than", 10, 16, "e.g. free, pro, enterprise")]
    [InlineData("  free: {}\nplan: { from: consumerGroup, default: fre }", "default plan 'fre' is not defined", 11, 39, "did you mean 'free'?")]
    [InlineData("  free: {}\nplan: { from: tier }", "unknown plan source 'tier'", 11, 15, "consumerGroup, claim:NAME")]
    [InlineData("  free: {}\nplan: { from: \"${map:tiers(consumerGroup)}\" }", "unknown map 'tiers'", 11, 15, "define it under maps:")]
    [InlineData("  free: {}\nplan: { from: \"${map:tiers consumerGroup}\" }", "malformed lookup", 11, 15, "${map:NAME(SOURCE)}")]
    [InlineData("  free: {}\nplan: { from: \"${map:tiers(consumerGroup)}\" }\nmaps: { tiers: { entries: { gold: pro } } }", "map 'tiers' can yield 'pro', which is not a plan", 11, 15, "define plans.pro")]
    public void Mistakes_are_refused_at_their_position_with_a_hint(string plans, string message, int line, int column, string hint)
    {
        var result = Build(Head + plans + Routes);
        var error = ErrorContaining(result, message);
        AssertAt(error, line, column);
        Assert.Contains(hint, error.Hint ?? "", StringComparison.Ordinal);
    }

    [Fact]
    public void A_route_pattern_that_matches_nothing_and_a_plan_selection_without_plans_warn()
    {
        var result = Build(Head + "  free: { routes: [\"billing-*\"] }" + Routes);
        Assert.True(result.Succeeded, Dump(result));
        Assert.Contains(result.Diagnostics, d => d.Message.Contains("route pattern 'billing-*' matches no route", StringComparison.Ordinal));

        result = Build(Head.Replace("plans:\n", "plan: { from: consumerGroup }\n", StringComparison.Ordinal) + Routes);
        Assert.True(result.Succeeded, Dump(result));
        Assert.Contains(result.Diagnostics, d => d.Message.Contains("plan has no effect without plans", StringComparison.Ordinal));
    }
}
