using System.Collections.ObjectModel;
using System.ComponentModel;

namespace Portcullis.Configuration;

/// <summary>The whole gateway configuration: one YAML file (plus the files it names).</summary>
internal sealed record PortcullisConfig
{
    [Description("Addresses the gateway listens on. Exactly one may be the admin listener.")]
    public IReadOnlyList<ListenerOptions> Listeners { get; init; } = [];

    [Description("Server-wide request limits (Kestrel). Safe defaults apply when omitted.")]
    public LimitsOptions Limits { get; init; } = new();

    [Description("Peers (IP addresses or CIDR ranges) whose X-Forwarded-* / Forwarded headers are trusted and extended; from anyone else they are replaced.")]
    public IReadOnlyList<string> TrustedProxies { get; init; } = [];

    [Description("Token issuers, API keys and the identity headers sent upstream.")]
    public IdentityOptions Identity { get; init; } = new();

    [Description("Named lookup tables (HAProxy-style map files) used by ${map:NAME(SOURCE)} in route templates.")]
    public IReadOnlyDictionary<string, MapOptions> Maps { get; init; } = new Dictionary<string, MapOptions>();

    [Description("Routes, matched first to last in file order unless `order` says otherwise.")]
    public IReadOnlyList<RouteOptions> Routes { get; init; } = [];

    [Description("Named groups of upstream destinations with load balancing and health checks.")]
    public IReadOnlyDictionary<string, ClusterOptions> Clusters { get; init; } = new Dictionary<string, ClusterOptions>();

    [Description("Named rate-limit policies (token bucket, sliding window, spike arrest); routes name them in `rateLimits`.")]
    public IReadOnlyDictionary<string, RateLimitOptions> RateLimits { get; init; } = new Dictionary<string, RateLimitOptions>();

    [Description("Named calendar quotas (per hour, day, week or month); routes name one in `quota`.")]
    public IReadOnlyDictionary<string, QuotaOptions> Quotas { get; init; } = new Dictionary<string, QuotaOptions>();

    [Description("Named plans (API products): per caller tier, extra rate limits and a quota, and which routes the tier may call. Chosen per request by `plan`.")]
    public IReadOnlyDictionary<string, PlanOptions> Plans { get; init; } = new Dictionary<string, PlanOptions>();

    [Description("How a request's plan is chosen (with `plans`): from the consumer group by default, a claim, or a map lookup, with a default plan.")]
    public PlanSelectionOptions Plan { get; init; } = new();

    [Description("Where shared state lives. Without a store, counters are in-process.")]
    public StoresOptions Stores { get; init; } = new();

    [Description("Request ids, trace context and the JSON access log.")]
    public ObservabilityOptions Observability { get; init; } = new();

    [Description("The admin API: who may use it (bearer tokens, client certificates) and which paths stay open.")]
    public AdminOptions Admin { get; init; } = new();

    [Description("Request analytics: per-minute rollups and sampled requests in an embedded DuckDB file, hourly Parquet exports, the query API and dashboard on the admin listener.")]
    public AnalyticsOptions Analytics { get; init; } = new();

    [Description("The traffic advisor: rate-limit suggestions, unusual routes and callers, misconfigured services; findings with evidence and config patches (docs/advisor.md).")]
    public AdviceOptions Advice { get; init; } = new();

    [Description("Other files (or folders of *.yaml files, or *-patterns) whose content is added to this one, relative to this file: e.g. [conf.d/] with one file per service. An included file may add names (routes, clusters, maps, keys …) but not redefine another file's; read in name order.")]
    public IReadOnlyList<string> Include { get; init; } = [];
}

internal enum ListenerProtocols
{
    Http1,
    Http2,
    Http1AndHttp2,
}

internal sealed record ListenerOptions
{
    [Description("Unique listener name, used in logs and the admin API.")]
    public string Name { get; init; } = "";

    [Description("host:port to bind, e.g. 127.0.0.1:8080, [::1]:8080, *:8080 or 0.0.0.0:8080.")]
    public string Address { get; init; } = "";

    [Description("http1 (default), http2 (cleartext h2c with prior knowledge) or http1AndHttp2 (both, negotiated by TLS ALPN; without TLS connections speak HTTP/1.1). With tls, http2 is offered by ALPN as h2.")]
    public ListenerProtocols Protocols { get; init; } = ListenerProtocols.Http1;

    [Description("Serve the admin API (health, config, clusters, reload, drain) on this listener instead of routes. Off loopback it needs admin.auth.")]
    public bool Admin { get; init; }

