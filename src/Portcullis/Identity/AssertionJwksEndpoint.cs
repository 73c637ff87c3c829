using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Primitives;
using Portcullis.Configuration;
using Portcullis.Pipeline;
using Portcullis.Routing;

namespace Portcullis.Identity;

/// <summary>
/// The assertion's public keys (GET identity.assertion.jwksPath) as an endpoint on the route listeners,
/// ahead of any route matching the same path. Its path follows reloads: this data source offers the
/// endpoint of the current snapshot and tells routing when the snapshot changed (the same signal YARP
/// rebuilds its routes on), so the route table never needs a per-request check.
/// </summary>
internal sealed class AssertionJwksEndpoint(SnapshotStore store, AssertionSigner signer) : EndpointDataSource
{
    private static readonly string[] Get = [HttpMethods.Get];
    private volatile Built _built = new(null, []);

    public override IReadOnlyList<Endpoint> Endpoints
    {
        get
        {
            var path = store.Current.Config.Identity.Assertion?.JwksPath;
            var built = _built;
            if (string.Equals(built.Path, path, StringComparison.Ordinal)) return built.Endpoints;
            var endpoints = Build(path);
            _built = new Built(path, endpoints);
            return endpoints;
        }
    }

    public override IChangeToken GetChangeToken() => store.GetConfig().ChangeToken;

    private Endpoint[] Build(string? path)
    {
        if (path is null || GatewayEndpointConventions.Literal(path) is not { } pattern) return [];
        var builder = new RouteEndpointBuilder(ServeAsync, pattern, order: 0) { DisplayName = "assertion JWKS" };
        builder.Metadata.Add(new HttpMethodMetadata(Get));
        new GatewayEndpointConventions.Target(builder).AsGatewayPath(path, order: int.MinValue + 1);
        return [builder.Build()];
    }

    private sealed record Built(string? Path, Endpoint[] Endpoints);

    private Task ServeAsync(HttpContext context)
    {
        context.Response.ContentType = "application/jwk-set+json";
        context.Response.Headers.CacheControl = "public, max-age=300";
        return context.Response.WriteAsync(signer.JwksJson(store.Current.Assertion));
    }
}
