using System.Collections.Frozen;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using Portcullis.Routing;
using Yarp.ReverseProxy.Configuration;
using YarpHeaderMatchMode = Yarp.ReverseProxy.Configuration.HeaderMatchMode;

namespace Portcullis.Configuration;

public sealed record BuildResult(GatewaySnapshot? Snapshot, IReadOnlyList<ConfigDiagnostic> Diagnostics)
{
    public bool Succeeded => Snapshot is not null;

    public IEnumerable<ConfigDiagnostic> Errors => Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error);
}

/// <summary>
/// Reads, validates and compiles a config file into a <see cref="GatewaySnapshot"/>. Every problem is
/// collected (with file:line:column and a hint) before deciding; one error rejects the whole file.
/// </summary>
public sealed partial class SnapshotBuilder
{

    private static readonly string[] KnownMethods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"];

    private readonly Func<string, string?> _environment;
    private readonly IConfigValidator? _proxyValidator;
    private readonly TimeProvider _time;

    public SnapshotBuilder(Func<string, string?>? environment = null, IConfigValidator? proxyValidator = null, TimeProvider? time = null)
    {
        _environment = environment ?? Environment.GetEnvironmentVariable;
        _proxyValidator = proxyValidator;
        _time = time ?? TimeProvider.System;
    }

    public BuildResult Build(string path, long generation = 1)
    {
        var diagnostics = new List<ConfigDiagnostic>();
        var loaded = ConfigLoader.Load(path, _environment, diagnostics);
        return loaded is null ? new BuildResult(null, diagnostics) : Compile(loaded, generation, diagnostics);
    }

    public BuildResult Compile(LoadedConfig loaded, long generation, List<ConfigDiagnostic> diagnostics)
    {
        var context = new CompileContext(loaded, diagnostics, _environment, _time);

        var listeners = Listeners.ListenersCompiler.Compile(context, context.Config.Listeners);
        var trusted = Listeners.ListenersCompiler.CompileTrustedProxies(context, context.Config.TrustedProxies);
        Listeners.ListenersCompiler.ValidateLimits(context, context.Config.Limits);
        var maps = CompileMaps(context);
        var clusters = Clusters.ClustersCompiler.Compile(context, context.Config.Clusters);
        var credentials = Identity.IdentityCompiler.Compile(context, context.Config.Identity);
        var sessions = context.Config.Identity.Sessions is { } sessionOptions ? Identity.Sessions.SessionsCompiler.Compile(context, sessionOptions) : null;
        var traffic = Traffic.TrafficCompiler.Compile(context, context.Config.Stores.Redis, context.Config.RateLimits, context.Config.Quotas);
        var observability = Observability.ObservabilityCompiler.Compile(context, context.Config.Observability, context.Config.Identity.ApiKeys?.QueryParameter);
        var adminAuth = Admin.AdminCompiler.Compile(context, context.Config.Admin.Auth, listeners);
        var routes = CompileRoutes(context, maps, clusters, credentials, traffic);

        if (_proxyValidator is not null && !context.HasErrors)
        {
            ValidateWithProxy(context, routes.Proxy, clusters.Proxy);
        }

        if (context.HasErrors)
        {
            return new BuildResult(null, diagnostics);
        }

        var snapshot = new GatewaySnapshot(
            loaded,
            generation,
            _time.GetUtcNow(),
            context.Fingerprint,
            context.Files,
            routes.Compiled.ToFrozenDictionary(r => r.Name, StringComparer.Ordinal),
            clusters.Compiled.ToFrozenDictionary(c => c.Name, StringComparer.Ordinal),
            maps.ToFrozenDictionary(StringComparer.Ordinal),
            routes.Proxy,
            clusters.Proxy,
            trusted,
            listeners,
            [.. credentials.Issuers.Values],
            credentials.ApiKeys,
            traffic.RateLimits.ToFrozenDictionary(StringComparer.Ordinal),
            traffic.Quotas.ToFrozenDictionary(StringComparer.Ordinal))
        {
            Observability = observability,
            Sessions = sessions,
            AdminAuth = adminAuth,
            HeaderScrub = Identity.InboundHeaderScrub.Compile(loaded.Config, routes.Compiled, clusters.Compiled),
        };
        return new BuildResult(snapshot, diagnostics);
    }

