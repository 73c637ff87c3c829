using System.Text;
using Portcullis.Configuration;
using Yarp.ReverseProxy.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Routing;

/// <summary>What routes refer to by name, compiled before them.</summary>
internal sealed record RouteInputs(
    Dictionary<string, CompiledMap> Maps,
    HashSet<string> ClusterNames,
    Identity.CompiledCredentials Credentials,
    Traffic.TrafficPolicies Traffic);

/// <summary>Each route's gateway-side behaviour and the YARP route that matches it.</summary>
internal sealed record RouteBuild(List<CompiledRoute> Compiled, List<RouteConfig> Proxy);

/// <summary>Validation and compilation of routes: action, cluster (static or by map), headers, auth and traffic.</summary>
internal static class RoutesCompiler
{
    internal static RouteBuild Compile(CompileContext context, IReadOnlyList<RouteOptions> routes, RouteInputs inputs)
    {
        var compiled = new List<CompiledRoute>();
        var proxy = new List<RouteConfig>();
        if (routes.Count == 0)
        {
            context.Warning("routes", "no routes are configured; every request will get 404");
        }

        var names = new Dictionary<string, int>(StringComparer.Ordinal);
        // Precedence: lower `order` first, then file order. YARP gets a distinct Order per route so
        // ASP.NET routing never sees two equally ranked candidates.
        var ranked = routes.Select((route, index) => (route, index)).OrderBy(r => r.route.Order).ThenBy(r => r.index).ToList();
        for (var rank = 0; rank < ranked.Count; rank++)
        {
            var (route, i) = ranked[rank];
            var path = $"routes[{i}]";
            if (string.IsNullOrWhiteSpace(route.Name))
            {
                context.Error(path, "route has no name", "add name: orders");
                continue;
            }

            if (names.TryGetValue(route.Name, out var first))
            {
                context.Error(path + ".name", $"duplicate route name '{route.Name}' (first at routes[{first}])", "give each route its own name");
                continue;
            }

            names[route.Name] = i;
            var actions = (route.Cluster is not null ? 1 : 0) + (route.Split is not null ? 1 : 0) + (route.Redirect is not null ? 1 : 0) + (route.Respond is not null ? 1 : 0);
            if (actions != 1)
            {
                context.Error(path, $"route '{route.Name}' must have exactly one of cluster, split, redirect or respond (it has {actions})", "to proxy, add cluster: NAME");
                continue;
            }

            var (route1, proxy1) = CompileRoute(context, route, path, rank, inputs);
            compiled.Add(route1);
            proxy.Add(proxy1);
        }

        return new RouteBuild(compiled, proxy);
    }

