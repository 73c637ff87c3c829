using System.ComponentModel;

namespace Portcullis.Configuration;

/// <summary>One plan (API product, Apigee-style; a consumer-group tier, Kong-style): the limits its callers get on top of a route's own.</summary>
internal sealed record PlanOptions
{
    [Description("Names of rate-limit policies (under rateLimits) this plan's callers are held to on every route the plan covers, in addition to the route's own rateLimits. Counted per plan: two plans naming the same policy never share a counter.")]
    public IReadOnlyList<string> RateLimits { get; init; } = [];

    [Description("Name of a quota (under quotas) this plan's callers count against, in addition to the route's own quota; counted per plan.")]
    public string? Quota { get; init; }

    [Description("Route names this plan may call; `*` matches any run of characters (e.g. orders-*). Omitted: every route. A caller whose plan does not include the route gets 403 (plan.route-not-included).")]
    public IReadOnlyList<string>? Routes { get; init; }
}

/// <summary>How the gateway chooses a request's plan.</summary>
internal sealed record PlanSelectionOptions
{
    [Description("Where the plan name comes from: consumerGroup (default; the API key file's group or the mapped group claim), claim:NAME, consumer, header:NAME, or a lookup \"${map:NAME(SOURCE)}\" whose value is the plan name.")]
    public string From { get; init; } = "consumerGroup";

    [Description("Plan for callers whose source is missing or names no plan (e.g. anonymous callers). Without it such callers are refused with 403 (plan.none) on routes plans apply to.")]
    public string? Default { get; init; }
}
