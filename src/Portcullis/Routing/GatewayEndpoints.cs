using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Routing.Matching;
using Microsoft.AspNetCore.Routing.Patterns;

namespace Portcullis.Routing;

/// <summary>
/// The gateway's own endpoints (admin API, session paths, the assertion JWKS) answer their path as written:
/// ASP.NET Core routing matches literals case-insensitively and ignores a trailing slash, while these paths
/// have always been compared byte for byte (a differently spelled path goes on to the routes, or to 404).
/// With parameters, the path's segments (outer slashes trimmed) must match the template's literals exactly.
/// </summary>
internal sealed class ExactPathMetadata
{
    private readonly string _template;
    private readonly string?[]? _segments; // null: no parameters; a null segment is a parameter

    public ExactPathMetadata(string template, bool prefix = false)
    {
        _template = template;
        Prefix = prefix;
        if (!prefix && template.Contains('{', StringComparison.Ordinal))
        {
            _segments = template.Trim('/').Split('/').Select(s => s.StartsWith('{') ? null : s).ToArray();
        }
    }

    /// <summary>Whether the path only has to start with the template (a catch-all after it).</summary>
    public bool Prefix { get; }

    public bool Matches(string path)
    {
        if (Prefix) return path.StartsWith(_template, StringComparison.Ordinal);
        if (_segments is null) return string.Equals(path, _template, StringComparison.Ordinal);
        var parts = path.AsSpan().Trim('/');
        var index = 0;
        foreach (var range in parts.Split('/'))
        {
            if (index == _segments.Length) return false;
            var expected = _segments[index++];
            if (expected is not null && !parts[range].SequenceEqual(expected)) return false;
        }

        return index == _segments.Length;
    }
}

/// <summary>
/// Drops a candidate endpoint carrying <see cref="ExactPathMetadata"/> when the request path is not spelled
/// exactly so. It applies only to route-table nodes holding such endpoints: requests to other paths never
/// run it.
/// </summary>
internal sealed class ExactPathMatcherPolicy : MatcherPolicy, IEndpointSelectorPolicy
{
    public override int Order => 0;

    public bool AppliesToEndpoints(IReadOnlyList<Endpoint> endpoints)
    {
        foreach (var endpoint in endpoints)
        {
            if (endpoint.Metadata.GetMetadata<ExactPathMetadata>() is not null) return true;
        }

        return false;
    }

    public Task ApplyAsync(HttpContext httpContext, CandidateSet candidates)
    {
        var path = httpContext.Request.Path.Value ?? "/";
        for (var i = 0; i < candidates.Count; i++)
        {
            if (candidates.IsValidCandidate(i) && candidates[i].Endpoint.Metadata.GetMetadata<ExactPathMetadata>() is { } exact && !exact.Matches(path))
            {
                candidates.SetValidity(i, false);
            }
        }

        return Task.CompletedTask;
    }
}

internal static class GatewayEndpointConventions
{
    /// <summary>
    /// One of the gateway's own paths on the route listeners: matched only as spelled, ahead of every route
    /// matching the same path, and run as soon as routing chose it (identity, traffic and proxy stages skipped),
    /// as the middlewares that answered these paths did before routing.
    /// </summary>
    /// <param name="order">Among the gateway's own paths, the lower first (session paths before the JWKS, as the
    /// middlewares ran before); every one of them before any route.</param>
    public static TBuilder AsGatewayPath<TBuilder>(this TBuilder builder, string path, bool prefix = false, int order = int.MinValue)
        where TBuilder : IEndpointConventionBuilder
    {
        builder.WithMetadata(new ExactPathMetadata(path, prefix)).WithOrder(order).ShortCircuit();
        return builder;
    }

    /// <summary>
    /// A route pattern for a configured path taken literally (braces included), or null for a path no request
    /// can have (a '?' starts the query). Empty segments are skipped; <see cref="ExactPathMetadata"/> keeps the spelling.
    /// </summary>
    public static RoutePattern? Literal(string path)
    {
        if (path.Contains('?', StringComparison.Ordinal)) return null;
        var segments = path.Split('/', StringSplitOptions.RemoveEmptyEntries).Select(s => RoutePatternFactory.Segment(RoutePatternFactory.LiteralPart(s)));
        return RoutePatternFactory.Pattern(segments);
    }

    /// <summary>Applies conventions to an endpoint built by hand (for a data source of our own).</summary>
    public sealed class Target(EndpointBuilder endpoint) : IEndpointConventionBuilder
    {
        public void Add(Action<EndpointBuilder> convention) => convention(endpoint);
    }
}
