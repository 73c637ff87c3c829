using Microsoft.Extensions.Primitives;
using Portcullis.Pipeline;
using Yarp.ReverseProxy.Transforms;

namespace Portcullis.Routing;

/// <summary>
/// routes[].transforms.response: removes, sets and adds response headers after the upstream answered, then fills in
/// the securityHeaders preset where the answer lacks a header. Runs before the response-header policy, so the
/// policy judges what the client will actually get.
/// </summary>
internal sealed class ResponseTransformsTransform : ResponseTransform
{
    public override ValueTask ApplyAsync(ResponseTransformContext context)
    {
        var http = context.HttpContext;
        if (context.ProxyResponse is null || http.Response.HasStarted) return ValueTask.CompletedTask;
        if (http.Features.Get<GatewayFeature>()?.ResolveRoute(http) is not { HasResponseTransforms: true } route) return ValueTask.CompletedTask;

        var headers = http.Response.Headers;
        foreach (var name in route.ResponseRemove) headers.Remove(name);
        foreach (var (name, template) in route.ResponseSet)
        {
            var value = template.Evaluate(http.Request);
            if (value is null) headers.Remove(name);
            else headers[name] = value;
        }

        foreach (var (name, template) in route.ResponseAdd)
        {
            if (template.Evaluate(http.Request) is { } value) headers[name] = StringValues.Concat(headers[name], value);
        }

        foreach (var header in route.SecurityHeaders)
        {
            if (header.AppliesTo(http.Request.IsHttps, headers)) headers[header.Name] = header.Value;
        }

        return ValueTask.CompletedTask;
    }
}
