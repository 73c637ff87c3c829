using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Forwarder;
using Yarp.ReverseProxy.Model;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Clusters;

/// <summary>
/// Retries an idempotent request on another available destination (YARP has no retries,
/// microsoft/reverse-proxy#56) when connecting to the chosen one failed or timed out — that happens
/// before any of the request body is read, so the request can be sent again unchanged — or when a
/// body-less request lost its connection (reset or closed, e.g. a backend crash under a pooled
/// keep-alive connection) before the response headers arrived. Never once the response has started.
/// </summary>
internal sealed partial class RetryMiddleware(RequestDelegate next, Observability.GatewayMetrics metrics, ILogger<RetryMiddleware> logger)
{
    public Task InvokeAsync(HttpContext context)
    {
        var gateway = context.Features.Get<GatewayFeature>();
        var proxy = context.GetReverseProxyFeature();
        var retries = 0;
        if (gateway is not null && gateway.Snapshot.Clusters.TryGetValue(proxy.Cluster.Config.ClusterId, out var cluster))
        {
            retries = Math.Min(cluster.Retries, proxy.AvailableDestinations.Count - 1);
        }

        if (gateway is not null) gateway.Attempts = 1;
        if (retries <= 0 || !IsIdempotent(context.Request.Method))
        {
            return next(context);
        }

        return InvokeWithRetriesAsync(context, proxy, gateway!, retries);
    }

    private async Task InvokeWithRetriesAsync(HttpContext context, IReverseProxyFeature proxy, GatewayFeature gateway, int retries)
    {
        var candidates = proxy.AvailableDestinations;
        List<DestinationState>? tried = null;
        for (var attempt = 0; ; attempt++)
        {
            await next(context);
            var error = context.Features.Get<IForwarderErrorFeature>();
            if (attempt >= retries || error is null || context.Response.HasStarted || proxy.ProxiedDestination is null)
            {
                return;
            }

            var connectFailure = IsConnectFailure(error);
            if (!connectFailure && !(IsLostBeforeResponse(error) && HasNoBody(context)))
            {
                return;
            }

            (tried ??= []).Add(proxy.ProxiedDestination);
            var remaining = new List<DestinationState>(candidates.Count);
            foreach (var destination in candidates)
            {
                if (!tried.Contains(destination)) remaining.Add(destination);
            }

            if (remaining.Count == 0) return;
            if (connectFailure) Log.Retrying(logger, proxy.ProxiedDestination.DestinationId, proxy.Cluster.Config.ClusterId, attempt + 2);
            else Log.RetryingLostConnection(logger, proxy.ProxiedDestination.DestinationId, proxy.Cluster.Config.ClusterId, attempt + 2);
            metrics.UpstreamRetried(gateway.RouteName ?? "", proxy.Cluster.Config.ClusterId, connectFailure ? "connect-failure" : "reset-before-response");

            // Undo what the failed attempt set, then let load balancing pick among the rest.
            context.Features.Set<IForwarderErrorFeature>(null);
            context.Response.StatusCode = StatusCodes.Status200OK;
            context.Response.Headers.Clear();
            proxy.AvailableDestinations = remaining;
            proxy.ProxiedDestination = null;
            gateway.Attempts = attempt + 2;
        }
    }

    // Refused/reset/unreachable while connecting, or no connection within `timeouts.connect`
    // (SocketsHttpHandler reports that as an OperationCanceledException wrapping a TimeoutException,
    // which YARP turns into RequestTimedOut). Either way nothing reached the destination.
    private static bool IsConnectFailure(IForwarderErrorFeature error) => error switch
    {
        { Error: ForwarderError.Request, Exception: HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError } } => true,
        { Error: ForwarderError.RequestTimedOut, Exception: OperationCanceledException { InnerException: TimeoutException } } => true,
        _ => false,
    };

    // The request went out, then the connection failed before the response headers came (ForwarderError.Request
    // is "before receiving a response"; once headers arrived YARP reports ResponseBody* instead): reset by the
    // peer (an IOException over a SocketException) or closed (ResponseEnded). Timeouts are not retried: the
    // destination may still be working on the request.
    private static bool IsLostBeforeResponse(IForwarderErrorFeature error) => error is
    {
        Error: ForwarderError.Request,
        Exception: HttpRequestException { HttpRequestError: HttpRequestError.ResponseEnded }
            or HttpRequestException { HttpRequestError: HttpRequestError.Unknown, InnerException: IOException },
    };

    // Only a request without a body can be sent again after it went out: a body has been read from the
    // client and streamed to the failed destination, and is not kept.
    private static bool HasNoBody(HttpContext context) =>
        context.Request.ContentLength == 0
        || (context.Request.ContentLength is null && context.Features.Get<IHttpRequestBodyDetectionFeature>() is { CanHaveBody: false });

    private static bool IsIdempotent(string method) =>
        HttpMethods.IsGet(method) || HttpMethods.IsHead(method) || HttpMethods.IsOptions(method)
        || HttpMethods.IsPut(method) || HttpMethods.IsDelete(method) || HttpMethods.IsTrace(method);

    private static partial class Log
    {
        [LoggerMessage(2001, LogLevel.Warning, "Connecting to destination {Destination} of cluster {Cluster} failed; retrying (attempt {Attempt})")]
        public static partial void Retrying(ILogger logger, string destination, string cluster, int attempt);

        [LoggerMessage(2002, LogLevel.Warning, "Destination {Destination} of cluster {Cluster} lost the connection before answering; retrying (attempt {Attempt})")]
        public static partial void RetryingLostConnection(ILogger logger, string destination, string cluster, int attempt);
    }
}
