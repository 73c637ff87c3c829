using System.Globalization;
using System.Text;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Http;
using Portcullis.Configuration;
using Yarp.ReverseProxy.Model;
using Portcullis.Routing;
using Portcullis.Pipeline;

namespace Portcullis.Traffic;

/// <summary>
/// Traffic control after identity (so limits can key on the consumer): the route's rate limits in order
/// (every one must admit), then its concurrency limit, then its quota — so a quota does not count
/// requests refused by a rate or route concurrency limit (a cluster concurrency limit, checked once the
/// cluster is chosen, comes after the quota). Refusals are 429 (limits, quotas) or 503 (concurrency, a fail-closed store that cannot
/// answer) with Retry-After, RateLimit-Policy / RateLimit headers (draft-ietf-httpapi-ratelimit-headers)
/// and a problem+json body; admitted responses carry the headers too. Routes without traffic control
/// pass straight through.
/// </summary>
internal sealed class TrafficMiddleware(RequestDelegate next, TrafficStores stores, TimeProvider time)
{
    public Task InvokeAsync(HttpContext context)
    {
        var gateway = context.Features.Get<GatewayFeature>();
        if (gateway?.ResolveRoute(context) is not { } route) return next(context);
        gateway.TrafficReached = true;
        if (!route.HasTrafficControl) return next(context);
        return ApplyAsync(context, gateway, route);
    }

    private async Task ApplyAsync(HttpContext context, GatewayFeature gateway, CompiledRoute route)
    {
        gateway.Times.TrafficStart = System.Diagnostics.Stopwatch.GetTimestamp(); // a refusal counts until the response completes
        StringBuilder? policyHeader = null;
        StringBuilder? stateHeader = null;
        CompiledPlan? plan = null;
        if (route.Plans is { } plans)
        {
            // The plan is chosen first: a caller without one, or whose plan leaves this route out, is refused before anything is counted.
            var chosen = plans.Select(context.Request);
            if (chosen is null)
            {
                await RefusePlanAsync(context, gateway, ReasonCodes.PlanNone, "No plan", NoPlanDetail, null);
                return;
            }

            gateway.Plan = chosen.Name;
            if (!chosen.Included)
            {
                await RefusePlanAsync(context, gateway, ReasonCodes.PlanRouteNotIncluded, "Not included in your plan", chosen.Plan.RouteNotIncludedDetail, chosen.Name);
                return;
            }

            plan = chosen.Plan;
        }

        // The route's own limits first, then the plan's (in addition, counted per plan): every one must admit.
        for (var set = 0; set < 2; set++)
        {
            foreach (var policy in set == 0 ? route.RateLimits : plan?.RateLimits ?? [])
            {
                var key = policy.Key.Build(context, gateway, out var missing);
                if (missing != 0) NoteMissing(gateway, policy, missing);
                var store = stores.For(policy.Store);
                var decision = store is null ? RateDecision.Unavailable(policy.Limit) : await store.RateAsync(policy, key, context.RequestAborted);
                // Redis cannot answer: this instance enforces its share of the limit in-process.
                if (policy.OnStoreFailure == StoreFailureMode.Local && policy.Store == TrafficStore.Redis)
                {
                    // The share also counts what Redis admitted here, so an outage (or a few late answers on a
                    // busy machine) adds to this instance's own admissions only up to its share, not on top of them.
                    if (decision.Outcome == RateOutcome.StoreUnavailable) decision = Fallback(stores.Fallback.Rate(policy.Share, key));
                    else if (decision.Outcome == RateOutcome.Allowed) stores.Fallback.Rate(policy.Share, key);
            }
            var check = new Check(TrafficCodes.RateLimit, policy.Name, policy.OnStoreFailure, policy.PolicyHeaderItem, policy.Headers,
                "Too many requests", policy.UnavailableDetail, policy.LimitedDetailPrefix, null, gateway.Plan);
            if (!await AdmitAsync(context, gateway, check, decision, ref policyHeader, ref stateHeader)) return;
            }
        }

        RateLimitLease? lease = null;
        if (route.Concurrency is { } gate)
        {
            var entry = await gate.EnterAsync(stores, time, context.RequestAborted);
            if (entry.Lease is null)
            {
                await RefuseConcurrencyAsync(context, gateway, gate, entry);
                return;
            }

            lease = entry.Lease;
            if (entry.Result != TrafficResult.None) gateway.Traffic = new TrafficDecision(entry.Result, entry.Reason, gate.Scope);
        }

        try
        {
            for (var set = 0; set < 2; set++)
            {
                if ((set == 0 ? route.Quota : plan?.Quota) is not { } quota) continue;
                var window = quota.WindowAt(time.GetUtcNow());
                var key = quota.Key.Build(context, gateway);
                var store = stores.For(quota.Store);
                var decision = store is null ? RateDecision.Unavailable(quota.Limit) : await store.QuotaAsync(quota, key, window, context.RequestAborted);
                if (quota.OnStoreFailure == StoreFailureMode.Local && quota.Store == TrafficStore.Redis)
                {
                    if (decision.Outcome == RateOutcome.StoreUnavailable) decision = Fallback(await stores.Fallback.QuotaAsync(quota.Share, key, window, context.RequestAborted));
                    else if (decision.Outcome == RateOutcome.Allowed) await stores.Fallback.QuotaAsync(quota.Share, key, window, context.RequestAborted);
                }
                var check = new Check(TrafficCodes.Quota, quota.Name, quota.OnStoreFailure, quota.PolicyHeaderItem(window), true,
                    "Quota exhausted", quota.UnavailableDetail, quota.LimitedDetailPrefix, window.End, gateway.Plan);
                if (!await AdmitAsync(context, gateway, check, decision, ref policyHeader, ref stateHeader)) return;
            }

            if (gateway.Traffic.Result == TrafficResult.None) gateway.Traffic = new TrafficDecision(TrafficResult.Admitted, ReasonCodes.Admitted, null);
            gateway.Times.TrafficEnd = System.Diagnostics.Stopwatch.GetTimestamp();
            if (policyHeader is not null)
            {
                var headers = context.Response.Headers;
                headers["RateLimit-Policy"] = policyHeader.ToString();
                headers["RateLimit"] = stateHeader!.ToString();
            }

            await next(context);
        }
        finally
        {
            lease?.Dispose();
        }
    }

