using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Portcullis.Configuration;
using Portcullis.Pipeline;
using Portcullis.Traffic;

namespace Portcullis.Admin;

/// <summary>
/// The admin API's traffic views: stores, rate limits, quotas and concurrency limiters as they are now
/// (GET /admin/traffic, plans' copies included), and one key's use of a quota (GET /admin/quotas/{quota}?key=…,
/// a plan's copy as {quota}@{plan}).
/// </summary>
internal sealed class AdminTrafficApi(SnapshotStore store, TrafficStores traffic, TimeProvider time)
{
    // Stores, policies and concurrency limiters as they are now.
    public Task Traffic(HttpContext context)
    {
        var snapshot = store.Current;
        return AdminApi.Json(context, 200, w =>
        {
            w.WriteNumber("generation", snapshot.Generation);
            w.WriteStartObject("stores");
            w.WriteStartObject("local");
            w.WriteNumber("keysPerPolicy", LocalCounterStore.KeysPerPolicy);
            w.WriteEndObject();
            if (traffic.Redis is { } redis)
            {
                w.WritePropertyName("redis");
                AdminApi.WriteStoreHealth(w, redis.Health);
            }

            w.WriteEndObject();
            WriteRateLimits(w, snapshot);
            WriteQuotas(w, snapshot, time.GetUtcNow());
            WriteConcurrency(w, snapshot);
        });
    }

    private void WriteRateLimits(Utf8JsonWriter w, GatewaySnapshot snapshot)
    {
            w.WriteStartArray("rateLimits");
            // The named policies, then each plan's copies (counted apart as "policy@plan").
            var planCopies = snapshot.Plans?.Plans.OrderBy(p => p.Key, StringComparer.Ordinal).SelectMany(p => p.Value.RateLimits) ?? [];
            foreach (var policy in snapshot.RateLimits.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => p.Value).Concat(planCopies))
            {
                w.WriteStartObject();
                w.WriteString("name", policy.Name);
                WritePlan(w, policy.Plan, policy.Counter);
                w.WriteString("algorithm", JsonNamingPolicy.CamelCase.ConvertName(policy.Algorithm.ToString()));
                w.WriteNumber("limit", policy.Limit);
                w.WriteString("per", DurationFormat.Format(policy.Per));
                w.WriteNumber("capacity", policy.Capacity);
                w.WriteString("key", policy.Key.ToString());
                w.WriteString("store", policy.Store == TrafficStore.Redis ? "redis" : "local");
                if (policy.Store == TrafficStore.Redis)
                {
                    w.WriteString("mode", policy.Mode == RedisCountingMode.Approximate ? "approximate" : "strict");
                    w.WriteString("onStoreFailure", policy.OnStoreFailure.ToString().ToLowerInvariant());
                    WriteBreaker(w, policy.OnStoreFailure, policy.Share.Limit);
                }

                w.WriteEndObject();
            }

