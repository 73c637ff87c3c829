using Portcullis.Configuration;
using Portcullis.Routing;
using Portcullis.Pipeline;

namespace Portcullis.Traffic;

/// <summary>Validation and compilation of rate limits, quotas, concurrency limits and stores.</summary>
internal static class TrafficCompiler
{
    private const string KeyHint = "use consumer, consumerGroup, ip, route, header:NAME, claim:NAME, query:NAME, host, method, path or segment:N";

    internal static TrafficPolicies Compile(CompileContext context, RedisStoreOptions? redis, IReadOnlyDictionary<string, RateLimitOptions> rateLimitOptions, IReadOnlyDictionary<string, QuotaOptions> quotaOptions)
    {
        var redisConfigured = !string.IsNullOrWhiteSpace(redis?.Connection);
        var instances = Math.Max(1, redis?.Instances ?? 1);
        if (redis is not null) ValidateRedis(context, redis);

        var rateLimits = new Dictionary<string, CompiledRateLimit>(StringComparer.Ordinal);
        foreach (var (name, options) in rateLimitOptions)
        {
            if (CompileRateLimit(context, name, options, redisConfigured, instances) is { } compiled) rateLimits[name] = compiled;
        }

        var quotas = new Dictionary<string, CompiledQuota>(StringComparer.Ordinal);
        foreach (var (name, options) in quotaOptions)
        {
            if (CompileQuota(context, name, options, redisConfigured, instances) is { } compiled) quotas[name] = compiled;
        }

        return new TrafficPolicies(rateLimits, quotas, redisConfigured);
    }

    private static void ValidateRedis(CompileContext context, RedisStoreOptions redis)
    {
        if (redis.Timeout <= TimeSpan.Zero) context.Error("stores.redis.timeout", "timeout must be greater than zero", "e.g. timeout: 100ms");
        if (redis.RetryAfter <= TimeSpan.Zero) context.Error("stores.redis.retryAfter", "retryAfter must be greater than zero", "e.g. retryAfter: 2s");
        if (redis.KeyPrefix.Contains('{') || redis.KeyPrefix.Contains('}')) context.Error("stores.redis.keyPrefix", "keyPrefix cannot contain { or } (they mark Redis Cluster hash tags)");
        if (redis.Instances < 1) context.Error("stores.redis.instances", $"instances must be at least 1 (it is {redis.Instances})", "the number of gateway instances sharing this Redis, e.g. instances: 3");
    }

    private static CompiledRateLimit? CompileRateLimit(CompileContext context, string name, RateLimitOptions options, bool redisConfigured, int instances)
    {
        var path = "rateLimits." + name;
        var ok = true;
        void Fail(string at, string message, string? hint = null)
        {
            context.Error(at, message, hint);
            ok = false;
        }

        if (options.Limit < 1) Fail(path + ".limit", $"limit must be at least 1 (it is {options.Limit})", "e.g. limit: 100");
        if (options.Per <= TimeSpan.Zero) Fail(path + ".per", "per must be greater than zero", "e.g. per: 1s");
        else if (options.Limit >= 1 && options.Per.Ticks / options.Limit < 10) Fail(path + ".limit", $"limit {options.Limit} per {options.Per} is finer than a microsecond per request", "count over a longer period, e.g. per: 1m");
        if (options.Burst is { } burst)
        {
            if (options.Algorithm != RateLimitAlgorithm.TokenBucket) Fail(path + ".burst", $"burst applies to the tokenBucket algorithm only (this policy is {options.Algorithm.ToString().ToLowerInvariant()})", options.Algorithm == RateLimitAlgorithm.SpikeArrest ? "spike arrest never bursts; use tokenBucket for bursts" : "remove burst");
            else if (burst < 1) Fail(path + ".burst", $"burst must be at least 1 (it is {burst})", "burst is how many requests may come at once");
        }

        if (options.Store == TrafficStore.Redis && !redisConfigured)
        {
            Fail(path + ".store", "store: redis needs a Redis connection, but stores.redis.connection is not set (or empty)", "add stores: { redis: { connection: \"127.0.0.1:6379\" } } or use store: local");
        }

        if (options.Mode == RedisCountingMode.Approximate)
        {
            if (options.Store != TrafficStore.Redis) Fail(path + ".mode", "mode: approximate applies to store: redis only", "local counting is always exact");
            if (options.Algorithm != RateLimitAlgorithm.SlidingWindow) Fail(path + ".mode", "mode: approximate works with algorithm: slidingWindow only", "set algorithm: slidingWindow, or use mode: strict");
            if (options.SyncEvery <= TimeSpan.Zero) Fail(path + ".syncEvery", "syncEvery must be greater than zero", "e.g. syncEvery: 100ms");
        }

        if (options.Algorithm == RateLimitAlgorithm.SlidingWindow && options.Store == TrafficStore.Local && options.Limit > LocalCounterStore.MaxSlidingWindowLimit)
        {
            Fail(path + ".limit", $"a local slidingWindow counts at most {LocalCounterStore.MaxSlidingWindowLimit} per window", "use algorithm: tokenBucket for higher rates");
        }

        if (options.Store == TrafficStore.Local && options.OnStoreFailure == StoreFailureMode.Closed && context.Loaded.Locations.Has(path + ".onStoreFailure"))
        {
            context.Warning(path + ".onStoreFailure", "onStoreFailure has no effect on a local policy (the in-process store always answers)", "remove it, or set store: redis");
        }

        var key = CompileKey(context, options.Key, path + ".key");
        if (!ok || key is null) return null;
        return new CompiledRateLimit
        {
            Name = name,
            Algorithm = options.Algorithm,
            Limit = options.Limit,
            Per = options.Per,
            Capacity = CompiledRateLimit.CapacityFor(options.Algorithm, options.Limit, options.Burst),
            Store = options.Store,
            Mode = options.Mode,
            SyncEvery = options.SyncEvery,
            OnStoreFailure = options.OnStoreFailure,
            Headers = options.Headers,
            Key = key,
            Instances = instances,
        };
    }