    /// <summary>The reason codes of one kind of check (rate limit or quota).</summary>
    private sealed record TrafficCodes(string Name, ReasonCode Exceeded, ReasonCode StoreUnavailable, ReasonCode StoreUnavailableOpen, ReasonCode StoreUnavailableLocal, ReasonCode StoreUnavailableLocalExceeded)
    {
        public static readonly TrafficCodes RateLimit = new("Rate limit", ReasonCodes.RateLimitExceeded, ReasonCodes.RateLimitStoreUnavailable,
            ReasonCodes.RateLimitStoreUnavailableOpen, ReasonCodes.RateLimitStoreUnavailableLocal, ReasonCodes.RateLimitStoreUnavailableLocalExceeded);

        public static readonly TrafficCodes Quota = new("Quota", ReasonCodes.QuotaExceeded, ReasonCodes.QuotaStoreUnavailable,
            ReasonCodes.QuotaStoreUnavailableOpen, ReasonCodes.QuotaStoreUnavailableLocal, ReasonCodes.QuotaStoreUnavailableLocalExceeded);
    }

    /// <summary>What a rate limit or quota check needs to explain its decision (the texts come precomputed with the policy).</summary>
    private readonly record struct Check(TrafficCodes Kind, string Name, StoreFailureMode OnStoreFailure, string PolicyHeaderItem, bool Headers, string Title, string UnavailableDetail, string LimitedDetailPrefix, DateTimeOffset? RenewsAt, string? Plan);

