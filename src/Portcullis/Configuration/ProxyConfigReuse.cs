using System.Runtime.CompilerServices;
using Yarp.ReverseProxy.Configuration;

namespace Portcullis.Configuration;

/// <summary>
/// The YARP route and cluster objects that YARP's validator accepted, by instance. A compile hands unchanged routes
/// and clusters the previous generation's objects (<see cref="Reuse"/>), so a reload of 50,000 routes with one
/// changed validates one route, where YARP's validator alone re-parses every route pattern twice per reload (once
/// in our compile, once in YARP's apply: ~1.1 s each at that size). Keyed weakly: an entry lives as long as the
/// object it vouches for, so nothing here grows with reloads.
/// </summary>
internal sealed class ValidatedProxyConfigs
{
    private static readonly object Valid = new();
    private readonly ConditionalWeakTable<RouteConfig, object> _routes = new();
    private readonly ConditionalWeakTable<ClusterConfig, object> _clusters = new();

    public bool IsValid(RouteConfig route) => _routes.TryGetValue(route, out _);

    public bool IsValid(ClusterConfig cluster) => _clusters.TryGetValue(cluster, out _);

    public void MarkValid(RouteConfig route) => _routes.AddOrUpdate(route, Valid);

    public void MarkValid(ClusterConfig cluster) => _clusters.AddOrUpdate(cluster, Valid);

    /// <summary>
    /// Replaces each route of <paramref name="routes"/> equal to the previous generation's route of the same name
    /// by that previous object (YARP's own equality, which is also how YARP decides to keep an endpoint; names and
    /// cluster names compared exactly, as YARP compares them without case).
    /// </summary>
    public static void Reuse(List<RouteConfig> routes, IReadOnlyList<RouteConfig> previous)
    {
        if (previous.Count == 0) return;
        var byId = new Dictionary<string, RouteConfig>(previous.Count, StringComparer.Ordinal);
        foreach (var route in previous) byId[route.RouteId] = route;
        for (var i = 0; i < routes.Count; i++)
        {
            if (byId.TryGetValue(routes[i].RouteId, out var old) && string.Equals(old.ClusterId, routes[i].ClusterId, StringComparison.Ordinal) && old.Equals(routes[i]))
            {
                routes[i] = old;
            }
        }
    }

    /// <inheritdoc cref="Reuse(List{RouteConfig}, IReadOnlyList{RouteConfig})"/>
    public static void Reuse(List<ClusterConfig> clusters, IReadOnlyList<ClusterConfig> previous)
    {
        if (previous.Count == 0) return;
        var byId = new Dictionary<string, ClusterConfig>(previous.Count, StringComparer.Ordinal);
        foreach (var cluster in previous) byId[cluster.ClusterId] = cluster;
        for (var i = 0; i < clusters.Count; i++)
        {
            if (byId.TryGetValue(clusters[i].ClusterId, out var old) && old.Equals(clusters[i])) clusters[i] = old;
        }
    }
}

/// <summary>
/// YARP's <see cref="IConfigValidator"/>, asked only about objects it has not accepted before
/// (<see cref="ValidatedProxyConfigs"/>). A route or cluster object is immutable and its validity depends only on
/// it and on the policies registered at start, so an accepted object stays acceptable.
/// </summary>
internal sealed class CachedConfigValidator(IConfigValidator inner, ValidatedProxyConfigs validated) : IConfigValidator
{
    public async ValueTask<IList<Exception>> ValidateRouteAsync(RouteConfig route)
    {
        if (validated.IsValid(route)) return [];
        var errors = await inner.ValidateRouteAsync(route).ConfigureAwait(false);
        if (errors.Count == 0) validated.MarkValid(route);
        return errors;
    }

    public async ValueTask<IList<Exception>> ValidateClusterAsync(ClusterConfig cluster)
    {
        if (validated.IsValid(cluster)) return [];
        var errors = await inner.ValidateClusterAsync(cluster).ConfigureAwait(false);
        if (errors.Count == 0) validated.MarkValid(cluster);
        return errors;
    }
}
