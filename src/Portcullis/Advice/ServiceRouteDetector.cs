using System.Text;
using Portcullis.Configuration;

namespace Portcullis.Advice;

/// <summary>
/// Config checks of routes and their clusters (offline too): cluster.retry-non-idempotent (retries configured for a
/// cluster whose routes take only non-idempotent methods, which the gateway never retries) and
/// route.unauthenticated-sibling (a route without `auth` on the same first path segment as routes that require it).
/// </summary>
internal sealed class ServiceRouteDetector : IAdviceDetector
{
    private static readonly HashSet<string> Idempotent = new(["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"], StringComparer.OrdinalIgnoreCase);

    public string Name => "services.routes";

    public IReadOnlyList<Finding> Detect(AdviceContext context)
    {
        var findings = new List<Finding>();
        Retries(context, findings);
        Siblings(context, findings);
        return findings;
    }

    private static void Retries(AdviceContext context, List<Finding> findings)
    {
        var config = context.Snapshot.Config;
        // The routes that take only non-idempotent methods, by cluster with retries (most configs have none), and only
        // then how many routes each of those clusters has: this runs every minute over every route.
        Dictionary<string, List<RouteOptions>>? unsafeByCluster = null;
        foreach (var (route, cluster) in ServiceAdvice.RouteClusters(config))
        {
            if (!OnlyNonIdempotent(route.Match.Methods) || !config.Clusters.TryGetValue(cluster, out var options) || options.Retries.Attempts <= 0) continue;
            unsafeByCluster ??= new(StringComparer.Ordinal);
            if (!unsafeByCluster.TryGetValue(cluster, out var list)) unsafeByCluster[cluster] = list = [];
            list.Add(route);
        }

        if (unsafeByCluster is null) return;
        var routeCounts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (_, cluster) in ServiceAdvice.RouteClusters(config))
        {
            if (unsafeByCluster.ContainsKey(cluster)) routeCounts[cluster] = routeCounts.GetValueOrDefault(cluster) + 1;
        }

