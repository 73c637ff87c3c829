using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Primitives;
using Yarp.ReverseProxy.Forwarder;
using Yarp.ReverseProxy.Model;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Clusters;

/// <summary>
/// Retries an idempotent request (YARP has none, microsoft/reverse-proxy#56) as the cluster's `retries` say: when
/// connecting failed (nothing was sent), when the connection was lost before the response headers, when no
/// headers came within the try's time, or on a chosen status (held back unsent by <see cref="RetryStatusTransform"/>)
/// — never once the response has started. A request body is sent again only when it was kept (declared length
/// within `bufferBody`) or never read. Every retry needs the cluster's budget (a share of its requests), waits a
/// jittered backoff, and stays inside the deadline; a retry goes to an untried destination when there is one
/// (connect failures and lost connections only ever go to an untried one).
/// </summary>
internal sealed partial class RetryMiddleware(RequestDelegate next, Observability.GatewayMetrics metrics, TimeProvider time, ILogger<RetryMiddleware> logger)
{
    internal const string DeniedBudget = "budget";
    internal const string DeniedDeadline = "deadline";

    private const string ConnectFailure = "connect-failure";
    private const string LostConnection = "reset-before-response";
    private const string TimedOut = "timeout";

    internal static readonly TimeSpan LastStartMargin = TimeSpan.FromMilliseconds(10);

    public Task InvokeAsync(HttpContext context)
    {
        var gateway = context.Features.Get<GatewayFeature>();
        if (gateway is null) return next(context);
        gateway.Attempts = 1;
        var proxy = context.GetReverseProxyFeature();
        if (!gateway.Snapshot.Clusters.TryGetValue(proxy.Cluster.Config.ClusterId, out var cluster) || cluster.Retry.Attempts <= 0)
        {
            return next(context);
        }

        var policy = cluster.Retry;
        policy.Budget.RecordRequest(time.GetTimestamp() / time.TimestampFrequency);
        if (!IsIdempotent(context.Request.Method)) return next(context);
        return InvokeWithRetriesAsync(context, proxy, gateway, policy);
    }

