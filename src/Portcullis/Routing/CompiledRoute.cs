using Portcullis.Configuration;

namespace Portcullis.Routing;

internal enum RouteAction
{
    Proxy,
    Redirect,
    Respond,
}

/// <summary>A route's gateway-side behaviour; matching itself is done by YARP's routing.</summary>
internal sealed class CompiledRoute
{
    public required string Name { get; init; }

    public required RouteAction Action { get; init; }

    /// <summary>Set when the cluster is chosen per request by a map lookup.</summary>
    public ValueTemplate? ClusterTemplate { get; init; }

    public string? StaticCluster { get; init; }

    /// <summary>Set when the route sends to several clusters by weight (routes[].split).</summary>
    public CompiledSplit? Split { get; init; }

    public (string Name, ValueTemplate Value)[] SetHeaders { get; init; } = [];

    public string[] RemoveHeaders { get; init; } = [];

    /// <summary>transforms.response: headers set (replacing the upstream's), added, removed.</summary>
    public (string Name, ValueTemplate Value)[] ResponseSet { get; init; } = [];

    public (string Name, ValueTemplate Value)[] ResponseAdd { get; init; } = [];

    public string[] ResponseRemove { get; init; } = [];

    /// <summary>transforms.pathRewrite: applied after route matching, before forwarding (and before stripPrefix).</summary>
    public System.Text.RegularExpressions.Regex? PathRewrite { get; init; }

    public string PathReplacement { get; init; } = "";

    /// <summary>transforms.securityHeaders: the preset's headers this route adds when the answer lacks them (those it removes left out).</summary>
    public SecurityHeader[] SecurityHeaders { get; init; } = [];

    public bool HasResponseTransforms => ResponseSet.Length > 0 || ResponseAdd.Length > 0 || ResponseRemove.Length > 0 || SecurityHeaders.Length > 0;

    public RedirectOptions? Redirect { get; init; }

    public int FixedStatus { get; init; }

    public byte[] FixedBody { get; init; } = [];

    public string FixedContentType { get; init; } = "";

    public KeyValuePair<string, string>[] FixedHeaders { get; init; } = [];

    /// <summary>Null for public routes.</summary>
    public Identity.CompiledRouteAuth? Auth { get; init; }

    /// <summary>Rate-limit policies checked in order; empty when none.</summary>
    public Traffic.CompiledRateLimit[] RateLimits { get; init; } = [];

    public Traffic.CompiledQuota? Quota { get; init; }

    public Traffic.ConcurrencyGate? Concurrency { get; init; }

    /// <summary>The plans that apply on this route (`plans`, unless the route says `plans: false`); null without.</summary>
    public Traffic.RoutePlans? Plans { get; init; }

    /// <summary>True when the route has any traffic control (the stage is skipped otherwise).</summary>
    public bool HasTrafficControl => RateLimits.Length > 0 || Quota is not null || Concurrency is not null || Plans is not null;

    /// <summary>The route's CORS policy, as the completed task the CORS middleware asks for (no allocation per request); null without `cors`.</summary>
    public Task<Microsoft.AspNetCore.Cors.Infrastructure.CorsPolicy?>? CorsTask { get; init; }

    /// <summary>Null when the route has no `mirror`.</summary>
    public CompiledMirror? Mirror { get; init; }

    /// <summary>Null when the route has no (enabled) `cache`.</summary>
    public CompiledCache? Cache { get; init; }

    /// <summary>Null when the route has no (enabled) `compression`.</summary>
    public CompiledCompression? Compression { get; init; }

    /// <summary>Null when the route has no `jsonLimits`.</summary>
    public CompiledJsonLimits? JsonLimits { get; init; }

    /// <summary>Null when the route has no `responseHeaders`.</summary>
    public Observability.CompiledResponseHeaderPolicy? ResponseHeaders { get; init; }
}