    private static (CompiledRoute Compiled, RouteConfig Proxy) CompileRoute(CompileContext context, RouteOptions route, string path, int rank, RouteInputs inputs)
    {
        var match = RouteMatchCompiler.Compile(context, route.Match, path + ".match");
        var (staticCluster, clusterTemplate) = route.Cluster is null ? (null, null) : CompileClusterTarget(context, route, path, inputs);
        var split = route.Split is null ? null : CompileSplit(context, route.Split, path + ".split", inputs.ClusterNames);
        var cors = CorsCompiler.Compile(context, route.Cors, path + ".cors");
        var setHeaders = RouteTransformsCompiler.CompileHeaders(context, route.RequestHeaders.Set, path + ".requestHeaders.set", inputs.Maps);
        var response = route.Transforms.Response;
        ValidateAction(context, route, path);
        var (rateLimits, quota, concurrency) = Traffic.TrafficCompiler.CompileRoute(context, route, path, inputs.Traffic);
        var compiled = new CompiledRoute
        {
            Name = route.Name,
            RateLimits = rateLimits,
            Quota = quota,
            Concurrency = concurrency,
            Plans = route.Plans ? inputs.Traffic.Plans?.ForRoute(route.Name) : null,
            ResponseHeaders = Observability.ResponseHeadersCompiler.Compile(context, route.ResponseHeaders, path + ".responseHeaders"),
            Auth = Identity.RouteAuthCompiler.Compile(context, route.Auth, path + ".auth", inputs.Credentials, staticCluster ?? route.Name),
            Action = route.Redirect is not null ? RouteAction.Redirect : route.Respond is not null ? RouteAction.Respond : RouteAction.Proxy,
            ClusterTemplate = clusterTemplate,
            StaticCluster = staticCluster,
            Split = split,
            JsonLimits = CompiledJsonLimits.Compile(context, route.JsonLimits, path + ".jsonLimits"),
            Compression = CompiledCompression.Compile(context, route.Compression, path + ".compression"),
            Cache = CompiledCache.Compile(context, route.Cache, route, path + ".cache"),
            Mirror = CompiledMirror.Compile(context, route.Mirror, path + ".mirror", inputs.ClusterNames),
            CorsTask = cors is null ? null : Task.FromResult<Microsoft.AspNetCore.Cors.Infrastructure.CorsPolicy?>(cors),
            SetHeaders = [.. setHeaders],
            RemoveHeaders = [.. route.RequestHeaders.Remove],
            ResponseSet = RouteTransformsCompiler.CompileHeaders(context, response.Set, path + ".transforms.response.set", inputs.Maps),
            ResponseAdd = RouteTransformsCompiler.CompileHeaders(context, response.Add, path + ".transforms.response.add", inputs.Maps),
            ResponseRemove = [.. response.Remove],
            SecurityHeaders = SecurityHeader.Preset(route.Transforms.SecurityHeaders, response),
            PathRewrite = RouteTransformsCompiler.CompilePathRewrite(context, route.Transforms.PathRewrite, path + ".transforms.pathRewrite"),
            PathReplacement = route.Transforms.PathRewrite?.Replacement ?? "",
            Redirect = route.Redirect,
            FixedStatus = route.Respond?.Status ?? 0,
            FixedBody = Encoding.UTF8.GetBytes(route.Respond?.Body ?? ""),
            FixedContentType = route.Respond?.ContentType ?? "",
            FixedHeaders = route.Respond is null ? [] : [.. route.Respond.Headers],
        };

        return (compiled, new RouteConfig
        {
            RouteId = route.Name,
            Order = rank,
            // YARP needs a cluster to start its pipeline; a map-driven route starts on its first
            // possible cluster and RouteActionMiddleware reassigns it per request.
            ClusterId = staticCluster ?? clusterTemplate?.PossibleValues().FirstOrDefault(inputs.ClusterNames.Contains) ?? split?.Clusters[0],
            Match = match,
            CorsPolicy = route.Cors is null ? null : CorsCompiler.PolicyName,
            OutputCachePolicy = route.Cache is { Enabled: true } ? RouteOutputCachePolicy.Name : null,
            Transforms = RouteTransforms(context, route, path),
        });
    }

    /// <summary>Weighted clusters: each a known cluster, listed once, weights ≥ 0 with a positive sum; sticky a request source.</summary>
    private static CompiledSplit? CompileSplit(CompileContext context, RouteSplitOptions split, string path, HashSet<string> clusterNames)
    {
        var ok = true;
        if (split.Clusters.Count == 0)
        {
            context.Error(path + ".clusters", "split has no clusters", "e.g. clusters: [{ cluster: orders-v1, weight: 95 }, { cluster: orders-v2, weight: 5 }]");
            return null;
        }

        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < split.Clusters.Count; i++)
        {
            var target = split.Clusters[i];
            var at = $"{path}.clusters[{i}]";
            if (!clusterNames.Contains(target.Cluster))
            {
                var suggestion = YamlConfigBinder.Suggest(target.Cluster, clusterNames);
                context.Error(at + ".cluster", string.IsNullOrEmpty(target.Cluster) ? "split entry has no cluster" : $"split names unknown cluster '{target.Cluster}'",
                    suggestion is not null ? $"did you mean '{suggestion}'?" : "define it under clusters:");
                ok = false;
            }
            else if (!seen.Add(target.Cluster))
            {
                context.Error(at + ".cluster", $"cluster '{target.Cluster}' is listed twice in the split", "list each cluster once, with its whole weight");
                ok = false;
            }

            if (target.Weight < 0)
            {
                context.Error(at + ".weight", $"weight must be 0 or more (it is {target.Weight})", "weights are relative shares, e.g. 95 and 5");
                ok = false;
            }
        }

        if (ok && split.Clusters.Sum(t => (long)t.Weight) == 0)
        {
            context.Error(path + ".clusters", "every weight is 0: the split would send nothing anywhere", "give at least one cluster a positive weight");
            ok = false;
        }