    private static Dictionary<string, CompiledMap> CompileMaps(CompileContext context)
    {
        var maps = new Dictionary<string, CompiledMap>(StringComparer.Ordinal);
        foreach (var (name, options) in context.Config.Maps)
        {
            var path = "maps." + name;
            var entries = new List<MapEntry>();
            var before = new List<ConfigDiagnostic>();
            if (options.File is null && options.Entries.Count == 0)
            {
                context.Error(path, $"map '{name}' has neither a file nor entries", "add file: maps/" + name + ".map");
            }

            if (options.File is not null)
            {
                var full = context.Loaded.Resolve(options.File);
                context.Files.Add(full);
                try
                {
                    var text = File.ReadAllText(full);
                    context.FileContents.Add(text);
                    entries.AddRange(MapFileParser.Parse(text, full, options.Kind, options.IgnoreCase, before));
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
                {
                    context.Error(path + ".file", $"cannot read map file '{options.File}' ({full}): {ConfigLoader.Describe(ex)}", "paths are relative to the config file");
                }
            }

            var comparison = options.IgnoreCase ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
            foreach (var (key, value) in options.Entries)
            {
                var entryPath = path + ".entries." + key;
                if (entries.Any(e => string.Equals(e.Key, key, comparison)))
                {
                    context.Error(entryPath, $"map key '{key}' is in both the file and entries", "keep one");
                    continue;
                }

                if (string.IsNullOrWhiteSpace(value))
                {
                    context.Error(entryPath + "#key", $"map entry '{key}' has no value", $"write {key}: VALUE");
                    continue;
                }

                System.Text.RegularExpressions.Regex? pattern = null;
                if (options.Kind == MapKind.Regex && (pattern = MapFileParser.CompilePattern(key, options.IgnoreCase, out var error, out var hint)) is null)
                {
                    context.Error(entryPath + "#key", error!, hint);
                    continue;
                }

                var (line, _) = context.Loaded.Locations.Of(entryPath);
                entries.Add(new MapEntry(key, value, line, pattern));
            }

            foreach (var d in before) context.Add(d);
            maps[name] = new CompiledMap(name, options.Kind, options.IgnoreCase, options.Default, entries);
        }

        return maps;
    }

    private sealed record RouteBuild(List<CompiledRoute> Compiled, List<RouteConfig> Proxy);

    private static RouteBuild CompileRoutes(CompileContext context, Dictionary<string, CompiledMap> maps, Clusters.ClusterBuild clusters, Identity.CompiledCredentials credentials, Traffic.TrafficPolicies traffic)
    {
        var compiled = new List<CompiledRoute>();
        var proxy = new List<RouteConfig>();
        var routes = context.Config.Routes;
        if (routes.Count == 0)
        {
            context.Warning("routes", "no routes are configured; every request will get 404");
        }

        var clusterNames = clusters.Compiled.Select(c => c.Name).ToHashSet(StringComparer.Ordinal);
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
            var actions = (route.Cluster is not null ? 1 : 0) + (route.Redirect is not null ? 1 : 0) + (route.Respond is not null ? 1 : 0);
            if (actions != 1)
            {
                context.Error(path, $"route '{route.Name}' must have exactly one of cluster, redirect or respond (it has {actions})", "to proxy, add cluster: NAME");
                continue;
            }

            var match = CompileMatch(context, route.Match, path + ".match");
            ValueTemplate? clusterTemplate = null;
            string? staticCluster = null;
            if (route.Cluster is not null)
            {
                var template = ValueTemplate.Parse(route.Cluster, out var error);
                if (template is null)
                {
                    context.Error(path + ".cluster", $"bad cluster template: {error}");
                }
                else if (template.IsLiteral)
                {
                    staticCluster = route.Cluster;
                    if (!clusterNames.Contains(route.Cluster))
                    {
                        var suggestion = YamlConfigBinder.Suggest(route.Cluster, clusterNames);
                        context.Error(path + ".cluster", $"route '{route.Name}' names unknown cluster '{route.Cluster}'",
                            suggestion is not null ? $"did you mean '{suggestion}'?" : "define it under clusters:");
                    }
                }
                else
                {
                    clusterTemplate = template;
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
                }
            }

            var setHeaders = new List<(string, ValueTemplate)>();
            foreach (var (header, value) in route.RequestHeaders.Set)
            {
                var template = ValueTemplate.Parse(value, out var error);
                if (template is null)
                {
                    context.Error($"{path}.requestHeaders.set.{header}", $"bad header template: {error}");
                    continue;
                }

                BindTemplate(context, template, maps, $"{path}.requestHeaders.set.{header}");
                setHeaders.Add((header, template));
            }

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

            var (rateLimits, quota, concurrency) = Traffic.TrafficCompiler.CompileRoute(context, route, path, traffic);
            compiled.Add(new CompiledRoute
            {
                Name = route.Name,
                RateLimits = rateLimits,
                Quota = quota,
                Concurrency = concurrency,
                ResponseHeaders = Observability.ResponseHeadersCompiler.Compile(context, route.ResponseHeaders, path + ".responseHeaders"),
                Auth = Identity.RouteAuthCompiler.Compile(context, route.Auth, path + ".auth", credentials, staticCluster ?? route.Name),
                Action = route.Redirect is not null ? RouteAction.Redirect : route.Respond is not null ? RouteAction.Respond : RouteAction.Proxy,
                ClusterTemplate = clusterTemplate,
                StaticCluster = staticCluster,
                SetHeaders = [.. setHeaders],
                RemoveHeaders = [.. route.RequestHeaders.Remove],
                Redirect = route.Redirect,
                FixedStatus = route.Respond?.Status ?? 0,
                FixedBody = Encoding.UTF8.GetBytes(route.Respond?.Body ?? ""),
                FixedContentType = route.Respond?.ContentType ?? "",
                FixedHeaders = route.Respond is null ? [] : [.. route.Respond.Headers],
            });

            proxy.Add(new RouteConfig
            {
                RouteId = route.Name,
                Order = rank,
                // YARP needs a cluster to start its pipeline; a map-driven route starts on its first
                // possible cluster and RouteActionMiddleware reassigns it per request.
                ClusterId = staticCluster ?? clusterTemplate?.PossibleValues().FirstOrDefault(clusterNames.Contains),
                Match = match,
                Transforms = RouteTransforms(route),
            });
        }

        return new RouteBuild(compiled, proxy);
    }

