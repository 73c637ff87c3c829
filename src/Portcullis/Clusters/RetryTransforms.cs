using Microsoft.AspNetCore.Http;
using Yarp.ReverseProxy.Forwarder;
using Yarp.ReverseProxy.Transforms;
using Portcullis.Pipeline;

namespace Portcullis.Clusters;

/// <summary>
/// Holds back a response whose status the cluster retries (retries.on: [503, …]) while a retry is still possible:
/// YARP has copied the status and headers to the response but not started it, so suppressing the body leaves
/// RetryMiddleware a response it can clear and try again. The budget is taken here, when the decision is made,
/// so a held-back response is always followed by another try. Runs first among the response transforms, and
/// disarms the try's timer: the response headers arrived in time.
/// </summary>
internal sealed class RetryStatusTransform(TimeProvider time) : ResponseTransform
{
    public override ValueTask ApplyAsync(ResponseTransformContext context)
    {
        if (context.HttpContext.Features.Get<GatewayFeature>() is not { } gateway) return ValueTask.CompletedTask;
        gateway.TryTimer?.CancelAfter(Timeout.InfiniteTimeSpan);
        if (gateway.RetryOnStatus is not { } policy || context.ProxyResponse is not { } response || context.HttpContext.Response.HasStarted)
        {
            return ValueTask.CompletedTask;
        }

        var status = (int)response.StatusCode;
        if (!policy.RetriesStatus(status)) return ValueTask.CompletedTask;
        var now = time.GetTimestamp();
        if (gateway.RetryDeadline != 0 && now >= gateway.RetryDeadline)
        {
            gateway.RetryDenied = RetryMiddleware.DeniedDeadline;
            return ValueTask.CompletedTask;
        }

        if (!policy.TryTakeRetry(now / time.TimestampFrequency))
        {
            gateway.RetryDenied = RetryMiddleware.DeniedBudget;
            return ValueTask.CompletedTask;
        }

        context.SuppressResponseBody = true;
        gateway.RetryHeldStatus = status;
        return ValueTask.CompletedTask;
    }
}

/// <summary>
/// YARP's forwarder with the try's own timer (retries.perTryTimeout, retries.deadline): YARP's middleware passes no
/// cancellation token of its own, so the timer's token is passed here, and a try it cut short is reported as the
/// timeout it is (504, RequestTimedOut) — YARP would call it a canceled request.
/// </summary>
internal sealed class TryTimeoutForwarder(IHttpForwarder inner) : IHttpForwarder
{
    public ValueTask<ForwarderError> SendAsync(HttpContext context, string destinationPrefix, HttpMessageInvoker httpClient,
        ForwarderRequestConfig requestConfig, HttpTransformer transformer) =>
        SendAsync(context, destinationPrefix, httpClient, requestConfig, transformer, CancellationToken.None);

    public async ValueTask<ForwarderError> SendAsync(HttpContext context, string destinationPrefix, HttpMessageInvoker httpClient,
        ForwarderRequestConfig requestConfig, HttpTransformer transformer, CancellationToken cancellationToken)
    {
        if (context.Features.Get<GatewayFeature>()?.TryTimer is not { } timer || cancellationToken.CanBeCanceled)
        {
            return await inner.SendAsync(context, destinationPrefix, httpClient, requestConfig, transformer, cancellationToken);
        }

        var result = await inner.SendAsync(context, destinationPrefix, httpClient, requestConfig, transformer, timer.Token);
        if (result is ForwarderError.RequestCanceled or ForwarderError.RequestBodyCanceled
            && timer.IsCancellationRequested && !context.RequestAborted.IsCancellationRequested && !context.Response.HasStarted)
        {
            context.Response.StatusCode = StatusCodes.Status504GatewayTimeout;
            context.Features.Set<IForwarderErrorFeature>(new TryTimedOut());
            return ForwarderError.RequestTimedOut;
        }

        return result;
    }

    internal sealed class TryTimedOut : IForwarderErrorFeature
    {
        public ForwarderError Error => ForwarderError.RequestTimedOut;

        public Exception? Exception { get; } = new TimeoutException("No response headers within the try's time (retries.perTryTimeout or retries.deadline).");
    }
}