    [Description("Serve HTTPS: server certificates chosen by SNI, reloaded when their files change. Without it the listener speaks cleartext HTTP.")]
    public ListenerTlsOptions? Tls { get; init; }

    [Description("On a cleartext listener: answer every request with a redirect to the same URL over HTTPS instead of serving routes.")]
    public RedirectToHttpsOptions? RedirectToHttps { get; init; }

    [Description("Remove every request header with `_` in its name before routing (as nginx does by default): CGI, WSGI, Rack and PHP upstreams read X_Foo and X-Foo as the same header. Underscore spellings of the headers the gateway sets are removed either way. Default true.")]
    public bool DropUnderscoreHeaders { get; init; } = true;
}

internal sealed record LimitsOptions
{
    [Description("Largest total size of request headers; larger requests get 431. Default 32KiB.")]
    public ByteSize MaxRequestHeadersSize { get; init; } = ByteSize.FromKiB(32);

    [Description("Most request headers allowed; more get 431. Default 100.")]
    public int MaxRequestHeaderCount { get; init; } = 100;

    [Description("Longest request line (method, URL, version); longer gets 414. Default 8KiB.")]
    public ByteSize MaxRequestLineSize { get; init; } = ByteSize.FromKiB(8);

    [Description("Largest request body; larger gets 413. Default 10MiB.")]
    public ByteSize MaxRequestBodySize { get; init; } = ByteSize.FromMiB(10);

    [Description("Time a client has to send all request headers. Default 15s.")]
    public TimeSpan RequestHeadersTimeout { get; init; } = TimeSpan.FromSeconds(15);

    [Description("Idle time before a keep-alive connection is closed. Default 120s.")]
    public TimeSpan KeepAliveTimeout { get; init; } = TimeSpan.FromSeconds(120);

    [Description("Most concurrent client connections across all listeners; 0 means unlimited. Default 10000.")]
    public int MaxConnections { get; init; } = 10_000;

    [Description("Slowest acceptable request body upload in bytes per second (after the grace period); slower clients are disconnected. Default 240.")]
    public int MinRequestBodyDataRate { get; init; } = 240;

    [Description("Grace period before the minimum body data rate applies. Default 5s.")]
    public TimeSpan MinRequestBodyDataRateGracePeriod { get; init; } = TimeSpan.FromSeconds(5);

    [Description("Time in-flight requests get to finish when the gateway stops. Default 30s.")]
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(30);

    [Description("On SIGTERM, how long the route listeners keep accepting and serving before they stop (then shutdownTimeout applies): /readyz answers 503 at once and every response closes its connection (HTTP/1.1 `Connection: close`, HTTP/2 GOAWAY), so clients move while load balancers and Kubernetes endpoints catch up. Default 0s (stop accepting at once, as HAProxy and Traefik do by default); 5s to 10s behind Kubernetes.")]
    public TimeSpan ShutdownDelay { get; init; } = TimeSpan.Zero;

    [Description("Give back the memory that large configuration builds grew the heap into: once start, reloads and advisor runs allocated 128 MB, one compacting collection runs 10s after the last of them (it pauses requests, ~0.2–0.6s at 50,000 routes on two cores). Default true. false keeps the grown heap: more resident memory (~1.2 GB rather than ~0.4 GB at 50,000 routes), and reloads that do not have to grow it again (a one-route reload at 50,000 routes: 1.4–1.9s rather than 2.2–3.4s). Takes effect at the next build.")]
    public bool TrimHeapAfterBuilds { get; init; } = true;
}

internal enum MapKind
{
    Exact,
    Prefix,
    Regex,
}

internal sealed record MapOptions
{
    [Description("Path of a map file: one `key value` pair per line, `#` starts a comment. Relative to the config file. Reloaded when it changes.")]
    [FilePath]
    public string? File { get; init; }

    [Description("Entries given inline instead of (or in addition to, after) the file.")]
    public IReadOnlyDictionary<string, string> Entries { get; init; } = ReadOnlyDictionary<string, string>.Empty;

    [Description("How keys match: exact (default), prefix (longest matching prefix wins) or regex (first matching line wins).")]
    public MapKind Kind { get; init; } = MapKind.Exact;

    [Description("Compare keys case-insensitively. Default false.")]
    public bool IgnoreCase { get; init; }

    [Description("Value used when no key matches (or the source is absent). Without it the lookup yields nothing.")]
    public string? Default { get; init; }
}

