using System.Globalization;
using Microsoft.AspNetCore.Http;
using Portcullis.Configuration;
using Portcullis.Routing;
using Portcullis.Pipeline;

namespace Portcullis.Traffic;

/// <summary>A rate-limit policy compiled for the request path: algorithm constants in ticks, header text precomputed.</summary>
internal sealed class CompiledRateLimit
{
    public required string Name { get; init; }

    private readonly string? _counter;

    /// <summary>What the counters are named by (store keys, state kept across reloads): the policy's name, or "name@plan" for a plan's copy, so plans never share a bucket.</summary>
    public string Counter { get => _counter ?? Name; init => _counter = value; }

    /// <summary>The plan this copy of the policy belongs to; null for the route's own policies.</summary>
    public string? Plan { get; init; }

    public required RateLimitAlgorithm Algorithm { get; init; }

    public required long Limit { get; init; }

    public required TimeSpan Per { get; init; }

    /// <summary>Requests admitted at once (token bucket capacity); 1 for spike arrest; `limit` for sliding windows.</summary>
    public required long Capacity { get; init; }

    public required TrafficStore Store { get; init; }

    public RedisCountingMode Mode { get; init; }

    public TimeSpan SyncEvery { get; init; }

    public StoreFailureMode OnStoreFailure { get; init; }

    public bool Headers { get; init; }

    public required TrafficKey Key { get; init; }

    /// <summary>stores.redis.instances: how many instances share this limit (for the local fallback share).</summary>
    public int Instances { get; init; } = 1;

    private CompiledRateLimit? _share;

    /// <summary>
    /// This instance's share, counted in-process while Redis cannot answer (onStoreFailure: local): limit and
    /// burst ÷ instances, rounded up (so the instances together admit at most limit + instances − 1).
    /// </summary>
    public CompiledRateLimit Share => _share ??= new CompiledRateLimit
    {
        Name = Name,
        Counter = Counter,
        Plan = Plan,
        Algorithm = Algorithm,
        Limit = ShareOf(Limit, Instances),
        Per = Per,
        Capacity = ShareOf(Capacity, Instances),
        Store = TrafficStore.Local,
        OnStoreFailure = OnStoreFailure,
        Headers = Headers,
        Key = Key,
        Instances = 1,
    };

    /// <summary>A plan's own copy (plans.NAME.rateLimits): the same settings and texts, its counters named "policy@plan" so tiers never share a bucket.</summary>
    public CompiledRateLimit ForPlan(string plan) => new()
    {
        Name = Name,
        Counter = Name + "@" + plan,
        Plan = plan,
        Algorithm = Algorithm,
        Limit = Limit,
        Per = Per,
        Capacity = Capacity,
        Store = Store,
        Mode = Mode,
        SyncEvery = SyncEvery,
        OnStoreFailure = OnStoreFailure,
        Headers = Headers,
        Key = Key,
        Instances = Instances,
    };

    /// <summary>limit ÷ instances, rounded up, at least 1.</summary>
    public static long ShareOf(long limit, int instances) => Math.Max(1, (limit + Math.Max(1, instances) - 1) / Math.Max(1, instances));

    /// <summary>Requests admitted at once: 1 for spike arrest (no bursts), `burst` (default `limit`) for a token bucket, `limit` for a sliding window.</summary>
    public static long CapacityFor(RateLimitAlgorithm algorithm, long limit, long? burst) => algorithm switch
    {
        RateLimitAlgorithm.SpikeArrest => 1,
        RateLimitAlgorithm.TokenBucket => burst ?? limit,
        _ => limit,
    };

    /// <summary>GCRA emission interval: the steady-state gap between two admitted requests, in ticks.</summary>
    public long EmissionTicks => Per.Ticks / Limit;

    private string? _identity;
    private string? _policyHeaderItem;

    /// <summary>A stable text of the settings that change counting, so state survives a reload only when they are equal.</summary>
    public string Identity => _identity ??= string.Create(CultureInfo.InvariantCulture, $"{Counter}|{Algorithm}|{Limit}|{Per.Ticks}|{Capacity}|{Store}|{Mode}");

    /// <summary>This policy's item of the RateLimit-Policy header, e.g. "per-consumer";q=100;w=1.</summary>
    public string PolicyHeaderItem => _policyHeaderItem ??= string.Create(CultureInfo.InvariantCulture, $"\"{Name}\";q={Limit};w={Math.Max(1, (long)Math.Ceiling(Per.TotalSeconds))}");