        foreach (var (cluster, unsafeOnly) in unsafeByCluster)
        {
            var clusterOptions = config.Clusters[cluster];
            var routeCount = routeCounts[cluster];
            var all = unsafeOnly.Count == routeCount;
            var names = string.Join(", ", unsafeOnly.Select(r => r.Name));
            var methods = string.Join(", ", unsafeOnly.SelectMany(r => r.Match.Methods).Select(m => m.ToUpperInvariant()).Distinct(StringComparer.Ordinal));
            var evidence = new Evidence(context.Now, context.Now,
            [
                new("retries", clusterOptions.Retries.Attempts, "retries"),
                new("routes with only non-idempotent methods", unsafeOnly.Count, "routes"),
                new("routes to the cluster", routeCount, "routes"),
            ])
            {
                Basis = "the configuration",
                DashboardLink = DashboardLinks.Samples(context.WindowStart, context.Now, ("cluster", cluster)),
            };
            var explanation = $"Cluster {cluster} has retries: {clusterOptions.Retries.Attempts}, but route(s) {names} accept only {methods}. The gateway retries only idempotent methods "
                + "(GET, HEAD, OPTIONS, PUT, DELETE, TRACE): sending a POST or PATCH twice can do its work twice, so these requests fail on the first connection error "
                + "instead of being retried, whatever the setting says. "
                + (all ? "Every route to the cluster is of that kind, so the patch sets retries: 0 to say what actually happens; make the clients retry with an idempotency key if the upstream supports one."
                       : "Other routes to the cluster still use the retries, so there is no patch: make the clients retry these with an idempotency key if the upstream supports one.");
            findings.Add(ServiceAdvice.Make(context, FindingKinds.RetryNonIdempotent, FindingSeverity.Info, new FindingSubject(SubjectKind.Cluster, cluster),
                $"Retries on cluster {cluster} never apply to its {methods} route(s)", explanation, evidence,
                patch: all ? new ConfigPatch(ServiceAdvice.ClusterPatch(cluster, "retries: 0"), $"sets clusters.{cluster}.retries to 0 (its routes take only {methods})") : null));
        }
    }

    // By index: an enumerator of the methods per route, every minute, is what this check is meant not to allocate.
    private static bool OnlyNonIdempotent(IReadOnlyList<string> methods)
    {
        if (methods.Count == 0) return false;
        for (var i = 0; i < methods.Count; i++)
        {
            if (Idempotent.Contains(methods[i])) return false;
        }

        return true;
    }

    private static void Siblings(AdviceContext context, List<Finding> findings)
    {
        var routes = context.Snapshot.Config.Routes;
        // Authenticated routes by first segment, built once: comparing every public route with every route made
        // this check quadratic (20 s of a core at 50,000 routes).
        var authenticated = new Dictionary<string, List<RouteOptions>>(StringComparer.Ordinal);
        foreach (var route in routes)
        {
            if (route.Auth is not { Anonymous: false } || Segment(route.Match) is not { } segment) continue;
            if (!authenticated.TryGetValue(segment, out var list)) authenticated[segment] = list = [];
            list.Add(route);
        }

        if (authenticated.Count == 0) return;
        foreach (var route in routes)
        {
            if (route.Auth is not null || route.Redirect is not null || route.Respond is not null || (route.Cluster is null && route.Split is null)) continue;
            if (Segment(route.Match) is not { } segment || !authenticated.TryGetValue(segment, out var sameSegment)) continue;
            var siblings = sameSegment.Where(r => HostsOverlap(r.Match.Hosts, route.Match.Hosts)).ToList();
            if (siblings.Count == 0) continue;
            var sibling = siblings[0];
            var names = string.Join(", ", siblings.Select(s => s.Name));
            var path = route.Match.PathPrefix ?? route.Match.Path ?? "";
            var auth = AuthYaml(sibling.Auth!);
            var evidence = new Evidence(context.Now, context.Now,
            [
                new("authenticated routes on /" + segment, siblings.Count, "routes"),
            ])
            {
                Basis = "the configuration",
                DashboardLink = DashboardLinks.Route(route.Name, context.Now - TimeSpan.FromDays(1), context.Now),
            };
            var explanation = $"Route {route.Name} ({path}) has no auth section, so anyone may call it, while route(s) {names} under the same prefix /{segment} require credentials. "
                + "That is often an oversight (a new endpoint added without copying the auth), and it exposes the upstream behind an authenticated API. "
                + (auth is not null ? $"The patch gives it the same auth as {sibling.Name}. " : "")
                + "If it is meant to be public, say so with auth: { anonymous: true } and this finding goes away.";
            findings.Add(ServiceAdvice.Make(context, FindingKinds.UnauthenticatedSibling, FindingSeverity.Warning, new FindingSubject(SubjectKind.Route, route.Name),
                $"Route {route.Name} is public beside authenticated routes on /{segment}", explanation, evidence,
                patch: auth is null ? null : new ConfigPatch(ServiceAdvice.RoutePatch(route.Name, auth), $"gives route {route.Name} the auth of route {sibling.Name}")));
        }
    }

    /// <summary>The first literal path segment ("orders" for /orders/{id}); null for "/" or a parameter first.</summary>
    internal static string? Segment(RouteMatchOptions match)
    {
        var path = match.PathPrefix ?? match.Path;
        if (path is null) return null;
        var trimmed = path.TrimStart('/');
        var end = trimmed.IndexOf('/');
        var first = end < 0 ? trimmed : trimmed[..end];
        return first.Length == 0 || first.Contains('{') ? null : first.ToLowerInvariant();
    }

    private static bool HostsOverlap(IReadOnlyList<string> a, IReadOnlyList<string> b) =>
        a.Count == 0 || b.Count == 0 || a.Any(h => b.Contains(h, StringComparer.OrdinalIgnoreCase));

    /// <summary>The auth section as YAML when it is made only of simple keys (else null: no patch rather than a partial copy).</summary>
    private static string? AuthYaml(RouteAuthOptions auth)
    {
        if (auth.Claims.Count > 0 || auth.AssertionAudience is not null || auth.ForwardCertificate is not null || auth.ForwardCredentials) return null;
        var yaml = new StringBuilder("auth:\n");
        var keys = 0;
        void List(string key, IReadOnlyList<string> values)
        {
            if (values.Count == 0) return;
            yaml.Append("  ").Append(key).Append(": ").Append(ServiceAdvice.FlowList(values)).Append('\n');
            keys++;
        }

        List("issuers", auth.Issuers);
        List("introspection", auth.Introspection);
        if (auth.ApiKey) { yaml.Append("  apiKey: true\n"); keys++; }
        if (auth.Session is { } session) { yaml.Append("  session: ").Append(ServiceAdvice.Yaml(session)).Append('\n'); keys++; }
        if (auth.ClientCertificate) { yaml.Append("  clientCertificate: true\n"); keys++; }
        List("scopes", auth.Scopes);
        List("groups", auth.Groups);
        List("consumers", auth.Consumers);
        return keys == 0 ? null : yaml.ToString();
    }
}