        RequestSource? sticky = null;
        if (split.Sticky is not null)
        {
            if (RequestSource.TryParse(split.Sticky, out var source, out var error)) sticky = source;
            else
            {
                context.Error(path + ".sticky", $"{error}", $"one of {RequestSource.Syntax}; e.g. sticky: consumer");
                ok = false;
            }
        }

        return ok ? new CompiledSplit([.. split.Clusters.Select(t => (t.Cluster, t.Weight))], sticky) : null;
    }

    /// <summary>A literal cluster name, or a template whose every possible value must name a cluster.</summary>
    private static (string? Static, ValueTemplate? Template) CompileClusterTarget(CompileContext context, RouteOptions route, string path, RouteInputs inputs)
    {
        var clusterNames = inputs.ClusterNames;
        var maps = inputs.Maps;
        var template = ValueTemplate.Parse(route.Cluster!, out var error);
        if (template is null)
        {
            context.Error(path + ".cluster", $"bad cluster template: {error}");
            return (null, null);
        }

        if (template.IsLiteral)
        {
            if (!clusterNames.Contains(route.Cluster!))
            {
                var suggestion = YamlConfigBinder.Suggest(route.Cluster!, clusterNames);
                context.Error(path + ".cluster", $"route '{route.Name}' names unknown cluster '{route.Cluster}'",
                    suggestion is not null ? $"did you mean '{suggestion}'?" : "define it under clusters:");
            }

            return (route.Cluster, null);
        }

        if (!template.IsBounded)
        {
            context.Error(path + ".cluster", "a cluster template may only use ${map:...} lookups", "the gateway checks every cluster a route can reach at load; map the value first, e.g. ${map:tier(consumer)}");
            return (null, null);
        }

        BindTemplate(context, template, maps, path + ".cluster");
        if (template.MapNames.All(maps.ContainsKey))
        {
            foreach (var candidate in template.PossibleValues())
            {
                if (!clusterNames.Contains(candidate))
                {
                    context.Error(path + ".cluster", $"route '{route.Name}' can resolve to unknown cluster '{candidate}' (from map {string.Join(", ", template.MapNames)})", "define that cluster, or fix the map value");
                }
            }
        }

        return (null, template);
    }

    private static void ValidateAction(CompileContext context, RouteOptions route, string path)
    {
        if (route.Redirect is { } redirect)
        {
            if (redirect.Status is not (301 or 302 or 303 or 307 or 308)) context.Error(path + ".redirect.status", $"redirect status {redirect.Status} is not 301, 302, 303, 307 or 308");
            if (!(redirect.Url.StartsWith('/') || CompileContext.IsHttpUrl(redirect.Url))) context.Error(path + ".redirect.url", $"redirect url '{redirect.Url}' is neither an absolute http(s) URL nor a path");
        }

        if (route.Respond is { } respond && respond.Status is < 200 or > 599)
        {
            context.Error(path + ".respond.status", $"status {respond.Status} is not between 200 and 599");
        }

        if (route.StripPrefix is { } strip && (!strip.StartsWith('/') || strip.EndsWith('/')))
        {
            context.Error(path + ".stripPrefix", $"stripPrefix '{strip}' must start with '/' and not end with '/'", "e.g. stripPrefix: /api");
        }
    }

    private static List<Dictionary<string, string>>? RouteTransforms(CompileContext context, RouteOptions route, string path)
    {
        var transforms = new List<Dictionary<string, string>>();
        if (route.StripPrefix is not null) transforms.Add(new() { ["PathRemovePrefix"] = route.StripPrefix });
        if (route.PreserveHost) transforms.Add(new() { ["RequestHeaderOriginalHost"] = "true" });
        RouteTransformsCompiler.AddQueryTransforms(context, route.Transforms.Query, path + ".transforms.query", transforms);
        return transforms.Count > 0 ? transforms : null;
    }

    internal static void BindTemplate(CompileContext context, ValueTemplate template, Dictionary<string, CompiledMap> maps, string path)
    {
        foreach (var missing in template.Bind(maps))
        {
            var suggestion = YamlConfigBinder.Suggest(missing, maps.Keys);
            context.Error(path, $"unknown map '{missing}'", suggestion is not null ? $"did you mean '{suggestion}'?" : "define it under maps:");
        }
    }
}
