using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.ResponseCompression;
using Portcullis.Pipeline;

namespace Portcullis.Routing;

/// <summary>
/// The response-compression middleware's provider, per route: a route without routes[].compression answers
/// "the request does not accept compression" at once, so the middleware passes it through untouched (one lookup
/// of the matched route); a route with it gets ASP.NET Core's own provider with the route's types and encodings,
/// plus the route's least size.
/// </summary>
internal sealed class RouteCompressionProvider(IServiceProvider services) : IResponseCompressionProvider
{
    public bool CheckRequestAcceptsCompression(HttpContext context) =>
        Policy(context) is not null && !string.IsNullOrEmpty(context.Request.Headers.AcceptEncoding);

    public bool ShouldCompressResponse(HttpContext context)
    {
        if (Policy(context) is not { } policy) return false;
        if (context.Response.ContentLength is { } length && length < policy.MinSize) return false;
        return policy.Provider(services).ShouldCompressResponse(context);
    }

    public ICompressionProvider? GetCompressionProvider(HttpContext context) => Policy(context)?.Provider(services).GetCompressionProvider(context);

    private static CompiledCompression? Policy(HttpContext context) => context.Features.Get<GatewayFeature>()?.ResolveRoute(context)?.Compression;
}