    private string? _unavailableDetail;
    private string? _limitedDetailPrefix;

    /// <summary>The refusal text when a fail-closed store cannot answer; built once per compiled policy, not per request.</summary>
    public string UnavailableDetail => _unavailableDetail ??= $"Rate limit '{Name}' cannot be checked right now.";

    /// <summary>The refusal text up to its retry time, e.g. "Rate limit 'x' allows 100 requests per 1m; ".</summary>
    public string LimitedDetailPrefix => _limitedDetailPrefix ??= $"Rate limit '{Name}' allows {Limit} requests per {DurationFormat.Format(Per)}; ";

    private string[]? _missingLabels;

    /// <summary>"policy part" per key part, e.g. "per-tenant header:X-Tenant": what a request that lacks the part records for the advisor.</summary>
    public string[] MissingLabels => _missingLabels ??= [.. Key.Parts.Select(part => $"{Name} {part}")];

    /// <summary>In-process counters, bound to this policy by the local store (survives reloads with equal settings).</summary>
    internal LocalRateCounters? LocalCounters { get; set; }
}

/// <summary>A calendar quota compiled for the request path.</summary>
internal sealed class CompiledQuota
{
    public required string Name { get; init; }

    private readonly string? _counter;

    /// <summary>What the counters are named by: the quota's name, or "name@plan" for a plan's copy.</summary>
    public string Counter { get => _counter ?? Name; init => _counter = value; }

    /// <summary>The plan this copy of the quota belongs to; null for the route's own quota.</summary>
    public string? Plan { get; init; }

    public required long Limit { get; init; }

    public required QuotaPeriod Period { get; init; }

    public required TimeZoneInfo Zone { get; init; }

    public required TrafficStore Store { get; init; }

    public StoreFailureMode OnStoreFailure { get; init; }

    public required TrafficKey Key { get; init; }

    /// <summary>stores.redis.instances: how many instances share this quota (for the local fallback share).</summary>
    public int Instances { get; init; } = 1;

    private CompiledQuota? _share;

    /// <summary>This instance's share of the quota, counted in-process while Redis cannot answer (onStoreFailure: local).</summary>
    public CompiledQuota Share => _share ??= new CompiledQuota
    {
        Name = Name,
        Counter = Counter,
        Plan = Plan,
        Limit = CompiledRateLimit.ShareOf(Limit, Instances),
        Period = Period,
        Zone = Zone,
        Store = TrafficStore.Local,
        OnStoreFailure = OnStoreFailure,
        Key = Key,
    };

    /// <summary>A plan's own copy (plans.NAME.quota), counted as "quota@plan".</summary>
    public CompiledQuota ForPlan(string plan) => new()
    {
        Name = Name,
        Counter = Name + "@" + plan,
        Plan = plan,
        Limit = Limit,
        Period = Period,
        Zone = Zone,
        Store = Store,
        OnStoreFailure = OnStoreFailure,
        Key = Key,
        Instances = Instances,
    };

    public string Identity => $"{Counter}|{Limit}|{Period}|{Zone.Id}|{Store}";

    public string PolicyHeaderItem(QuotaWindow window) => string.Create(CultureInfo.InvariantCulture, $"\"{Name}\";q={Limit};w={(long)Math.Ceiling((window.End - window.Start).TotalSeconds)}");

    internal LocalQuotaCounters? LocalCounters { get; set; }

    private string? _unavailableDetail;
    private string? _limitedDetailPrefix;

    /// <summary>The refusal text when a fail-closed store cannot answer; built once per compiled quota, not per request.</summary>
    public string UnavailableDetail => _unavailableDetail ??= $"Quota '{Name}' cannot be checked right now.";

    /// <summary>The refusal text up to its renewal time, e.g. "Quota 'x' allows 1000 requests per day; ".</summary>
    public string LimitedDetailPrefix => _limitedDetailPrefix ??= $"Quota '{Name}' allows {Limit} requests per {Period.ToString().ToLowerInvariant()}; ";

