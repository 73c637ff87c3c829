namespace Portcullis.Analytics;

/// <summary>
/// The analytics store's tables (DuckDB), the one definition every reader and writer uses: the flusher
/// appends to them, retention deletes from them, the hourly Parquet export copies them column for column,
/// and the query API and CLI read them (or the same columns from a fleet's Parquet folder). Times are UTC.
/// </summary>
internal static class AnalyticsSchema
{
    /// <summary>Bumped when a column changes; stored in analytics_meta so an older file is migrated or refused clearly.</summary>
    public const int Version = 1;

    public const string Rollups = "rollups";
    public const string Samples = "samples";

    /// <summary>
    /// One row per minute × route × cluster × consumer × consumer group × status × reason, flushed every
    /// flush interval (a minute seen in two flushes has two rows: readers always SUM and merge sketches).
    /// </summary>
    public const string CreateRollups = """
        CREATE TABLE IF NOT EXISTS rollups (
            minute          TIMESTAMP NOT NULL, -- start of the minute, UTC
            route           VARCHAR,            -- route name; NULL when no route matched
            cluster         VARCHAR,            -- cluster the request was sent to; NULL when not proxied
            consumer        VARCHAR,            -- authenticated consumer id; NULL when anonymous
            consumer_group  VARCHAR,            -- the caller's consumer group; NULL when none
            status          SMALLINT NOT NULL,  -- response status sent to the client
            reason          VARCHAR,            -- refusal/failure reason code (ReasonCodes); NULL when served
            requests        BIGINT NOT NULL,
            bytes_in        BIGINT NOT NULL,    -- request body bytes read
            bytes_out       BIGINT NOT NULL,    -- response body bytes written
            latency_us_sum  BIGINT NOT NULL,    -- total time in the gateway, microseconds
            upstream_us_sum BIGINT NOT NULL,    -- time to the upstream's response headers, microseconds (0 when not proxied)
            latency_buckets SMALLINT[] NOT NULL, -- LatencySketch bucket indexes of the total latency (sparse)
            latency_counts  BIGINT[] NOT NULL,   -- counts for latency_buckets, same length
            upstream_buckets SMALLINT[] NOT NULL, -- LatencySketch of the upstream latency (empty when not proxied)
            upstream_counts BIGINT[] NOT NULL
        )
        """;

    public const string RollupDays = "rollup_days";

    /// <summary>
    /// Per-day summaries of closed days (<see cref="AnalyticsDaySummaries"/>): rollups' columns, one row per day ×
    /// status × reason × the dimensions its grain keeps (the others NULL), minute = the day's start; derived from
    /// rollups, never exported, rebuilt by the maintenance job.
    /// </summary>
    public const string CreateRollupDays = """
        CREATE TABLE IF NOT EXISTS rollup_days (
            minute          TIMESTAMP NOT NULL, -- start of the day, UTC
            route           VARCHAR,
            cluster         VARCHAR,
            consumer        VARCHAR,            -- always NULL (no grain keeps it; kept so the columns are rollups')
            consumer_group  VARCHAR,
            status          SMALLINT NOT NULL,
            reason          VARCHAR,
            requests        BIGINT NOT NULL,
            bytes_in        BIGINT NOT NULL,
            bytes_out       BIGINT NOT NULL,
            latency_us_sum  BIGINT NOT NULL,
            upstream_us_sum BIGINT NOT NULL,
            latency_buckets SMALLINT[] NOT NULL,
            latency_counts  BIGINT[] NOT NULL,
            upstream_buckets SMALLINT[] NOT NULL,
            upstream_counts BIGINT[] NOT NULL,
            grain           TINYINT NOT NULL    -- 0: none; 1: route and cluster; 2: cluster; 3: consumer group
        )
        """;

    public const string ConsumerDays = "consumer_days";

    /// <summary>
    /// Per-day latency sketches per consumer of closed days (<see cref="AnalyticsDaySummaries"/>), for top by consumer
    /// ordered by p99 (no other grain keeps the consumer): one row per day × consumer, the day's latency buckets merged,
    /// no counters (those stay in rollups). Derived from rollups, never exported, written and trimmed with rollup_days.
    /// </summary>
    public const string CreateConsumerDays = """
        CREATE TABLE IF NOT EXISTS consumer_days (
            minute          TIMESTAMP NOT NULL, -- start of the day, UTC
            consumer        VARCHAR,            -- NULL: anonymous requests
            latency_buckets SMALLINT[] NOT NULL,
            latency_counts  BIGINT[] NOT NULL
        )
        """;

    /// <summary>
    /// Individual requests kept for drill-down: every refused or failed one (status ≥ 400) and a configured
    /// share of the rest. Never credentials, never query strings; the path is the route's template unless
    /// analytics.samples.rawPaths is on (unmatched requests keep their raw path, capped, since they have no template).
    /// </summary>
    public const string CreateSamples = """
        CREATE TABLE IF NOT EXISTS samples (
            ts              TIMESTAMP NOT NULL, -- when the request arrived, UTC
            request_id      VARCHAR NOT NULL,
            trace_id        VARCHAR,
            route           VARCHAR,
            cluster         VARCHAR,
            consumer        VARCHAR,
            consumer_group  VARCHAR,
            client          VARCHAR,            -- client address (the forwarded one behind trusted proxies)
            method          VARCHAR NOT NULL,
            host            VARCHAR,
            path            VARCHAR NOT NULL,   -- route path template, or the raw path (see above), never the query
            status          SMALLINT NOT NULL,
            reason          VARCHAR,            -- refusal/failure reason code; NULL when served
            auth            VARCHAR,            -- the identity stage's code (jwt.valid, apikey.unknown, …)
            traffic         VARCHAR,            -- the traffic stage's code (admitted, ratelimit.exceeded, …)
            attempts        TINYINT NOT NULL,
            bytes_in        BIGINT NOT NULL,
            bytes_out       BIGINT NOT NULL,
            latency_us      BIGINT NOT NULL,
            upstream_us     BIGINT              -- NULL when not proxied
        )
        """;

    public const string CreateMeta = "CREATE TABLE IF NOT EXISTS analytics_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)";

    public const string Arrivals = "arrivals";

    /// <summary>
    /// Per-second arrivals for the advisor's rate-limit suggestions (docs/advisor.md#rate-limit-suggestions): one
    /// row per minute × route × rate key × group × limited × missing key parts, with the seconds that had
    /// requests and their counts. Only requests that reached the traffic stage (a route matched and
    /// authentication passed), on every such route whether it has limits or not. Kept for advice.window.
    /// </summary>
    public const string CreateArrivals = """
        CREATE TABLE IF NOT EXISTS arrivals (
            minute          TIMESTAMP NOT NULL, -- start of the minute, UTC
            route           VARCHAR NOT NULL,
            rate_key        VARCHAR NOT NULL,   -- consumer id; "ip:" and the client address when anonymous
            consumer_group  VARCHAR,            -- the caller's consumer group; NULL when none
            limited         BOOLEAN NOT NULL,   -- refused by a rate limit (429 ratelimit.exceeded)
            key_missing     VARCHAR,            -- "policy part" of the route's rate-limit key parts missing on these requests, ", "-joined; NULL when none
            requests        BIGINT NOT NULL,
            seconds         UTINYINT[] NOT NULL, -- second offsets within the minute that had requests (sparse)
            counts          INTEGER[] NOT NULL   -- requests in each of those seconds, same length
        )
        """;
}
