using System.ComponentModel;

namespace Portcullis.Configuration;

/// <summary>A route's weighted clusters (routes[].split): a share of the requests to each.</summary>
internal sealed record RouteSplitOptions
{
    [Description("The clusters and their relative weights (integers ≥ 0; 95 and 5 send 95 % and 5 %). A weight of 0 keeps a cluster listed but sends it nothing.")]
    public IReadOnlyList<SplitTargetOptions> Clusters { get; init; } = [];

    [Description("Keep one caller on one side: the request source whose value is hashed to choose (consumer, header:NAME, cookie:NAME, claim:NAME, ip, ...). The same value always lands on the same cluster while the weights stay; raising the last cluster's weight only moves callers toward it. A request without the value is drawn at random. Without sticky every request is drawn at random.")]
    public string? Sticky { get; init; }
}

/// <summary>One cluster of a route's split and its weight.</summary>
internal sealed record SplitTargetOptions
{
    [Description("Cluster name (under clusters).")]
    public string Cluster { get; init; } = "";

    [Description("Relative weight, an integer ≥ 0.")]
    public int Weight { get; init; }
}

/// <summary>routes[].cors: the route's CORS policy (Fetch standard), answered by ASP.NET Core's CORS middleware.</summary>
internal sealed record RouteCorsOptions
{
    [Description("Origins allowed to call the route: https://app.example.com, a subdomain pattern https://*.example.com, or \"*\" (any origin; not with allowCredentials).")]
    public IReadOnlyList<string> AllowOrigins { get; init; } = [];

    [Description("Methods allowed on cross-origin requests. Default: any.")]
    public IReadOnlyList<string> AllowMethods { get; init; } = [];

    [Description("Request headers a cross-origin request may send beyond the CORS-safelisted ones, or \"*\". Default: none.")]
    public IReadOnlyList<string> AllowHeaders { get; init; } = [];

    [Description("Response headers the calling page may read beyond the CORS-safelisted ones.")]
    public IReadOnlyList<string> ExposeHeaders { get; init; } = [];

    [Description("Allow requests with credentials (cookies, Authorization): Access-Control-Allow-Credentials. Default false.")]
    public bool AllowCredentials { get; init; }

    [Description("How long a browser may cache a preflight answer (Access-Control-Max-Age). Default 10m.")]
    public TimeSpan MaxAge { get; init; } = TimeSpan.FromMinutes(10);
}