    // Applies one decision: refuses (429, or 503 for a fail-closed store that cannot answer) and returns
    // false, or records the admitted state for the response headers and returns true.
    private static ValueTask<bool> AdmitAsync(HttpContext context, GatewayFeature gateway, Check check, RateDecision decision, ref StringBuilder? policyHeader, ref StringBuilder? stateHeader)
    {
        switch (decision.Outcome)
        {
            case RateOutcome.StoreUnavailable when check.OnStoreFailure == StoreFailureMode.Closed:
                return Refused(RefuseUnavailableAsync(context, gateway, check.Kind.StoreUnavailable, check.Name, check.UnavailableDetail));
            case RateOutcome.StoreUnavailable:
                gateway.Traffic = new TrafficDecision(TrafficResult.FailOpen, check.Kind.StoreUnavailableOpen, gateway.Traffic.Policy ?? check.Name);
                return ValueTask.FromResult(true);
            case RateOutcome.FallbackAllowed:
                gateway.Traffic = new TrafficDecision(TrafficResult.FallbackAdmitted, check.Kind.StoreUnavailableLocal, gateway.Traffic.Policy ?? check.Name);
                if (check.Headers) Append(ref policyHeader, ref stateHeader, check.PolicyHeaderItem, StateItem(check.Name, decision));
                return ValueTask.FromResult(true);
            case RateOutcome.Limited or RateOutcome.FallbackLimited:
                var reason = check.Kind.Exceeded;
                // The client sees the usual refusal; the access log and metrics tell it was the local share.
                gateway.Traffic = decision.Outcome == RateOutcome.FallbackLimited
                    ? new TrafficDecision(TrafficResult.FallbackRefused, check.Kind.StoreUnavailableLocalExceeded, check.Name)
                    : new TrafficDecision(TrafficResult.Refused, reason, check.Name);
                gateway.Refusal = reason;
                var headers = context.Response.Headers;
                headers.RetryAfter = Seconds(decision.RetryAfter);
                headers["RateLimit-Policy"] = check.PolicyHeaderItem;
                headers["RateLimit"] = StateItem(check.Name, decision);
                var detail = check.RenewsAt is { } renewsAt
                    ? string.Concat(check.LimitedDetailPrefix, "it renews at ", renewsAt.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture), ".")
                    : string.Concat(check.LimitedDetailPrefix, "retry after ", Seconds(decision.RetryAfter), " s.");
                return Refused(ProblemWriter.WriteAsync(context, StatusCodes.Status429TooManyRequests, check.Title, detail, reason, check.Plan));
            default:
                if (check.Headers) Append(ref policyHeader, ref stateHeader, check.PolicyHeaderItem, StateItem(check.Name, decision));
                return ValueTask.FromResult(true);
        }