            w.WriteEndArray();
    }

    private void WriteQuotas(Utf8JsonWriter w, GatewaySnapshot snapshot, DateTimeOffset now)
    {
            w.WriteStartArray("quotas");
            // The named quotas, then each plan's copy (counted apart as "quota@plan").
            var planCopies = snapshot.Plans?.Plans.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => p.Value.Quota).OfType<CompiledQuota>() ?? [];
            foreach (var quota in snapshot.Quotas.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => p.Value).Concat(planCopies))
            {
                var window = quota.WindowAt(now);
                w.WriteStartObject();
                w.WriteString("name", quota.Name);
                WritePlan(w, quota.Plan, quota.Counter);
                w.WriteNumber("limit", quota.Limit);
                w.WriteString("period", JsonNamingPolicy.CamelCase.ConvertName(quota.Period.ToString()));
                w.WriteString("timeZone", quota.Zone.Id);
                w.WriteString("window", window.Id);
                w.WriteString("renewsAt", window.End);
                w.WriteString("store", quota.Store == TrafficStore.Redis ? "redis" : "local");
                if (quota.Store == TrafficStore.Redis)
                {
                    w.WriteString("onStoreFailure", quota.OnStoreFailure.ToString().ToLowerInvariant());
                    WriteBreaker(w, quota.OnStoreFailure, quota.Share.Limit);
                }

                w.WriteEndObject();
            }

            w.WriteEndArray();
    }

    private void WriteConcurrency(Utf8JsonWriter w, GatewaySnapshot snapshot)
    {
            w.WriteStartArray("concurrency");
            var gates = snapshot.Routes.Values.Select(r => r.Concurrency).Concat(snapshot.Clusters.Values.Select(c => c.Concurrency));
            foreach (var gate in gates.OfType<Traffic.ConcurrencyGate>().OrderBy(g => g.Scope, StringComparer.Ordinal))
            {
                var statistics = gate.Limiter.GetStatistics();
                w.WriteStartObject();
                w.WriteString("scope", gate.Scope);
                w.WriteNumber("max", gate.Options.Max);
                w.WriteNumber("queue", gate.Options.Queue);
                w.WriteNumber("queued", statistics?.CurrentQueuedCount ?? 0);
                if (gate.Shared)
                {
                    // The fleet's count is in Redis; what this instance shows is its own share of it.
                    w.WriteString("store", "redis");
                    w.WriteNumber("leaseTtlSeconds", gate.Options.LeaseTtl.TotalSeconds);
                    w.WriteString("onStoreFailure", gate.Options.OnStoreFailure.ToString().ToLowerInvariant());
                    WriteBreaker(w, gate.Options.OnStoreFailure, gate.LocalShare);
                    if (gate.Options.OnStoreFailure == StoreFailureMode.Local) w.WriteNumber("localShareInFlight", gate.LocalShare - (statistics?.CurrentAvailablePermits ?? gate.LocalShare));
                }
                else
                {
                    w.WriteString("store", "local");
                    w.WriteNumber("inFlight", gate.Options.Max - (statistics?.CurrentAvailablePermits ?? gate.Options.Max));
                    w.WriteNumber("refused", statistics?.TotalFailedLeases ?? 0);
                }
                w.WriteEndObject();
            }

            w.WriteEndArray();
    }

    // A plan's copy of a policy: the plan, and the counter name it is kept under (what /admin/quotas/{quota} takes).
    private static void WritePlan(Utf8JsonWriter w, string? plan, string counter)
    {
        if (plan is null) return;
        w.WriteString("plan", plan);
        w.WriteString("counter", counter);
    }

    // The Redis breaker as this policy sees it (closed: Redis decides; open: onStoreFailure decides) and,
    // for onStoreFailure: local, the share of the limit this instance enforces meanwhile.
    private void WriteBreaker(Utf8JsonWriter w, StoreFailureMode mode, long share)
    {
        w.WriteString("breaker", traffic.Redis?.Health.State == State.StoreState.Up ? "closed" : "open");
        if (mode == StoreFailureMode.Local) w.WriteNumber("localShare", share);
    }

    // How much of a quota a key has used in the current window. A plan's copy is addressed by its counter
    // name, "quota@plan" (as /admin/traffic lists it and Redis keys it); a quota whose own name has an '@' wins.
    public async Task Quota(HttpContext context, string name)
    {
        var snapshot = store.Current;
        if (!snapshot.Quotas.TryGetValue(name, out var quota))
        {
            var at = name.LastIndexOf('@');
            if (at < 0)
            {
                await ProblemWriter.WriteAsync(context, 404, "Unknown quota", $"No quota is named '{name}'.", ReasonCodes.AdminQuotaUnknown);
                return;
            }

            var (quotaName, planName) = (name[..at], name[(at + 1)..]);
            if (snapshot.Plans?.Plans.GetValueOrDefault(planName) is not { } plan)
            {
                await ProblemWriter.WriteAsync(context, 404, "Unknown plan", $"No plan is named '{planName}'.", ReasonCodes.AdminPlanUnknown);
                return;
            }

            if (plan.Quota is not { } planQuota || !string.Equals(planQuota.Name, quotaName, StringComparison.Ordinal))
            {
                var counts = plan.Quota is { } other ? $"counts quota '{other.Name}' (address it as '{other.Counter}')" : "has no quota";
                await ProblemWriter.WriteAsync(context, 404, "Unknown quota", $"Plan '{planName}' {counts}, not '{quotaName}'.", ReasonCodes.AdminQuotaUnknown);
                return;
            }

            quota = planQuota;
        }

        var key = context.Request.Query["key"].ToString();
        if (key.Length == 0)
        {
            await ProblemWriter.WriteAsync(context, 400, "Key required", "Name the counted key, e.g. ?key=CONSUMER (several key parts joined with U+001F).", ReasonCodes.AdminQuotaKeyMissing);
            return;
        }

        var window = quota.WindowAt(time.GetUtcNow());
        var counterStore = traffic.For(quota.Store);
        var used = counterStore is null ? null : await counterStore.QuotaUsedAsync(quota, key, window, context.RequestAborted);
        if (used is null)
        {
            await ProblemWriter.WriteAsync(context, 503, "Store unavailable", "The quota's store cannot answer right now.", ReasonCodes.AdminStoreUnavailable);
            return;
        }

        await AdminApi.Json(context, 200, w =>
        {
            w.WriteString("quota", quota.Name);
            if (quota.Plan is not null) w.WriteString("plan", quota.Plan);
            w.WriteString("key", key);
            w.WriteString("window", window.Id);
            w.WriteString("windowStart", window.Start);
            w.WriteString("renewsAt", window.End);
            w.WriteNumber("limit", quota.Limit);
            w.WriteNumber("used", used.Value);
            w.WriteNumber("remaining", Math.Max(0, quota.Limit - used.Value));
        });
    }
}