    private async Task InvokeWithRetriesAsync(HttpContext context, IReverseProxyFeature proxy, GatewayFeature gateway, CompiledRetryPolicy policy)
    {
        var started = time.GetTimestamp();
        var deadline = policy.Deadline is { } limit ? started + (long)(limit.TotalSeconds * time.TimestampFrequency) : 0;
        // No try starts in the deadline's last moments: a try's timer can fire a little early, and a try of a few
        // milliseconds would only turn into a 504 of its own.
        var lastStart = deadline == 0 ? 0 : deadline - (long)(LastStartMargin.TotalSeconds * time.TimestampFrequency);
        var body = PrepareBody(context, policy);
        var headersBefore = Save(context.Response.Headers);
        var candidates = proxy.AvailableDestinations;
        var cluster = proxy.Cluster.Config.ClusterId;
        List<DestinationState>? tried = null;
        for (var attempt = 0; ; attempt++)
        {
            var last = attempt >= policy.Attempts;
            var timer = StartTimer(policy, deadline);
            gateway.TryTimer = timer;
            gateway.RetryDeadline = lastStart;
            gateway.RetryOnStatus = !last && body != Body.Streamed && policy.OnStatus ? policy : null;
            try
            {
                await next(context);
            }
            finally
            {
                gateway.TryTimer = null;
                gateway.RetryOnStatus = null;
                timer?.Dispose();
            }

            if (gateway.RetryDenied is { } denied)
            {
                gateway.RetryDenied = null;
                metrics.UpstreamRetryDenied(gateway.RouteName ?? "", cluster, denied);
            }

            var destination = proxy.ProxiedDestination;
            string reason;
            bool anyDestination, budgetTaken = false;
            if (gateway.RetryHeldStatus is var held and not 0)
            {
                // The transform held this answer back and took the budget: another try follows whatever happens.
                reason = StatusReason(held);
                anyDestination = budgetTaken = true;
                gateway.RetryHeldStatus = 0;
            }
            else
            {
                if (last || destination is null || context.Response.HasStarted || context.Features.Get<IForwarderErrorFeature>() is not { } error) return;
                if (ReasonFor(error, policy, body) is not { } found) return;
                reason = found;
                anyDestination = ReferenceEquals(found, TimedOut);
                if (lastStart != 0 && time.GetTimestamp() >= lastStart)
                {
                    metrics.UpstreamRetryDenied(gateway.RouteName ?? "", cluster, DeniedDeadline);
                    return;
                }
            }

            var destinations = NextDestinations(candidates, destination, ref tried, anyDestination);
            if (destinations is null) return;
            if (!budgetTaken && !policy.Budget.TryRetry(time.GetTimestamp() / time.TimestampFrequency))
            {
                metrics.UpstreamRetryDenied(gateway.RouteName ?? "", cluster, DeniedBudget);
                return;
            }

            Log.Retrying(logger, destination?.DestinationId ?? "", cluster, Describe(reason), attempt + 2);
            metrics.UpstreamRetried(gateway.RouteName ?? "", cluster, reason);

            // Undo what the failed try set, then let load balancing pick among the rest.
            context.Features.Set<IForwarderErrorFeature>(null);
            context.Response.StatusCode = StatusCodes.Status200OK;
            if (context.Features.Get<IHttpResponseFeature>() is { } responseFeature) responseFeature.ReasonPhrase = null;
            context.Response.Headers.Clear();
            Restore(context.Response.Headers, headersBefore);
            if (body == Body.Kept) context.Request.Body.Position = 0;
            proxy.AvailableDestinations = destinations;
            proxy.ProxiedDestination = null;
            gateway.Attempts = attempt + 2;

            var pause = policy.Backoff(attempt + 1, Random.Shared.NextDouble());
            if (deadline != 0)
            {
                var now = time.GetTimestamp();
                var left = now >= deadline ? TimeSpan.Zero : time.GetElapsedTime(now, deadline);
                if (pause > left) pause = left;
            }

            if (pause > TimeSpan.Zero)
            {
                try
                {
                    await Task.Delay(pause, time, context.RequestAborted);
                }
                catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
                {
                    context.Features.Set<IForwarderErrorFeature>(new ClientGone());
                    return;
                }
            }
        }
    }

    private enum Body
    {
        /// <summary>No body: every try sends the same request.</summary>
        None,
        /// <summary>Kept in memory as it is read, so a try can send it again from the start.</summary>
        Kept,
        /// <summary>Streamed: once read by a try, it is gone.</summary>
        Streamed,
    }

    private static Body PrepareBody(HttpContext context, CompiledRetryPolicy policy)
    {
        if (HasNoBody(context)) return Body.None;
        var length = context.Request.ContentLength;
        // Only connect failures retried: they happen before any of the body is read.
        if (!policy.OnReset && !policy.OnTimeout && !policy.OnStatus) return Body.Streamed;
        if (length is not { } declared || declared > policy.BufferBody) return Body.Streamed;
        context.Request.EnableBuffering(bufferThreshold: (int)policy.BufferBody, bufferLimit: policy.BufferBody);
        return Body.Kept;
    }

    private CancellationTokenSource? StartTimer(CompiledRetryPolicy policy, long deadline)
    {
        if (!policy.TimesTries) return null;
        var limit = policy.PerTryTimeout ?? Timeout.InfiniteTimeSpan;
        if (deadline != 0)
        {
            var now = time.GetTimestamp();
            var left = now >= deadline ? TimeSpan.Zero : time.GetElapsedTime(now, deadline);
            if (limit == Timeout.InfiniteTimeSpan || left < limit) limit = left;
        }

        return limit == Timeout.InfiniteTimeSpan ? null : new CancellationTokenSource(limit <= TimeSpan.Zero ? TimeSpan.FromTicks(1) : limit, time);
    }