    private static List<Dictionary<string, string>>? RouteTransforms(RouteOptions route)
    {
        var transforms = new List<Dictionary<string, string>>();
        if (route.StripPrefix is not null) transforms.Add(new() { ["PathRemovePrefix"] = route.StripPrefix });
        if (route.PreserveHost) transforms.Add(new() { ["RequestHeaderOriginalHost"] = "true" });
        return transforms.Count > 0 ? transforms : null;
    }

    private static void BindTemplate(CompileContext context, ValueTemplate template, Dictionary<string, CompiledMap> maps, string path)
    {
        foreach (var missing in template.Bind(maps))
        {
            var suggestion = YamlConfigBinder.Suggest(missing, maps.Keys);
            context.Error(path, $"unknown map '{missing}'", suggestion is not null ? $"did you mean '{suggestion}'?" : "define it under maps:");
        }
    }

    private static RouteMatch CompileMatch(CompileContext context, RouteMatchOptions match, string path)
    {
        if (match.Path is not null && match.PathPrefix is not null)
        {
            context.Error(path + ".pathPrefix", "path and pathPrefix cannot both be set", "use one of them");
        }

        string routePath;
        if (match.PathPrefix is { } prefix)
        {
            if (!prefix.StartsWith('/')) context.Error(path + ".pathPrefix", $"pathPrefix '{prefix}' must start with '/'");
            routePath = prefix.TrimEnd('/') + "/{**portcullis_rest}";
        }
        else if (match.Path is { } template)
        {
            if (!template.StartsWith('/')) context.Error(path + ".path", $"path '{template}' must start with '/'");
            routePath = template;
        }
        else
        {
            routePath = "/{**portcullis_rest}";
        }

        for (var i = 0; i < match.Hosts.Count; i++)
        {
            var host = match.Hosts[i];
            if (host.Length == 0 || host.Contains('/') || (host.Contains('*') && !host.StartsWith("*.", StringComparison.Ordinal)))
            {
                context.Error($"{path}.hosts[{i}]", $"'{host}' is not a host name", "write api.example.com, *.example.com or api.example.com:8443");
            }
        }

        var methods = new List<string>();
        for (var i = 0; i < match.Methods.Count; i++)
        {
            var method = match.Methods[i].ToUpperInvariant();
            if (!KnownMethods.Contains(method))
            {
                var suggestion = YamlConfigBinder.Suggest(method, KnownMethods);
                context.Error($"{path}.methods[{i}]", $"'{match.Methods[i]}' is not an HTTP method", suggestion is not null ? $"did you mean '{suggestion}'?" : null);
            }

            methods.Add(method);
        }

        var headers = new List<RouteHeader>();
        for (var i = 0; i < match.Headers.Count; i++)
        {
            var header = match.Headers[i];
            var headerPath = $"{path}.headers[{i}]";
            if (string.IsNullOrWhiteSpace(header.Name)) context.Error(headerPath, "header condition has no name");
            var needsValues = header.Mode is not (Configuration.HeaderMatchMode.Present or Configuration.HeaderMatchMode.Absent);
            if (needsValues && header.Values.Count == 0) context.Error(headerPath, $"header condition on '{header.Name}' needs values for mode {header.Mode.ToString().ToLowerInvariant()}", "add values: [...] or use mode: present");
            headers.Add(new RouteHeader
            {
                Name = header.Name,
                Values = needsValues ? [.. header.Values] : null,
                Mode = header.Mode switch
                {
                    Configuration.HeaderMatchMode.Exact => YarpHeaderMatchMode.ExactHeader,
                    Configuration.HeaderMatchMode.Prefix => YarpHeaderMatchMode.HeaderPrefix,
                    Configuration.HeaderMatchMode.Contains => YarpHeaderMatchMode.Contains,
                    Configuration.HeaderMatchMode.Present => YarpHeaderMatchMode.Exists,
                    _ => YarpHeaderMatchMode.NotExists,
                },
            });
        }

        var query = new List<RouteQueryParameter>();
        for (var i = 0; i < match.Query.Count; i++)
        {
            var parameter = match.Query[i];
            var queryPath = $"{path}.query[{i}]";
            if (string.IsNullOrWhiteSpace(parameter.Name)) context.Error(queryPath, "query condition has no name");
            var needsValues = parameter.Mode != QueryMatchMode.Present;
            if (needsValues && parameter.Values.Count == 0) context.Error(queryPath, $"query condition on '{parameter.Name}' needs values", "add values: [...] or use mode: present");
            query.Add(new RouteQueryParameter
            {
                Name = parameter.Name,
                Values = needsValues ? [.. parameter.Values] : null,
                Mode = parameter.Mode switch
                {
                    QueryMatchMode.Exact => QueryParameterMatchMode.Exact,
                    QueryMatchMode.Prefix => QueryParameterMatchMode.Prefix,
                    QueryMatchMode.Contains => QueryParameterMatchMode.Contains,
                    _ => QueryParameterMatchMode.Exists,
                },
            });
        }

        return new RouteMatch
        {
            Path = routePath,
            Hosts = match.Hosts.Count > 0 ? [.. match.Hosts] : null,
            Methods = methods.Count > 0 ? methods : null,
            Headers = headers.Count > 0 ? headers : null,
            QueryParameters = query.Count > 0 ? query : null,
        };
    }

    private void ValidateWithProxy(CompileContext context, List<RouteConfig> routes, List<ClusterConfig> clusters)
    {
        // YARP checks what only it knows (route template syntax, policy names); map its findings back
        // to our lines so a reload never reaches YARP with something it would reject.
        for (var i = 0; i < routes.Count; i++)
        {
            var errors = _proxyValidator!.ValidateRouteAsync(routes[i]).AsTask().GetAwaiter().GetResult();
            var index = context.Config.Routes.Select((r, n) => (r, n)).First(x => x.r.Name == routes[i].RouteId).n;
            foreach (var error in errors)
            {
                context.Error($"routes[{index}].match", $"route '{routes[i].RouteId}': {error.Message}");
            }
        }

        foreach (var cluster in clusters)
        {
            var errors = _proxyValidator!.ValidateClusterAsync(cluster).AsTask().GetAwaiter().GetResult();
            foreach (var error in errors)
            {
                context.Error("clusters." + cluster.ClusterId, $"cluster '{cluster.ClusterId}': {error.Message}");
            }
        }
    }

}