    /// <summary>The calendar period containing <paramref name="now"/> in the quota's time zone.</summary>
    public QuotaWindow WindowAt(DateTimeOffset now)
    {
        var local = TimeZoneInfo.ConvertTime(now, Zone);
        var date = local.DateTime;
        DateTime start;
        DateTime end;
        string id;
        int index;
        switch (Period)
        {
            case QuotaPeriod.Hour:
                start = new DateTime(date.Year, date.Month, date.Day, date.Hour, 0, 0, DateTimeKind.Unspecified);
                end = start.AddHours(1);
                id = start.ToString("yyyy-MM-dd'T'HH", CultureInfo.InvariantCulture);
                index = (int)(start.Ticks / TimeSpan.TicksPerHour);
                break;
            case QuotaPeriod.Week:
                var monday = date.Date.AddDays(-(((int)date.DayOfWeek + 6) % 7));
                start = monday;
                end = monday.AddDays(7);
                id = start.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture) + "/P1W";
                index = (int)(start.Ticks / TimeSpan.TicksPerDay / 7);
                break;
            case QuotaPeriod.Month:
                start = new DateTime(date.Year, date.Month, 1, 0, 0, 0, DateTimeKind.Unspecified);
                end = start.AddMonths(1);
                id = start.ToString("yyyy-MM", CultureInfo.InvariantCulture);
                index = (date.Year * 12) + date.Month;
                break;
            default:
                start = date.Date;
                end = start.AddDays(1);
                id = start.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture);
                index = (int)(start.Ticks / TimeSpan.TicksPerDay);
                break;
        }

        return new QuotaWindow(id, index, ToInstant(start), ToInstant(end));
    }

    // A local wall-clock time to the instant it names; a time skipped by a DST change moves forward an hour.
    private DateTimeOffset ToInstant(DateTime local)
    {
        if (Zone.IsInvalidTime(local)) local = local.AddHours(1);
        return new DateTimeOffset(local, Zone.GetUtcOffset(local));
    }
}

/// <summary>One calendar period of a quota: a stable id (used in store keys), a small index, and its bounds.</summary>
internal readonly record struct QuotaWindow(string Id, int Index, DateTimeOffset Start, DateTimeOffset End);

/// <summary>
/// What a policy counts separately, built from request parts. One part reuses the request's own string
/// (no allocation); several are joined with a separator no part can contain. A part missing on the request
/// is replaced by the client IP, so anonymous callers are still limited per address.
/// </summary>
internal sealed class TrafficKey
{
    private readonly RequestSource[] _parts;

    public TrafficKey(RequestSource[] parts) => _parts = parts;

    public IReadOnlyList<RequestSource> Parts => _parts;

    public override string ToString() => string.Join(", ", _parts);

    public string Build(HttpContext context, GatewayFeature gateway) => Build(context, gateway, out _);

    /// <param name="missing">Bit i set when part i was missing on the request (and replaced by the client IP).</param>
    public string Build(HttpContext context, GatewayFeature gateway, out int missing)
    {
        missing = 0;
        if (_parts.Length == 1)
        {
            var single = Single(context, gateway, _parts[0], out var absent);
            if (absent) missing = 1;
            return single;
        }

        var builder = new System.Text.StringBuilder();
        for (var i = 0; i < _parts.Length; i++)
        {
            if (i > 0) builder.Append('\u001f');
            builder.Append(Single(context, gateway, _parts[i], out var absent));
            if (absent && i < 32) missing |= 1 << i;
        }

        return builder.ToString();
    }

    private static string Single(HttpContext context, GatewayFeature gateway, RequestSource part, out bool missing)
    {
        missing = false;
        switch (part.Kind)
        {
            case RequestSourceKind.Consumer when gateway.Caller?.Consumer is { Length: > 0 } consumer:
                return Escape(consumer);
            case RequestSourceKind.ConsumerGroup when gateway.Caller?.ConsumerGroup is { Length: > 0 } group:
                return Escape(group);
            case RequestSourceKind.Route when gateway.RouteName is { } route:
                return route;
            case RequestSourceKind.ClientIp:
                return AddressPrefix + gateway.ClientAddress(context);
            case RequestSourceKind.Consumer or RequestSourceKind.ConsumerGroup or RequestSourceKind.Route:
                break;
            default:
                var value = part.Read(context.Request);
                if (!value.IsEmpty) return value.StartsWith(AddressPrefix, StringComparison.Ordinal) ? "=" + value.ToString() : value.ToString();
                break;
        }

        // Missing on this request: count per client address instead (documented fallback).
        missing = true;
        return AddressPrefix + gateway.ClientAddress(context);
    }

    private const string AddressPrefix = "ip:";

    // A value a client chooses (a header, say) must not land in the client-address namespace: "ip:…" from a
    // request would otherwise spend another address's fallback budget.
    private static string Escape(string value) => value.StartsWith(AddressPrefix, StringComparison.Ordinal) ? "=" + value : value;
}
