using System.ComponentModel;

namespace Portcullis.Configuration;

internal sealed record RouteOptions
{
    [Description("Unique route name, used in logs, metrics and the admin API.")]
    public string Name { get; init; } = "";

    [Description("Precedence: lower first; routes with the same order keep file order. Default 0.")]
    public int Order { get; init; }

    [Description("What requests this route takes. All given conditions must hold.")]
    public RouteMatchOptions Match { get; init; } = new();

    [Description("Cluster to proxy to. May contain ${map:NAME(SOURCE[,SOURCE...])} lookups, e.g. \"orders-${map:versions(header:Api-Version,segment:1)}\".")]
    public string? Cluster { get; init; }

    [Description("Send to several clusters by weight (canary, blue/green), optionally keeping each caller on one side. Instead of cluster.")]
    public RouteSplitOptions? Split { get; init; }

    [Description("Answer with a redirect instead of proxying.")]
    public RedirectOptions? Redirect { get; init; }

    [Description("Answer with a fixed response instead of proxying.")]
    public FixedResponseOptions? Respond { get; init; }

    [Description("Request headers to set (values may contain ${map:...} lookups) or remove before proxying.")]
    public RequestHeadersOptions RequestHeaders { get; init; } = new();

    [Description("Remove this prefix from the path before proxying, e.g. /api.")]
    public string? StripPrefix { get; init; }

    [Description("Response headers to set/add/remove and query parameters to set/remove (see docs/configuration.md, Transforms).")]
    public RouteTransformOptions Transforms { get; init; } = new();

    [Description("Who may call this route. Without it the route is public; with it, everything not allowed is denied.")]
    public RouteAuthOptions? Auth { get; init; }

    [Description("Send the client's Host header to the upstream instead of the destination's host. Default false (the original host is always in X-Forwarded-Host).")]
    public bool PreserveHost { get; init; }

    [Description("Names of rate-limit policies (under rateLimits) applied to this route, in order; every one must admit a request.")]
    public IReadOnlyList<string> RateLimits { get; init; } = [];

    [Description("Name of a quota (under quotas) this route's requests count against.")]
    public string? Quota { get; init; }

    [Description("Apply the caller's plan (top-level `plans`) to this route: its extra limits and its list of routes. Default true; false exempts the route (health checks, sign-in pages).")]
    public bool Plans { get; init; } = true;

    [Description("Most requests in flight on this route at once, with an optional short queue; beyond it 503 with Retry-After.")]
    public ConcurrencyOptions? Concurrency { get; init; }

    [Description("Checks on the upstream's response headers (required, forbidden, value rules) and what a finding does; applied before the cluster's.")]
    public ResponseHeaderOptions? ResponseHeaders { get; init; }

    [Description("Cross-origin requests from browsers (CORS): allowed origins, methods, headers, credentials. Preflights are answered at the gateway, before auth, without reaching the upstream.")]
    public RouteCorsOptions? Cors { get; init; }

    [Description("JSON threat protection for the route's JSON request bodies: size, depth, string length, array and object sizes, checked while the body streams (400/413 problem+json with a reason code).")]
    public JsonLimitsOptions? JsonLimits { get; init; }

    [Description("Compress the route's answers with gzip or Brotli for clients that accept it (per Accept-Encoding), above a least size, for compressible content types.")]
    public CompressionOptions? Compression { get; init; }

    [Description("Keep the route's GET answers in memory as their Cache-Control allows (shared-cache rules: no private or no-store answers, Vary respected), per consumer on routes with auth only when asked.")]
    public RouteCacheOptions? Cache { get; init; }

    [Description("Copy a share of the route's requests to another cluster (shadow traffic), fire-and-forget: the copy's answer is discarded and never delays the client.")]
    public MirrorOptions? Mirror { get; init; }
}
