using System.ComponentModel;

namespace Portcullis.Configuration;

internal enum RateLimitAlgorithm
{
    /// <summary>GCRA token bucket: `limit` per `per` on average, up to `burst` at once.</summary>
    TokenBucket,

    /// <summary>Sliding window counter: at most `limit` in any window of `per` (weighted previous window).</summary>
    SlidingWindow,

    /// <summary>Apigee SpikeArrest: smoothed to one request every `per`/`limit`, no bursts.</summary>
    SpikeArrest,
}

internal enum TrafficStore
{
    /// <summary>In-process counters (the embedded default): per instance, lost on restart.</summary>
    Local,

    /// <summary>Counters in Redis (stores.redis), shared by every instance.</summary>
    Redis,
}

internal enum RedisCountingMode
{
    /// <summary>One Redis round trip per decision: exact across instances.</summary>
    Strict,

    /// <summary>Count locally and synchronise with Redis every `syncEvery`: no round trip on the request path, bounded overshoot.</summary>
    Approximate,
}

internal enum StoreFailureMode
{
    /// <summary>Enforce this instance's share of the limit (limit ÷ stores.redis.instances) in-process while the store is unreachable (the default).</summary>
    Local,

    /// <summary>Admit requests while the store is unreachable (availability first).</summary>
    Open,

    /// <summary>Refuse requests with 503 while the store is unreachable (limit first).</summary>
    Closed,
}

internal sealed record RateLimitOptions
{
    [Description("What is counted separately: one or more of consumer, consumerGroup, ip, route, header:NAME, claim:NAME, query:NAME, host, method, path, segment:N. Several parts form one combined key. A part missing on a request is replaced by the client IP. Default [consumer].")]
    public IReadOnlyList<string> Key { get; init; } = ["consumer"];

    [Description("tokenBucket (default; GCRA: `limit` per `per` on average, up to `burst` at once), slidingWindow (at most `limit` in any `per`) or spikeArrest (one request every `per`/`limit`, no bursts).")]
    public RateLimitAlgorithm Algorithm { get; init; } = RateLimitAlgorithm.TokenBucket;

    [Description("Requests allowed per `per`. Required, at least 1.")]
    public long Limit { get; init; }

    [Description("The period `limit` applies to, e.g. 1s, 1m, 1h. Default 1s.")]
    public TimeSpan Per { get; init; } = TimeSpan.FromSeconds(1);

    [Description("tokenBucket only: most requests admitted at once after a quiet spell. Default: `limit`.")]
    public long? Burst { get; init; }

    [Description("local (default; per instance) or redis (shared by every instance; needs stores.redis).")]
    public TrafficStore Store { get; init; } = TrafficStore.Local;

    [Description("redis only: strict (default; one Redis round trip per decision) or approximate (slidingWindow only: count locally, synchronise every `syncEvery`).")]
    public RedisCountingMode Mode { get; init; } = RedisCountingMode.Strict;

    [Description("approximate mode: how often local counts are written to and read back from Redis. Default 100ms.")]
    public TimeSpan SyncEvery { get; init; } = TimeSpan.FromMilliseconds(100);

    [Description("redis only, while Redis cannot answer: local (default; each instance enforces limit ÷ stores.redis.instances in-process), open (admit everything) or closed (answer 503).")]
    public StoreFailureMode OnStoreFailure { get; init; } = StoreFailureMode.Local;

    [Description("Send RateLimit-Policy and RateLimit headers (draft-ietf-httpapi-ratelimit-headers) on admitted responses. Default true.")]
    public bool Headers { get; init; } = true;
}

internal enum QuotaPeriod
{
    Hour,
    Day,
    Week,
    Month,
}

internal sealed record QuotaOptions
{
    [Description("What is counted separately; same parts as rate limits. Default [consumer].")]
    public IReadOnlyList<string> Key { get; init; } = ["consumer"];

    [Description("Requests allowed per period. Required, at least 1.")]
    public long Limit { get; init; }

    [Description("Calendar period: hour, day (default), week (starting Monday) or month.")]
    public QuotaPeriod Period { get; init; } = QuotaPeriod.Day;

    [Description("IANA time zone the calendar periods follow, e.g. Europe/Berlin. Default UTC.")]
    public string TimeZone { get; init; } = "UTC";

    [Description("redis (persisted and shared; needs stores.redis) or local (per instance, lost on restart). Default: redis when stores.redis is configured, else local.")]
    public TrafficStore? Store { get; init; }

    [Description("redis only, while Redis cannot answer: local (default; each instance enforces limit ÷ stores.redis.instances in-process), open (admit everything) or closed (answer 503).")]
    public StoreFailureMode OnStoreFailure { get; init; } = StoreFailureMode.Local;
}

internal sealed record ConcurrencyOptions
{
    [Description("Most requests in flight at once. Required, at least 1.")]
    public int Max { get; init; }

    [Description("Requests that may wait for a free slot when all are taken; 0 (default) refuses at once.")]
    public int Queue { get; init; }

    [Description("Longest a queued request waits before it is refused. Default 1s.")]
    public TimeSpan QueueTimeout { get; init; } = TimeSpan.FromSeconds(1);

    [Description("Retry-After sent with the 503. Default 1s.")]
    public TimeSpan RetryAfter { get; init; } = TimeSpan.FromSeconds(1);

    [Description("local (default; the limit is per instance) or redis (one limit for every instance sharing stores.redis; needs queue: 0).")]
    public TrafficStore Store { get; init; } = TrafficStore.Local;

    [Description("redis only, while Redis cannot answer: local (default; each instance allows max ÷ stores.redis.instances in flight), open (admit everything) or closed (answer 503).")]
    public StoreFailureMode OnStoreFailure { get; init; } = StoreFailureMode.Local;

    [Description("redis only: how long a slot outlives the instance holding it (a crashed instance's slots come back after this). Renewed every third of it while the request runs. Default 30s, at least 1s.")]
    public TimeSpan LeaseTtl { get; init; } = TimeSpan.FromSeconds(30);
}

internal sealed record StoresOptions
{
    [Description("Redis (single node or Redis Cluster) for state shared by every instance. Without it, state is in-process.")]
    public RedisStoreOptions? Redis { get; init; }
}

internal sealed record RedisStoreOptions
{
    [Description("StackExchange.Redis connection string, e.g. \"10.0.0.7:6379,password=${REDIS_PASSWORD}\" or several cluster nodes \"a:6379,b:6379\". Empty means not configured.")]
    [Secret]
    public string Connection { get; init; } = "";

    [Description("Prefix of every key the gateway writes. Default \"portcullis:\".")]
    public string KeyPrefix { get; init; } = "portcullis:";

    [Description("Longest a request waits for Redis before the policy's onStoreFailure applies. Default 100ms.")]
    public TimeSpan Timeout { get; init; } = TimeSpan.FromMilliseconds(100);

    [Description("After a failure, how long requests skip Redis (circuit open) before one probe tries again. Default 2s.")]
    public TimeSpan RetryAfter { get; init; } = TimeSpan.FromSeconds(2);

    [Description("How many gateway instances share the Redis-backed limits: while Redis cannot answer, a policy with onStoreFailure: local enforces limit ÷ instances (rounded up) in each instance. Default 1 (each instance enforces the whole limit: at most instances × limit in total, never fewer than the limit).")]
    public int Instances { get; init; } = 1;
}
