using System.Collections.Frozen;
using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Portcullis.Configuration;
using Portcullis.Pipeline;
using Yarp.ReverseProxy;
using Yarp.ReverseProxy.Model;

namespace Portcullis.Routing;

/// <summary>
/// Endpoint metadata of a YARP route: the snapshot (generation) the route was published with, its compiled
/// form, and YARP's state of every cluster of that generation. A request that matched the endpoint runs
/// that one generation to the end, even when a reload lands meanwhile and renames or removes the route and
/// its clusters (YARP keeps a removed cluster's state alive for requests that hold it).
/// </summary>
internal sealed class RouteBinding(string routeId, GatewaySnapshot snapshot, CompiledRoute? route, FrozenDictionary<string, ClusterState> clusters,
    FrozenDictionary<string, RouteModel>? routeModels = null) : IRouteGeneration
{
    public string RouteId { get; } = routeId;

    public GatewaySnapshot Snapshot { get; } = snapshot;

    IRequestGeneration IRouteGeneration.Generation => Snapshot;

    public bool HasAuth => Route?.Auth is { Anonymous: false };

    public bool HasTrafficControl => Route?.HasTrafficControl == true;

    /// <summary>Null only if the snapshot lacks the route (not expected: both come from one snapshot).</summary>
    public CompiledRoute? Route { get; } = route;

    /// <summary>The clusters a map-driven route may choose, as YARP ran them when this generation's endpoints were built.</summary>
    public FrozenDictionary<string, ClusterState> Clusters { get; } = clusters;

    /// <summary>
    /// For a map-driven route, YARP's route model once per cluster it may choose. YARP's own stages read the
    /// cluster from the route model (the forwarder's log line, its concurrency counters and telemetry, passive
    /// health, session affinity), so switching only the proxy feature's cluster would leave them on the
    /// route's default cluster.
    /// </summary>
    public FrozenDictionary<string, RouteModel> RouteModels { get; } = routeModels ?? FrozenDictionary<string, RouteModel>.Empty;
}

/// <summary>Adds a <see cref="RouteBinding"/> to each YARP route endpoint as YARP builds it (a convention).</summary>
internal sealed class RouteBindings(SnapshotStore store, IProxyStateLookup proxyState)
{
    // One cluster table per generation, shared by its routes.
    private readonly ConditionalWeakTable<GatewaySnapshot, FrozenDictionary<string, ClusterState>> _clusters = new();

    public void Bind(EndpointBuilder endpoint)
    {
        var model = endpoint.Metadata.OfType<RouteModel>().FirstOrDefault();
        if (model is null || store.SnapshotOf(model.Config) is not { } snapshot) return;
        // YARP builds a generation's endpoints after it applied that generation's clusters.
        var clusters = _clusters.GetValue(snapshot, s => s.Clusters.Keys
            .Select(name => proxyState.TryGetCluster(name, out var cluster) ? cluster : null)
            .OfType<ClusterState>()
            .ToFrozenDictionary(c => c.ClusterId, StringComparer.Ordinal));
        var route = snapshot.Routes.GetValueOrDefault(model.Config.RouteId);
        var routeModels = route?.ClusterTemplate is null && route?.Split is null ? null
            : clusters.ToFrozenDictionary(c => c.Key, c => new RouteModel(model.Config, c.Value, model.Transformer), StringComparer.Ordinal);
        endpoint.Metadata.Add(new RouteBinding(model.Config.RouteId, snapshot, route, clusters, routeModels));
    }
}

/// <summary>
/// Right after routing: fixes the request's generation to that of the route it matched (see
/// <see cref="GatewayFeature.BindRoute"/>), before any stage reads the snapshot for route-specific work.
/// </summary>
internal sealed class RouteGenerationMiddleware(RequestDelegate next)
{
    public Task InvokeAsync(HttpContext context)
    {
        context.Features.Get<GatewayFeature>()?.BindRoute(context);
        return next(context);
    }
}

/// <summary>The compiled route of a request, from the endpoint metadata the feature bound (<see cref="GatewayFeature.BindRoute"/>).</summary>
internal static class GatewayFeatureRouting
{
    extension(GatewayFeature feature)
    {
        /// <summary>
        /// The compiled form of the route routing matched, taken from the endpoint (<see cref="Routing.RouteBinding"/>)
        /// once per request and shared by every stage. Null when no route matched.
        /// </summary>
        internal CompiledRoute? ResolveRoute(HttpContext context) => (feature.BindRoute(context) as RouteBinding)?.Route;

        /// <summary>The matched route's endpoint binding (after <c>ResolveRoute</c>); null when no route matched.</summary>
        internal RouteBinding? RouteBinding => feature.BoundRoute as RouteBinding;
    }
}
