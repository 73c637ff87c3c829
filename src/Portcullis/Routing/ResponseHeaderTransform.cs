using Microsoft.AspNetCore.Http;
using Portcullis.Configuration;
using Portcullis.Observability;
using Portcullis.Pipeline;
using Yarp.ReverseProxy.Transforms;

namespace Portcullis.Routing;

/// <summary>
/// Applies the route's then the cluster's response-header policy after the upstream answered and before
/// the answer's headers are sent: findings go to the access log (GatewayFeature.ResponseFindings) and
/// the counters; strip removes headers; block replaces the answer with a 502 and drops the upstream body.
/// </summary>
internal sealed class ResponseHeaderTransform(ResponseHeaderFindings? counters) : ResponseTransform
{
    public static readonly ReasonCode Reason = ReasonCodes.ResponseHeaderPolicy;

    public override async ValueTask ApplyAsync(ResponseTransformContext context)
    {
        // Held back to be retried (RetryStatusTransform): the next try's answer is the one checked.
        if (context.ProxyResponse is not { } upstream || context.SuppressResponseBody) return;
        var http = context.HttpContext;
        if (http.Features.Get<GatewayFeature>() is not { } gateway) return;
        var route = gateway.ResolveRoute(http);
        var cluster = gateway.ClusterName is { } name ? gateway.Snapshot.Clusters.GetValueOrDefault(name) : null;
        if (route?.ResponseHeaders is null && cluster?.ResponseHeaders is null) return;
        if (http.Response.HasStarted) return;

        List<string>? findings = null;
        var block = route?.ResponseHeaders?.Apply(http.Response.Headers, ref findings) == true;
        block |= cluster?.ResponseHeaders?.Apply(http.Response.Headers, ref findings) == true;
        if (findings is null) return;

        gateway.ResponseFindings = findings;
        counters?.Record(gateway.RouteName ?? "unknown", findings);
        if (!block) return;

        // Never send the upstream's answer: drop every header copied from it, then answer 502 ourselves.
        foreach (var header in upstream.Headers) http.Response.Headers.Remove(header.Key);
        foreach (var header in upstream.Content.Headers) http.Response.Headers.Remove(header.Key);
        context.SuppressResponseBody = true;
        gateway.Refusal = Reason;
        await ProblemWriter.WriteAsync(http, StatusCodes.Status502BadGateway, "Upstream answer refused",
            "The upstream's response headers broke this route's response-header policy.", Reason);
    }
}