internal enum HeaderMatchMode
{
    Exact,
    Prefix,
    Contains,
    Present,
    Absent,
}

internal sealed record RouteMatchOptions
{
    [Description("Host names (port optional); `*.example.com` matches any subdomain. Any host when empty.")]
    public IReadOnlyList<string> Hosts { get; init; } = [];

    [Description("Path template, e.g. /orders/{id} or /orders/{**rest} (ASP.NET route template syntax).")]
    public string? Path { get; init; }

    [Description("Path prefix, e.g. /orders matches /orders and /orders/anything. Exclusive with `path`.")]
    public string? PathPrefix { get; init; }

    [Description("HTTP methods; any when empty.")]
    public IReadOnlyList<string> Methods { get; init; } = [];

    [Description("Header conditions; all must hold.")]
    public IReadOnlyList<HeaderMatchOptions> Headers { get; init; } = [];

    [Description("Query parameter conditions; all must hold.")]
    public IReadOnlyList<QueryMatchOptions> Query { get; init; } = [];
}

internal sealed record HeaderMatchOptions
{
    [Description("Header name.")]
    public string Name { get; init; } = "";

    [Description("Accepted values (any one). Not used by present/absent.")]
    public IReadOnlyList<string> Values { get; init; } = [];

    [Description("exact (default), prefix, contains, present or absent. Values compare case-insensitively.")]
    public HeaderMatchMode Mode { get; init; } = HeaderMatchMode.Exact;
}

internal enum QueryMatchMode
{
    Exact,
    Prefix,
    Contains,
    Present,
}

internal sealed record QueryMatchOptions
{
    [Description("Query parameter name.")]
    public string Name { get; init; } = "";

    [Description("Accepted values (any one). Not used by present.")]
    public IReadOnlyList<string> Values { get; init; } = [];

    [Description("exact (default), prefix, contains or present. Values compare case-insensitively.")]
    public QueryMatchMode Mode { get; init; } = QueryMatchMode.Exact;
}

internal sealed record RedirectOptions
{
    [Description("Target URL (absolute, or a path on the same host).")]
    public string Url { get; init; } = "";

    [Description("301, 302 (default), 303, 307 or 308.")]
    public int Status { get; init; } = 302;

    [Description("Append the request's path and query to the target URL. Default false.")]
    public bool AppendPath { get; init; }
}

internal sealed record FixedResponseOptions
{
    [Description("Status code. Default 200.")]
    public int Status { get; init; } = 200;

    [Description("Response body. Default empty.")]
    public string Body { get; init; } = "";

    [Description("Content-Type of the body. Default text/plain; charset=utf-8.")]
    public string ContentType { get; init; } = "text/plain; charset=utf-8";

    [Description("Extra response headers.")]
    public IReadOnlyDictionary<string, string> Headers { get; init; } = ReadOnlyDictionary<string, string>.Empty;
}

internal sealed record RequestHeadersOptions
{
    [Description("Headers to set on the upstream request (an inbound header of that name is replaced); values may contain ${consumer}, ${consumerGroup}, ${claim:NAME}, ${route}, ${requestId} and ${map:NAME(SOURCE)}. A part that yields nothing leaves the header unset.")]
    public IReadOnlyDictionary<string, string> Set { get; init; } = ReadOnlyDictionary<string, string>.Empty;

    [Description("Headers to remove from the upstream request.")]
    public IReadOnlyList<string> Remove { get; init; } = [];
}

internal enum LoadBalancingPolicy
{
    RoundRobin,
    LeastRequests,
    PowerOfTwoChoices,
    Random,
    First,
    ConsistentHash,
}

internal enum UpstreamHttpVersion
{
    Http1,
    Http2,
}

internal sealed record ClusterOptions
{
    [Description("Upstream addresses, e.g. http://10.0.0.5:8080. A plain string or { name, address, health }.")]
    public IReadOnlyList<DestinationOptions> Destinations { get; init; } = [];

    [Description("roundRobin (default), leastRequests, powerOfTwoChoices, random, first (the available destination whose name sorts first, case-insensitively; default names are d1, d2, ...) or consistentHash (by consistentHash.key).")]
    public LoadBalancingPolicy LoadBalancing { get; init; } = LoadBalancingPolicy.RoundRobin;

    [Description("For loadBalancing: consistentHash: what to hash and how much load one destination may take beyond its share.")]
    public ConsistentHashOptions? ConsistentHash { get; init; }