        static async ValueTask<bool> Refused(Task answer)
        {
            await answer;
            return false;
        }
    }

    // Which key parts the request lacked (the advisor's ratelimit.key-absent): a precomputed label per part, joined only when several are missing.
    private static void NoteMissing(GatewayFeature gateway, CompiledRateLimit policy, int missing)
    {
        var labels = policy.MissingLabels;
        for (var i = 0; i < labels.Length && i < 32; i++)
        {
            if ((missing & (1 << i)) == 0) continue;
            gateway.RateKeyMissing = gateway.RateKeyMissing is { } earlier ? earlier + ", " + labels[i] : labels[i];
        }
    }

    // Marks a decision of the local share so the log and metrics can tell it from Redis's.
    private static RateDecision Fallback(RateDecision decision) => decision with
    {
        Outcome = decision.Outcome == RateOutcome.Allowed ? RateOutcome.FallbackAllowed : RateOutcome.FallbackLimited,
    };

    private const string NoPlanDetail = "Your credentials carry no plan that allows this API.";

    // 403: the caller's plan (or the lack of one) does not allow the route; nothing was counted.
    private static Task RefusePlanAsync(HttpContext context, GatewayFeature gateway, ReasonCode reason, string title, string detail, string? plan)
    {
        gateway.Traffic = new TrafficDecision(TrafficResult.Refused, reason, plan);
        gateway.Refusal = reason;
        return ProblemWriter.WriteAsync(context, StatusCodes.Status403Forbidden, title, detail, reason.Code, plan);
    }

    internal static Task RefuseConcurrencyAsync(HttpContext context, GatewayFeature gateway, ConcurrencyGate gate, ConcurrencyEntry entry)
    {
        if (entry.Result == TrafficResult.StoreUnavailableRefused)
        {
            return RefuseUnavailableAsync(context, gateway, ReasonCodes.ConcurrencyStoreUnavailable, gate.Scope,
                "The shared concurrency limit's store cannot answer right now and it is configured to refuse meanwhile.");
        }

        // The client sees the usual refusal; the access log and metrics tell when it was the local share.
        gateway.Traffic = new TrafficDecision(entry.Result, entry.Reason, gate.Scope);
        gateway.Refusal = ReasonCodes.ConcurrencyLimit;
        context.Response.Headers.RetryAfter = gate.RetryAfterSeconds;
        return ProblemWriter.WriteAsync(context, StatusCodes.Status503ServiceUnavailable, "Too many requests in flight", gate.RefusalDetail, ReasonCodes.ConcurrencyLimit);
    }

    private static Task RefuseUnavailableAsync(HttpContext context, GatewayFeature gateway, ReasonCode reason, string policy, string detail)
    {
        gateway.Traffic = new TrafficDecision(TrafficResult.StoreUnavailableRefused, reason, policy);
        gateway.Refusal = reason;
        var retry = gateway.Snapshot.Config.Stores.Redis?.RetryAfter ?? TimeSpan.FromSeconds(1);
        context.Response.Headers.RetryAfter = Seconds(retry);
        return ProblemWriter.WriteAsync(context, StatusCodes.Status503ServiceUnavailable, "Limit store unavailable", detail, reason);
    }

    private static void Append(ref StringBuilder? policies, ref StringBuilder? states, string policy, string state)
    {
        if (policies is null)
        {
            policies = new StringBuilder(policy);
            states = new StringBuilder(state);
            return;
        }

        policies.Append(", ").Append(policy);
        states!.Append(", ").Append(state);
    }

    // "name";r=REMAINING;t=SECONDS-UNTIL-RESET
    private static string StateItem(string name, RateDecision decision) =>
        string.Create(CultureInfo.InvariantCulture, $"\"{name}\";r={decision.Remaining};t={Seconds(decision.Reset)}");

    // Whole seconds, rounded up, at least 1 when anything remains (Retry-After: 0 would invite a hot loop).
    internal static string Seconds(TimeSpan span) =>
        (span <= TimeSpan.Zero ? 0 : Math.Max(1, (long)Math.Ceiling(span.TotalSeconds))).ToString(CultureInfo.InvariantCulture);
}

/// <summary>
/// Cluster concurrency limits, inside YARP's pipeline once the cluster is known (it can be chosen per
/// request by a map): all routes to a cluster share its in-flight limit.
/// </summary>
internal sealed class ClusterConcurrencyMiddleware(RequestDelegate next, TrafficStores stores, TimeProvider time)
{
    public Task InvokeAsync(HttpContext context)
    {
        var gateway = context.Features.Get<GatewayFeature>();
        var clusterId = gateway?.ClusterName ?? context.Features.Get<IReverseProxyFeature>()?.Cluster.Config.ClusterId;
        if (gateway is null || clusterId is null || gateway.Snapshot.ClusterGates.GetValueOrDefault(clusterId) is not { } gate) return next(context);
        return EnterAsync(context, gateway, gate);
    }

    private async Task EnterAsync(HttpContext context, GatewayFeature gateway, ConcurrencyGate gate)
    {
        var entry = await gate.EnterAsync(stores, time, context.RequestAborted);
        if (entry.Lease is null)
        {
            await TrafficMiddleware.RefuseConcurrencyAsync(context, gateway, gate, entry);
            return;
        }

        // Released however the request ends (client gone, upstream failed): the lease's Dispose gives the slot back.
        using var lease = entry.Lease;
        if (entry.Result != TrafficResult.None) gateway.Traffic = new TrafficDecision(entry.Result, entry.Reason, gate.Scope);
        await next(context);
    }
}