    private static CompiledQuota? CompileQuota(CompileContext context, string name, QuotaOptions options, bool redisConfigured, int instances)
    {
        var path = "quotas." + name;
        var ok = true;
        if (options.Limit < 1)
        {
            context.Error(path + ".limit", $"limit must be at least 1 (it is {options.Limit})", "e.g. limit: 10000");
            ok = false;
        }

        TimeZoneInfo? zone = null;
        try
        {
            zone = TimeZoneInfo.FindSystemTimeZoneById(options.TimeZone);
        }
        catch (Exception e) when (e is TimeZoneNotFoundException or InvalidTimeZoneException)
        {
            context.Error(path + ".timeZone", $"unknown time zone '{options.TimeZone}'", "use an IANA name such as UTC, Europe/Berlin or America/New_York");
            ok = false;
        }

        var store = options.Store ?? (redisConfigured ? TrafficStore.Redis : TrafficStore.Local);
        if (store == TrafficStore.Redis && !redisConfigured)
        {
            context.Error(path + ".store", "store: redis needs a Redis connection, but stores.redis.connection is not set (or empty)", "add stores: { redis: { connection: \"127.0.0.1:6379\" } } or use store: local");
            ok = false;
        }
        else if (store == TrafficStore.Local)
        {
            context.Warning(path, $"quota '{name}' is counted in-process: each instance counts separately and a restart forgets the count", "configure stores.redis to persist quotas");
        }

        var key = CompileKey(context, options.Key, path + ".key");
        if (!ok || key is null || zone is null) return null;
        return new CompiledQuota
        {
            Name = name,
            Limit = options.Limit,
            Period = options.Period,
            Zone = zone,
            Store = store,
            OnStoreFailure = options.OnStoreFailure,
            Key = key,
            Instances = instances,
        };
    }

    private static TrafficKey? CompileKey(CompileContext context, IReadOnlyList<string> parts, string path)
    {
        if (parts.Count == 0)
        {
            context.Error(path, "key needs at least one part", KeyHint);
            return null;
        }

        var sources = new List<RequestSource>();
        for (var i = 0; i < parts.Count; i++)
        {
            if (!RequestSource.TryParse(parts[i], out var source, out _))
            {
                var suggestion = YamlConfigBinder.Suggest(parts[i], ["consumer", "consumerGroup", "ip", "route", "host", "method", "path"]);
                context.Error($"{path}[{i}]", $"unknown key part '{parts[i]}'", suggestion is not null ? $"did you mean '{suggestion}'? ({KeyHint})" : KeyHint);
                continue;
            }

            sources.Add(source);
        }

        return sources.Count == parts.Count ? new TrafficKey([.. sources]) : null;
    }