    // The destinations the next try may go to: untried ones; or, for retries that may repeat a destination
    // (statuses and timeouts), all of them when every one was tried. Null when there is none.
    private static IReadOnlyList<DestinationState>? NextDestinations(IReadOnlyList<DestinationState> candidates, DestinationState? failed,
        ref List<DestinationState>? tried, bool anyDestination)
    {
        if (failed is not null) (tried ??= []).Add(failed);
        List<DestinationState>? untried = null;
        foreach (var destination in candidates)
        {
            if (tried is null || !tried.Contains(destination)) (untried ??= new List<DestinationState>(candidates.Count)).Add(destination);
        }

        if (untried is not null) return untried;
        return anyDestination && candidates.Count > 0 ? candidates : null;
    }

    private static string? ReasonFor(IForwarderErrorFeature error, CompiledRetryPolicy policy, Body body)
    {
        if (IsConnectFailure(error)) return policy.OnConnectFailure ? ConnectFailure : null;
        if (body == Body.Streamed) return null;
        if (IsLostBeforeResponse(error)) return policy.OnReset ? LostConnection : null;
        if (error.Error == ForwarderError.RequestTimedOut) return policy.OnTimeout ? TimedOut : null;
        return null;
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
    // peer (an IOException over a SocketException) or closed (ResponseEnded).
    private static bool IsLostBeforeResponse(IForwarderErrorFeature error) => error is
    {
        Error: ForwarderError.Request,
        Exception: HttpRequestException { HttpRequestError: HttpRequestError.ResponseEnded }
            or HttpRequestException { HttpRequestError: HttpRequestError.Unknown, InnerException: IOException },
    };

    private static bool HasNoBody(HttpContext context) =>
        context.Request.ContentLength == 0
        || (context.Request.ContentLength is null && context.Features.Get<IHttpRequestBodyDetectionFeature>() is { CanHaveBody: false });

    private static bool IsIdempotent(string method) =>
        HttpMethods.IsGet(method) || HttpMethods.IsHead(method) || HttpMethods.IsOptions(method)
        || HttpMethods.IsPut(method) || HttpMethods.IsDelete(method) || HttpMethods.IsTrace(method);

    private static readonly string[] StatusReasons = Enumerable.Range(CompiledRetryPolicy.FirstStatus, CompiledRetryPolicy.LastStatus - CompiledRetryPolicy.FirstStatus + 1)
        .Select(status => "status-" + status).ToArray();

    private static string StatusReason(int status) => StatusReasons[status - CompiledRetryPolicy.FirstStatus];

    private static string Describe(string reason) => reason switch
    {
        ConnectFailure => "connecting failed",
        LostConnection => "lost the connection before answering",
        TimedOut => "sent no response headers in time",
        _ => "answered " + reason["status-".Length..],
    };

    // Headers set before the first try (CORS, rate-limit headers, …) survive a retry; the failed try's go.
    private static KeyValuePair<string, StringValues>[]? Save(IHeaderDictionary headers) => headers.Count == 0 ? null : headers.ToArray();

    private static void Restore(IHeaderDictionary headers, KeyValuePair<string, StringValues>[]? saved)
    {
        if (saved is null) return;
        foreach (var (name, value) in saved) headers[name] = value;
    }

    private sealed class ClientGone : IForwarderErrorFeature
    {
        public ForwarderError Error => ForwarderError.RequestCanceled;

        public Exception? Exception => null;
    }

    private static partial class Log
    {
        [LoggerMessage(2001, LogLevel.Warning, "Destination {Destination} of cluster {Cluster} {What}; retrying (attempt {Attempt})")]
        public static partial void Retrying(ILogger logger, string destination, string cluster, string what, int attempt);
    }
}
