using System.Collections.Frozen;
using System.Runtime.CompilerServices;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Portcullis.Configuration;
using Portcullis.Pipeline;
using Microsoft.Extensions.DependencyInjection;
using Yarp.ReverseProxy;
using Yarp.ReverseProxy.Configuration;
using Yarp.ReverseProxy.Model;

namespace Portcullis.Routing;

/// <summary>
/// Endpoint metadata of a YARP route: the snapshot (generation) the route was published with, its compiled
/// form, and YARP's state of every cluster of that generation. A request that matched the endpoint runs
/// that one generation to the end, even when a reload lands meanwhile and renames or removes the route and
/// its clusters (YARP keeps a removed cluster's state alive for requests that hold it).
/// </summary>
internal sealed class RouteBinding(string routeId, GatewaySnapshot snapshot, CompiledRoute? route, IReadOnlyDictionary<string, ClusterState> clusters,
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
    public IReadOnlyDictionary<string, ClusterState> Clusters { get; } = clusters;

    /// <summary>
    /// For a map-driven route, YARP's route model once per cluster it may choose. YARP's own stages read the
    /// cluster from the route model (the forwarder's log line, its concurrency counters and telemetry, passive
    /// health, session affinity), so switching only the proxy feature's cluster would leave them on the
    /// route's default cluster.
    /// </summary>
    public FrozenDictionary<string, RouteModel> RouteModels { get; } = routeModels ?? FrozenDictionary<string, RouteModel>.Empty;
}

/// <summary>
/// The endpoint metadata of a YARP route: its binding to the generation it serves now. Set when YARP builds the
/// endpoint, and moved to each later generation in which YARP kept the endpoint (the route's YARP settings and
/// clusters did not change, while its auth, limits or header edits may have).
/// </summary>
internal sealed class RouteBindingSlot(RouteModel model, RouteBinding binding) : IRouteGenerationSource
{
    private volatile RouteBinding _current = binding;

    /// <summary>YARP's model the endpoint was built from (the route's map-driven models are made from it).</summary>
    public RouteModel Model { get; } = model;

    public RouteBinding Current
    {
        get => _current;
        set => _current = value;
    }

    IRouteGeneration IRouteGenerationSource.Current => _current;
}

/// <summary>
/// Binds YARP's route endpoints to generations: a <see cref="RouteBindingSlot"/> on each endpoint YARP builds (a
/// convention), and, once YARP applied a generation (<see cref="IConfigChangeListener.ConfigurationApplied"/>),
/// every endpoint YARP kept is moved to it. Routes no longer carry their generation in YARP's config, so a reload
/// that changes one route of 50,000 rebuilds one endpoint, not all of them.
/// </summary>
internal sealed class RouteBindings(SnapshotStore store, IServiceProvider services) : IConfigChangeListener
{
    // One cluster table per generation, shared by its routes. A plain dictionary: freezing 50,000 clusters cost
    // a tenth of a second of every reload, for lookups only map-driven routes make.
    private readonly ConditionalWeakTable<GatewaySnapshot, Dictionary<string, ClusterState>> _clusters = new();

    // The slot of each route's current endpoint. Touched when YARP builds endpoints and when a generation is applied.
    private readonly Dictionary<string, RouteBindingSlot> _live = new(StringComparer.OrdinalIgnoreCase);
    private readonly Lock _lock = new();
    private GatewaySnapshot? _applied;

    // Resolved late: YARP's state lookup is its config manager, which is built with this listener.
    private IProxyStateLookup ProxyState => field ??= services.GetRequiredService<IProxyStateLookup>();

    public void Bind(EndpointBuilder endpoint)
    {
        var model = endpoint.Metadata.OfType<RouteModel>().FirstOrDefault();
        if (model is null) return;
        lock (_lock)
        {
            // A route YARP kept from an older generation still holds that generation's config: when YARP builds
            // its endpoint later (the first request builds them all), it serves the newest generation applied.
            var published = store.SnapshotOf(model.Config);
            var snapshot = published is null || _applied is { } applied && applied.Generation > published.Generation ? _applied : published;
            if (snapshot is null) return;
            var slot = new RouteBindingSlot(model, Create(model, snapshot));
            _live[model.Config.RouteId] = slot;
            endpoint.Metadata.Add(slot);
        }
    }

    private RouteBinding Create(RouteModel model, GatewaySnapshot snapshot)
    {
        // YARP builds a generation's endpoints after it applied that generation's clusters.
        var clusters = _clusters.GetValue(snapshot, s =>
        {
            var table = new Dictionary<string, ClusterState>(s.Clusters.Count, StringComparer.Ordinal);
            foreach (var name in s.Clusters.Keys)
            {
                if (ProxyState.TryGetCluster(name, out var cluster)) table[cluster.ClusterId] = cluster;
            }

            return table;
        });
        var route = snapshot.Routes.GetValueOrDefault(model.Config.RouteId);
        var routeModels = route?.ClusterTemplate is null && route?.Split is null ? null
            : clusters.ToFrozenDictionary(c => c.Key, c => new RouteModel(model.Config, c.Value, model.Transformer), StringComparer.Ordinal);
        return new RouteBinding(model.Config.RouteId, snapshot, route, clusters, routeModels);
    }

    public void ConfigurationApplied(IReadOnlyList<IProxyConfig> proxyConfigs)
    {
        if (proxyConfigs.Select(SnapshotStore.SnapshotOfConfig).OfType<GatewaySnapshot>().FirstOrDefault() is not { } snapshot) return;
        lock (_lock)
        {
            if (_applied is { } applied && applied.Generation >= snapshot.Generation) return;
            _applied = snapshot;
            List<string>? gone = null;
            foreach (var (routeId, slot) in _live)
            {
                if (ReferenceEquals(slot.Current.Snapshot, snapshot)) continue; // built for this generation
                if (!snapshot.Routes.ContainsKey(slot.Model.Config.RouteId))
                {
                    (gone ??= []).Add(routeId);
                    continue;
                }

                // Older generations only move forward (a late notice of an older config must not pull one back).
                if (slot.Current.Snapshot.Generation < snapshot.Generation) slot.Current = Create(slot.Model, snapshot);
            }

            foreach (var routeId in gone ?? []) _live.Remove(routeId);
        }
    }

    public void ConfigurationLoadingFailed(IProxyConfigProvider configProvider, Exception exception)
    {
    }

    public void ConfigurationLoaded(IReadOnlyList<IProxyConfig> proxyConfigs)
    {
    }

    public void ConfigurationApplyingFailed(IReadOnlyList<IProxyConfig> proxyConfigs, Exception exception)
    {
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
