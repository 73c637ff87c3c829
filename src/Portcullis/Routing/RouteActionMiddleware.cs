using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Portcullis.Configuration;
using Yarp.ReverseProxy;
using Yarp.ReverseProxy.Model;
using Portcullis.Pipeline;

namespace Portcullis.Routing;

/// <summary>
/// Runs between routing and the matched endpoint: answers redirect and fixed-response routes itself
/// (YARP would answer a route without a cluster with a bare 503).
/// </summary>
internal sealed class RouteResponseMiddleware(RequestDelegate next)
{
    public Task InvokeAsync(HttpContext context)
    {
        if (context.Features.Get<GatewayFeature>()?.ResolveRoute(context) is not { } route) return next(context);
        return route.Action switch
        {
            RouteAction.Redirect => Redirect(context, route.Redirect!),
            RouteAction.Respond => Respond(context, route),
            _ => next(context),
        };
    }

    private static Task Redirect(HttpContext context, RedirectOptions redirect)
    {
        var location = redirect.Url;
        if (redirect.AppendPath)
        {
            location = location.TrimEnd('/') + context.Request.PathBase + context.Request.Path + context.Request.QueryString;
        }

        context.Response.StatusCode = redirect.Status;
        context.Response.Headers.Location = location;
        context.Response.ContentLength = 0;
        return Task.CompletedTask;
    }

    private static Task Respond(HttpContext context, CompiledRoute route)
    {
        var response = context.Response;
        response.StatusCode = route.FixedStatus;
        foreach (var (name, value) in route.FixedHeaders) response.Headers[name] = value;
        if (route.FixedBody.Length == 0)
        {
            response.ContentLength = 0;
            return Task.CompletedTask;
        }

        response.ContentType = route.FixedContentType;
        response.ContentLength = route.FixedBody.Length;
        return HttpMethods.IsHead(context.Request.Method) ? Task.CompletedTask : response.Body.WriteAsync(route.FixedBody).AsTask();
    }
}

/// <summary>
/// Runs first in YARP's pipeline: chooses the cluster of map-driven and weighted (split) routes and applies the route's
/// request header edits.
/// </summary>
internal sealed class RouteActionMiddleware(RequestDelegate next)
{
    public Task InvokeAsync(HttpContext context)
    {
        var gateway = context.Features.GetRequiredFeature<GatewayFeature>();
        var proxy = context.GetReverseProxyFeature();

        // A YARP route endpoint always carries its compiled route (RouteBinding); without one, proxy as YARP says.
        if (gateway.ResolveRoute(context) is not { } route)
        {
            return Proxy(context, gateway, proxy);
        }

        if (route.ClusterTemplate is { } template)
        {
            // The cluster of the route's own generation, even if a reload since removed it from YARP.
            var clusterName = template.Evaluate(context.Request);
            if (clusterName is null || !Reassign(context, gateway, proxy, clusterName))
            {
                gateway.Refusal = ReasonCodes.RouteClusterUnresolved;
                return ProblemWriter.WriteAsync(context, StatusCodes.Status503ServiceUnavailable, "No upstream for this request",
                    "The route's map lookup did not select a cluster.", ReasonCodes.RouteClusterUnresolved);
            }
        }
        else if (route.Split is { } split)
        {
            // Every split cluster exists in the route's generation (validated), so this always finds it.
            Reassign(context, gateway, proxy, split.Choose(context.Request));
        }

        if (route.RemoveHeaders.Length > 0 || route.SetHeaders.Length > 0)
        {
            var headers = context.Request.Headers;
            foreach (var name in route.RemoveHeaders) headers.Remove(name);
            foreach (var (name, value) in route.SetHeaders)
            {
                var text = value.Evaluate(context.Request);
                if (text is null) headers.Remove(name);
                else headers[name] = text;
            }
        }

        // YARP builds the upstream path from Request.Path, so the rewrite (matching is done) reaches the upstream.
        // The client's path is kept for the access log and analytics, which record what the client asked for.
        if (route.PathRewrite is { } rewrite && context.Request.Path.Value is { } original && rewrite.IsMatch(original))
        {
            var rewritten = rewrite.Replace(original, route.PathReplacement, 1);
            if (!string.Equals(rewritten, original, StringComparison.Ordinal))
            {
                gateway.PathBeforeRewrite = original;
                context.Request.Path = new PathString(rewritten);
            }
        }

        return Proxy(context, gateway, context.GetReverseProxyFeature());
    }

    /// <summary>Moves the request to a cluster of its route's generation; false when that generation has none by the name.</summary>
    private static bool Reassign(HttpContext context, GatewayFeature gateway, IReverseProxyFeature proxy, string clusterName)
    {
        if (gateway.RouteBinding?.Clusters.GetValueOrDefault(clusterName) is not { } cluster) return false;
        if (!ReferenceEquals(cluster.Model, proxy.Cluster))
        {
            // With the route model of that cluster: YARP's later stages take the cluster from the route model.
            if (gateway.RouteBinding!.RouteModels.GetValueOrDefault(clusterName) is { } model) context.ReassignProxyRequest(model, cluster);
            else context.ReassignProxyRequest(cluster);
        }

        return true;
    }

    private Task Proxy(HttpContext context, GatewayFeature gateway, IReverseProxyFeature proxy)
    {
        gateway.ClusterName = proxy.Cluster.Config.ClusterId;
        return next(context);
    }
}
