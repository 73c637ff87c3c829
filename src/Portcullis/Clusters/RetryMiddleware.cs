using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Portcullis.Hosting;
using Yarp.ReverseProxy.Forwarder;
using Yarp.ReverseProxy.Model;

namespace Portcullis.Clusters;

/// <summary>
/// Retries an idempotent request on another available destination when connecting to the chosen one
/// failed or timed out (YARP has no retries, microsoft/reverse-proxy#56). A connect failure happens
/// before any of the request body is read, so the request can be sent again unchanged.
/// </summary>
internal sealed partial class RetryMiddleware(RequestDelegate next, ILogger<RetryMiddleware> logger)
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
            if (attempt >= retries || error is null || !IsConnectFailure(error) || context.Response.HasStarted || proxy.ProxiedDestination is null)
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
            Log.Retrying(logger, proxy.ProxiedDestination.DestinationId, proxy.Cluster.Config.ClusterId, attempt + 2);

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

    private static bool IsIdempotent(string method) =>
        HttpMethods.IsGet(method) || HttpMethods.IsHead(method) || HttpMethods.IsOptions(method)
        || HttpMethods.IsPut(method) || HttpMethods.IsDelete(method) || HttpMethods.IsTrace(method);

    private static partial class Log
    {
        [LoggerMessage(2001, LogLevel.Warning, "Connecting to destination {Destination} of cluster {Cluster} failed; retrying (attempt {Attempt})")]
        public static partial void Retrying(ILogger logger, string destination, string cluster, int attempt);
    }
}