    [Description("Sticky sessions: a cookie that sends a client back to the destination that served it (YARP session affinity).")]
    public ClusterAffinityOptions? Affinity { get; init; }

    [Description("Active and passive health checks.")]
    public HealthCheckOptions HealthCheck { get; init; } = new();

    [Description("Upstream timeouts.")]
    public ClusterTimeoutOptions Timeouts { get; init; } = new();

    [Description("Retries of idempotent requests (GET, HEAD, OPTIONS, PUT, DELETE, TRACE): on failed connections and lost ones by default, on chosen statuses and timeouts when asked, within a per-cluster budget. `retries: N` is short for { attempts: N }; 0 disables.")]
    public RetryOptions Retries { get; init; } = new();

    [Description("HTTP version toward the upstream: http1 (default) or http2 (h2c with prior knowledge over cleartext, ALPN over TLS).")]
    public UpstreamHttpVersion HttpVersion { get; init; } = UpstreamHttpVersion.Http1;

    [Description("Most connections per destination; 0 means unlimited. Default 0.")]
    public int MaxConnectionsPerDestination { get; init; }

    [Description("Most requests in flight to this cluster at once (all routes together), with an optional short queue; beyond it 503 with Retry-After.")]
    public ConcurrencyOptions? Concurrency { get; init; }

    [Description("TLS toward https:// destinations: CA bundle, SNI name, key pins, and the gateway's client certificate (upstream mTLS, reloaded on file change).")]
    public UpstreamTlsOptions? Tls { get; init; }

    [Description("Credentials the gateway obtains itself and sends to the destinations (OAuth 2.0 client credentials, refreshed in the background).")]
    public UpstreamCredentialsOptions? Credentials { get; init; }

    [Description("Checks on this cluster's response headers (required, forbidden, value rules) and what a finding does; applied after the route's.")]
    public ClusterResponseHeaderOptions? ResponseHeaders { get; init; }
}

[ScalarShorthand(nameof(Address))]
internal sealed record DestinationOptions
{
    [Description("Destination name; defaults to d1, d2, ... by position.")]
    public string? Name { get; init; }

    [Description("Absolute http:// or https:// URL of the destination.")]
    public string Address { get; init; } = "";

    [Description("Address used by active health checks instead of `address`.")]
    public string? Health { get; init; }
}

internal sealed record HealthCheckOptions
{
    [Description("Probe every destination periodically.")]
    public ActiveHealthCheckOptions? Active { get; init; }

    [Description("Eject a destination after consecutive proxying failures.")]
    public PassiveHealthCheckOptions? Passive { get; init; }

    [Description("Eject destinations whose error rate or latency is far from the rest of the cluster's (outlier detection), judged every interval.")]
    public OutlierDetectionOptions? OutlierDetection { get; init; }
}

internal sealed record ActiveHealthCheckOptions
{
    [Description("Path probed with GET; a 2xx answer is healthy. Default /healthz.")]
    public string Path { get; init; } = "/healthz";

    [Description("Time between probes. Default 5s.")]
    public TimeSpan Interval { get; init; } = TimeSpan.FromSeconds(5);

    [Description("Probe timeout. Default 2s.")]
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(2);

    [Description("Consecutive failed probes that mark a destination unhealthy. Default 2.")]
    public int UnhealthyThreshold { get; init; } = 2;

    [Description("Consecutive good probes that bring an unhealthy destination back. Default 1.")]
    public int HealthyThreshold { get; init; } = 1;
}

internal sealed record PassiveHealthCheckOptions
{
    [Description("Consecutive failed proxied requests (connection errors, timeouts, and 5xx when `statusCodes` include them) that eject a destination. Default 3.")]
    public int Failures { get; init; } = 3;

    [Description("How long an ejected destination stays out before it gets traffic again. Default 30s.")]
    public TimeSpan Reactivation { get; init; } = TimeSpan.FromSeconds(30);

    [Description("Upstream response status codes that also count as failures, e.g. [502, 503, 504]. Default none.")]
    public IReadOnlyList<int> StatusCodes { get; init; } = [];
}

internal sealed record ClusterTimeoutOptions
{
    [Description("Time to establish a connection to a destination. Default 5s.")]
    public TimeSpan Connect { get; init; } = TimeSpan.FromSeconds(5);

    [Description("Longest the upstream may stay silent (no response headers or body data) before the request fails with 504. Default 100s.")]
    public TimeSpan Request { get; init; } = TimeSpan.FromSeconds(100);
}
