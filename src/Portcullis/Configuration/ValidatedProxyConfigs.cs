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
    public static void Reuse(List<RouteConfig> routes, IReadOnlyList<RouteConfig> previous) =>
        Reuse(routes, previous, static r => r.RouteId, static (old, next) => string.Equals(old.ClusterId, next.ClusterId, StringComparison.Ordinal) && old.Equals(next));

    /// <summary>As for routes: each cluster equal to the previous generation's cluster of the same name becomes that object.</summary>
    public static void Reuse(List<ClusterConfig> clusters, IReadOnlyList<ClusterConfig> previous) =>
        Reuse(clusters, previous, static c => c.ClusterId, static (old, next) => old.Equals(next));

    private static void Reuse<T>(List<T> items, IReadOnlyList<T> previous, Func<T, string> id, Func<T, T, bool> same)
        where T : class
    {
        if (previous.Count == 0) return;
        var byId = new Dictionary<string, T>(previous.Count, StringComparer.Ordinal);
        foreach (var item in previous) byId[id(item)] = item;
        for (var i = 0; i < items.Count; i++)
        {
            if (byId.TryGetValue(id(items[i]), out var old) && same(old, items[i])) items[i] = old;
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
