using System.Collections.Frozen;
using Microsoft.AspNetCore.Http;
using Portcullis.Pipeline;
using Portcullis.Routing;

namespace Portcullis.Traffic;

/// <summary>
/// One plan, compiled once per snapshot: its own copies of the named rate limits and quota (counted as
/// "name@plan", so two plans never share a bucket) and the texts of its refusals.
/// </summary>
internal sealed class CompiledPlan
{
    public CompiledPlan(string name, CompiledRateLimit[] rateLimits, CompiledQuota? quota)
    {
        Name = name;
        RateLimits = rateLimits;
        Quota = quota;
        RouteNotIncludedDetail = $"Your plan '{name}' does not include this route.";
    }

    public string Name { get; }

    public CompiledRateLimit[] RateLimits { get; }

    public CompiledQuota? Quota { get; }

    /// <summary>The 403's detail, built once per plan rather than per refusal.</summary>
    public string RouteNotIncludedDetail { get; }
}

/// <summary>A plan as seen from one route: whether the plan may call it.</summary>
internal sealed class RoutePlan(CompiledPlan plan, bool included)
{
    public CompiledPlan Plan { get; } = plan;

    public string Name => Plan.Name;

    public bool Included { get; } = included;
}

/// <summary>
/// Where the plan name is read: a request source (consumerGroup, claim:NAME, …) looked up directly, or
/// through a map whose values are plan names (the first present source is looked up, as ${map:…} does).
/// </summary>
internal sealed class PlanSelector(RequestSource[] sources, CompiledMap? map, string text)
{
    public RequestSource[] Sources { get; } = sources;

    public CompiledMap? Map { get; } = map;

    public string Text { get; } = text;
}

/// <summary>
/// The plans of one route, frozen per snapshot: plan name → (plan, included). Choosing a request's plan
/// reads the source as a span and looks it up without allocating.
/// </summary>
internal sealed class RoutePlans
{
    private readonly PlanSelector _selector;
    private readonly FrozenDictionary<string, RoutePlan> _plans;
    private readonly FrozenDictionary<string, RoutePlan>.AlternateLookup<ReadOnlySpan<char>> _bySpan;
    private readonly RoutePlan? _default;

    public RoutePlans(PlanSelector selector, FrozenDictionary<string, RoutePlan> plans, string? defaultPlan)
    {
        _selector = selector;
        _plans = plans;
        _bySpan = plans.GetAlternateLookup<ReadOnlySpan<char>>();
        _default = defaultPlan is null ? null : plans.GetValueOrDefault(defaultPlan);
    }

    /// <summary>The request's plan: the one its source names, else the default; null when neither applies.</summary>
    public RoutePlan? Select(HttpRequest request)
    {
        if (_selector.Map is { } map)
        {
            string? name = null;
            var looked = false;
            foreach (var source in _selector.Sources)
            {
                var key = source.Read(request);
                if (key.IsEmpty) continue;
                name = map.Lookup(key);
                looked = true;
                break;
            }

            if (!looked) name = map.Default;
            return name is not null && _plans.TryGetValue(name, out var mapped) ? mapped : _default;
        }

        foreach (var source in _selector.Sources)
        {
            var value = source.Read(request);
            if (value.IsEmpty) continue;
            return _bySpan.TryGetValue(value, out var plan) ? plan : _default;
        }

        return _default;
    }
}

/// <summary>Every plan of a snapshot, the selector, and which routes each plan includes.</summary>
internal sealed class CompiledPlans(PlanSelector selector, FrozenDictionary<string, CompiledPlan> plans, string? defaultPlan, Func<string, string, bool> includes)
{
    public PlanSelector Selector { get; } = selector;

    public FrozenDictionary<string, CompiledPlan> Plans { get; } = plans;

    public string? Default { get; } = defaultPlan;

    /// <summary>Every plan's copy of a rate limit (bound to counters by the stores like the named policies).</summary>
    public IEnumerable<CompiledRateLimit> RateLimits => Plans.Values.SelectMany(p => p.RateLimits);

    public IEnumerable<CompiledQuota> Quotas => Plans.Values.Select(p => p.Quota).OfType<CompiledQuota>();

    /// <summary>The frozen lookup one route uses (compiled once per route and snapshot).</summary>
    public RoutePlans ForRoute(string route) => new(
        Selector,
        Plans.ToFrozenDictionary(p => p.Key, p => new RoutePlan(p.Value, includes(p.Key, route)), StringComparer.Ordinal),
        Default);
}