    /// <summary>The route's traffic settings: named policies resolved, concurrency validated.</summary>
    internal static RouteTraffic CompileRoute(CompileContext context, RouteOptions route, string path, TrafficPolicies traffic)
    {
        var limits = new List<CompiledRateLimit>();
        for (var i = 0; i < route.RateLimits.Count; i++)
        {
            var name = route.RateLimits[i];
            if (traffic.RateLimits.TryGetValue(name, out var policy))
            {
                limits.Add(policy);
            }
            else if (!context.Config.RateLimits.ContainsKey(name))
            {
                var suggestion = YamlConfigBinder.Suggest(name, context.Config.RateLimits.Keys);
                context.Error($"{path}.rateLimits[{i}]", $"route '{route.Name}' names unknown rate limit '{name}'", suggestion is not null ? $"did you mean '{suggestion}'?" : "define it under rateLimits:");
            }
        }

        CompiledQuota? quota = null;
        if (route.Quota is { } quotaName && !traffic.Quotas.TryGetValue(quotaName, out quota) && !context.Config.Quotas.ContainsKey(quotaName))
        {
            var suggestion = YamlConfigBinder.Suggest(quotaName, context.Config.Quotas.Keys);
            context.Error(path + ".quota", $"route '{route.Name}' names unknown quota '{quotaName}'", suggestion is not null ? $"did you mean '{suggestion}'?" : "define it under quotas:");
        }

        return new RouteTraffic([.. limits], quota, CompileConcurrency(context, route.Concurrency, path + ".concurrency", "route:" + route.Name));
    }

    internal static ConcurrencyGate? CompileConcurrency(CompileContext context, ConcurrencyOptions? options, string path, string scope)
    {
        if (options is null) return null;
        var ok = true;
        if (options.Max < 1)
        {
            context.Error(path + ".max", $"max must be at least 1 (it is {options.Max})", "e.g. max: 100");
            ok = false;
        }

        if (options.Queue < 0)
        {
            context.Error(path + ".queue", $"queue cannot be negative (it is {options.Queue})", "0 refuses at once when all slots are taken");
            ok = false;
        }

        if (options.QueueTimeout <= TimeSpan.Zero)
        {
            context.Error(path + ".queueTimeout", "queueTimeout must be greater than zero", "e.g. queueTimeout: 500ms");
            ok = false;
        }

        if (options.RetryAfter < TimeSpan.Zero)
        {
            context.Error(path + ".retryAfter", "retryAfter cannot be negative", "e.g. retryAfter: 1s");
            ok = false;
        }

        var redis = context.Config.Stores.Redis;
        if (options.Store == TrafficStore.Redis)
        {
            if (string.IsNullOrWhiteSpace(redis?.Connection))
            {
                context.Error(path + ".store", "store: redis needs a Redis connection, but stores.redis.connection is not set (or empty)", "add stores: { redis: { connection: \"127.0.0.1:6379\" } } or use store: local");
                ok = false;
            }

            if (options.Queue > 0)
            {
                // Waiting for a fleet-wide slot would mean polling Redis; refuse at once and let Retry-After pace clients.
                context.Error(path + ".queue", $"queue is not supported with store: redis (it is {options.Queue})", "use queue: 0 (refuse at once with Retry-After) or store: local");
                ok = false;
            }

            if (options.LeaseTtl < TimeSpan.FromSeconds(1))
            {
                context.Error(path + ".leaseTtl", "leaseTtl must be at least 1s", "e.g. leaseTtl: 30s (a crashed instance's slots come back after it)");
                ok = false;
            }
        }
        else if (context.Loaded.Locations.Has(path + ".leaseTtl") || context.Loaded.Locations.Has(path + ".onStoreFailure"))
        {
            context.Warning(path, "leaseTtl and onStoreFailure have no effect on a local concurrency limit", "remove them, or set store: redis");
        }

        return ok ? new ConcurrencyGate(scope, options, Math.Max(1, redis?.Instances ?? 1)) : null;
    }
}

/// <summary>The named rate-limit and quota policies that compiled; routes refer to them by name.</summary>
internal sealed record TrafficPolicies(Dictionary<string, CompiledRateLimit> RateLimits, Dictionary<string, CompiledQuota> Quotas, bool RedisConfigured)
{
    /// <summary>The plans (`plans`), compiled after the named policies they copy; null without plans.</summary>
    public CompiledPlans? Plans { get; init; }
}

/// <summary>One route's traffic control.</summary>
internal sealed record RouteTraffic(CompiledRateLimit[] RateLimits, CompiledQuota? Quota, ConcurrencyGate? Concurrency);
