using Portcullis.Configuration;
using Yarp.ReverseProxy.Configuration;
using YarpHeaderMatchMode = Yarp.ReverseProxy.Configuration.HeaderMatchMode;

namespace Portcullis.Routing;

/// <summary>A route's `match` (path or prefix, hosts, methods, headers, query) as YARP's RouteMatch.</summary>
internal static class RouteMatchCompiler
{
    private static readonly string[] KnownMethods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"];

    internal static RouteMatch Compile(CompileContext context, RouteMatchOptions match, string path)
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

        var headers = CompileHeaders(context, match.Headers, path);
        var query = CompileQuery(context, match.Query, path);

        return new RouteMatch
        {
            Path = routePath,
            Hosts = match.Hosts.Count > 0 ? [.. match.Hosts] : null,
            Methods = methods.Count > 0 ? methods : null,
            Headers = headers.Count > 0 ? headers : null,
            QueryParameters = query.Count > 0 ? query : null,
        };
    }

    private static List<RouteHeader> CompileHeaders(CompileContext context, IReadOnlyList<HeaderMatchOptions> conditions, string path)
    {
        var headers = new List<RouteHeader>();
        for (var i = 0; i < conditions.Count; i++)
        {
            var header = conditions[i];
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

        return headers;
    }

    private static List<RouteQueryParameter> CompileQuery(CompileContext context, IReadOnlyList<QueryMatchOptions> conditions, string path)
    {
        var query = new List<RouteQueryParameter>();
        for (var i = 0; i < conditions.Count; i++)
        {
            var parameter = conditions[i];
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

        return query;
    }
}
