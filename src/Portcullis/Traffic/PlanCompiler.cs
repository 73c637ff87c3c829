using System.Collections.Frozen;
using System.Text.RegularExpressions;
using Portcullis.Configuration;
using Portcullis.Pipeline;
using Portcullis.Routing;

namespace Portcullis.Traffic;

/// <summary>Validation and compilation of `plans` and `plan` (how a request's plan is chosen).</summary>
internal static partial class PlanCompiler
{
    private const string FromHint = "use consumerGroup, claim:NAME, consumer, header:NAME or \"${map:NAME(consumerGroup)}\"";

    [GeneratedRegex(@"^[A-Za-z0-9_.-]+$")]
    private static partial Regex PlanName();

    [GeneratedRegex(@"^\$\{map:\s*([^\s()]+)\s*\(([^()]*)\)\s*\}$")]
    private static partial Regex MapLookup();

    /// <summary>Null when no plans are configured (routes then have none).</summary>
    internal static CompiledPlans? Compile(CompileContext context, TrafficPolicies traffic, IReadOnlyDictionary<string, CompiledMap> maps)
    {
        var config = context.Config;
        if (config.Plans.Count == 0)
        {
            if (context.Loaded.Locations.Has("plan")) context.Warning("plan", "plan has no effect without plans", "define plans: { free: { rateLimits: [...] } }, or remove plan");
            return null;
        }

        var routeNames = config.Routes.Select(r => r.Name).ToArray();
        var plans = new Dictionary<string, CompiledPlan>(StringComparer.Ordinal);
        var patterns = new Dictionary<string, Regex[]?>(StringComparer.Ordinal);
        foreach (var (name, options) in config.Plans)
        {
            var path = "plans." + name;
            if (!PlanName().IsMatch(name))
            {
                context.Error(path, $"plan name '{name}' has characters other than letters, digits, '_', '.' and '-'", "plan names appear in counter keys and problem bodies, e.g. free, pro, enterprise");
                continue;
            }

            var limits = new List<CompiledRateLimit>();
            for (var i = 0; i < options.RateLimits.Count; i++)
            {
                var limitName = options.RateLimits[i];
                if (traffic.RateLimits.TryGetValue(limitName, out var policy)) limits.Add(policy.ForPlan(name));
                else if (!config.RateLimits.ContainsKey(limitName)) Unknown(context, $"{path}.rateLimits[{i}]", $"plan '{name}' names unknown rate limit '{limitName}'", limitName, config.RateLimits.Keys, "define it under rateLimits:");
            }

            CompiledQuota? quota = null;
            if (options.Quota is { } quotaName)
            {
                if (traffic.Quotas.TryGetValue(quotaName, out var named)) quota = named.ForPlan(name);
                else if (!config.Quotas.ContainsKey(quotaName)) Unknown(context, path + ".quota", $"plan '{name}' names unknown quota '{quotaName}'", quotaName, config.Quotas.Keys, "define it under quotas:");
            }

            patterns[name] = CompileRoutes(context, path, options.Routes, routeNames);
            plans[name] = new CompiledPlan(name, [.. limits], quota);
        }

        var selector = CompileSelector(context, config.Plan.From, maps, config.Plans);
        var defaultPlan = config.Plan.Default;
        if (defaultPlan is not null && !config.Plans.ContainsKey(defaultPlan))
        {
            Unknown(context, "plan.default", $"default plan '{defaultPlan}' is not defined", defaultPlan, config.Plans.Keys, "define it under plans:, or remove default (callers without a plan are then refused)");
        }

        if (selector is null) return null;
        var frozen = plans.ToFrozenDictionary(StringComparer.Ordinal);
        return new CompiledPlans(selector, frozen, defaultPlan, (plan, route) => patterns.GetValueOrDefault(plan) is not { } allowed || allowed.Any(p => p.IsMatch(route)));
    }

    // Null: every route. Names without `*` must be routes (a typo would silently lock a plan out).
    private static Regex[]? CompileRoutes(CompileContext context, string path, IReadOnlyList<string>? routes, string[] routeNames)
    {
        if (routes is null) return null;
        var compiled = new List<Regex>();
        for (var i = 0; i < routes.Count; i++)
        {
            var pattern = routes[i];
            var regex = new Regex("^" + Regex.Escape(pattern).Replace("\\*", ".*", StringComparison.Ordinal) + "$", RegexOptions.CultureInvariant);
            compiled.Add(regex);
            if (routeNames.Any(regex.IsMatch)) continue;
            if (pattern.Contains('*', StringComparison.Ordinal)) context.Warning($"{path}.routes[{i}]", $"route pattern '{pattern}' matches no route", "check the pattern against the route names");
            else Unknown(context, $"{path}.routes[{i}]", $"plan names unknown route '{pattern}'", pattern, routeNames, "name a route under routes:, or use * for a pattern (e.g. orders-*)");
        }

        return [.. compiled];
    }

    private static PlanSelector? CompileSelector(CompileContext context, string from, IReadOnlyDictionary<string, CompiledMap> maps, IReadOnlyDictionary<string, PlanOptions> plans)
    {
        const string path = "plan.from";
        if (!from.StartsWith("${", StringComparison.Ordinal))
        {
            if (RequestSource.TryParse(from, out var source, out _)) return new PlanSelector([source], null, from);
            var suggestion = YamlConfigBinder.Suggest(from, ["consumerGroup", "consumer", "claim:"]);
            context.Error(path, $"unknown plan source '{from}'", suggestion is not null ? $"did you mean '{suggestion}'? ({FromHint})" : FromHint);
            return null;
        }

        var match = MapLookup().Match(from);
        if (!match.Success)
        {
            context.Error(path, $"malformed lookup '{from}'", "write \"${map:NAME(SOURCE)}\", e.g. \"${map:plans(consumerGroup)}\"");
            return null;
        }

        var sources = new List<RequestSource>();
        foreach (var text in match.Groups[2].Value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (!RequestSource.TryParse(text, out var source, out var error))
            {
                context.Error(path, error ?? $"unknown request source '{text}'", "sources are " + RequestSource.Syntax);
                return null;
            }

            sources.Add(source);
        }

        var mapName = match.Groups[1].Value;
        if (sources.Count == 0)
        {
            context.Error(path, $"lookup in map '{mapName}' names no request source", "e.g. \"${map:" + mapName + "(consumerGroup)}\"");
            return null;
        }

        if (!maps.TryGetValue(mapName, out var map))
        {
            // A map that failed to compile has reported its own error.
            if (!context.Config.Maps.ContainsKey(mapName)) Unknown(context, path, $"plan lookup names unknown map '{mapName}'", mapName, context.Config.Maps.Keys, "define it under maps:");
            return null;
        }

        // Every value the map can yield must be a plan: a typo would quietly hand callers the default plan.
        foreach (var value in map.Values.Where(v => !plans.ContainsKey(v)))
        {
            var suggestion = YamlConfigBinder.Suggest(value, plans.Keys);
            context.Error(path, $"map '{mapName}' can yield '{value}', which is not a plan", suggestion is not null ? $"did you mean '{suggestion}'? (fix the map, or define plans.{value})" : $"fix the map, or define plans.{value}");
        }

        return new PlanSelector([.. sources], map, from);
    }

    private static void Unknown(CompileContext context, string path, string message, string name, IEnumerable<string> candidates, string hint)
    {
        var suggestion = YamlConfigBinder.Suggest(name, candidates);
        context.Error(path, message, suggestion is not null ? $"did you mean '{suggestion}'?" : hint);
    }
}
