using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Forwarder;
using Yarp.ReverseProxy.Model;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Hosting;

/// <summary>
/// Outermost stage on the route listeners (the admin listener has its own pipeline: AdminEndpoints):
/// takes the snapshot for this request, enforces the configured header and body limits with problem+json
/// answers (Kestrel's own, higher limits stay as the hard backstop), and turns proxy errors into problem+json.
/// </summary>
internal sealed class GatewayMiddleware(RequestDelegate next, SnapshotStore store, Observability.RequestObserver observer, Listeners.RouteListenerGate routeListeners, ILogger<Clusters.UpstreamFailureLog.Category> logger)
{
    public Task InvokeAsync(HttpContext context)
    {
        var snapshot = store.Current;
        var gateway = new GatewayFeature(snapshot);
        context.Features.Set(gateway);
        observer.Begin(context, gateway); // stage 1: request id, trace context; the access log when the response completes
        if (routeListeners.Draining) Listeners.RouteListenerGate.CloseAfterResponse(context); // shutting down: clients move on

        var limits = snapshot.Config.Limits;
        var (headerCount, headersSize) = Measure(context.Request.Headers);
        if (headerCount > limits.MaxRequestHeaderCount || headersSize > limits.MaxRequestHeadersSize.Bytes)
        {
            gateway.Refusal = ReasonCodes.RequestHeadersTooLarge;
            context.Response.Headers.Connection = "close";
            return ProblemWriter.WriteAsync(context, StatusCodes.Status431RequestHeaderFieldsTooLarge, "Request headers too large",
                snapshot.EdgeRefusals.HeadersTooLarge, ReasonCodes.RequestHeadersTooLarge);
        }

        if (RequestLineLength(context) > limits.MaxRequestLineSize.Bytes)
        {
            gateway.Refusal = ReasonCodes.RequestLineTooLong;
            context.Response.Headers.Connection = "close";
            return ProblemWriter.WriteAsync(context, StatusCodes.Status414UriTooLong, "Request line too long",
                snapshot.EdgeRefusals.RequestLineTooLong, ReasonCodes.RequestLineTooLong);
        }

        if (context.Request.ContentLength == Listeners.StrictContentLength.Malformed)
        {
            // Checked before the body limit (the sentinel is above every limit): "+5" is a framing error, not a big body.
            gateway.Refusal = ReasonCodes.RequestBadContentLength;
            context.Request.ContentLength = null; // the sentinel is not a length: keep it out of the access log
            context.Response.Headers.Connection = "close";
            return ProblemWriter.WriteAsync(context, StatusCodes.Status400BadRequest, "Bad Content-Length",
                "Content-Length must be a non-negative decimal number made of digits only.", ReasonCodes.RequestBadContentLength);
        }

        if (context.Request.ContentLength > limits.MaxRequestBodySize.Bytes)
        {
            gateway.Refusal = ReasonCodes.RequestBodyTooLarge;
            context.Response.Headers.Connection = "close";
            return ProblemWriter.WriteAsync(context, StatusCodes.Status413PayloadTooLarge, "Request body too large",
                snapshot.EdgeRefusals.BodyTooLarge, ReasonCodes.RequestBodyTooLarge);
        }

        if (context.Request.Headers.TransferEncoding.Count > 0 && (HttpProtocol.IsHttp11(context.Request.Protocol) || HttpProtocol.IsHttp10(context.Request.Protocol))
            && context.Features.Get<Listeners.ChunkExtensionGuard>() is { } guard)
        {
            guard.Arm(); // Kestrel validated the framing as chunked; the body is not read yet
        }

        var task = next(context);
        return task.IsCompletedSuccessfully && context.Response.HasStarted ? task : AfterAsync(task, context, gateway);
    }

    private static readonly string ChunkExtensionTooLong =
        $"A chunk extension of the request body is longer than {Listeners.ChunkExtensionGuard.MaxExtensionLength} bytes.";

    private async Task AfterAsync(Task pending, HttpContext context, GatewayFeature gateway)
    {
        await pending;
        if (context.Features.Get<IForwarderErrorFeature>() is not { } error) return;
        var proxy = context.Features.Get<IReverseProxyFeature>();
        Clusters.UpstreamFailureLog.ProxyFailed(logger, error.Error, error.Exception, gateway.RequestId ?? context.TraceIdentifier, gateway.RouteName,
            proxy?.Cluster.Config.ClusterId, proxy?.ProxiedDestination?.DestinationId);
        if (context.Response.HasStarted) return;

        if (error.Error == ForwarderError.RequestBodyClient && context.Features.Get<Listeners.ChunkExtensionGuard>() is { Refused: true })
        {
            gateway.Refusal = ReasonCodes.RequestChunkExtensionTooLong;
            context.Response.Headers.Connection = "close";
            await ProblemWriter.WriteAsync(context, StatusCodes.Status400BadRequest, "Chunk extension too long",
                ChunkExtensionTooLong, ReasonCodes.RequestChunkExtensionTooLong);
            return;
        }

        const string upstreamFailed = "The gateway could not get an answer from the upstream.";
        var (status, title, reason, detail) = error.Error switch
        {
            ForwarderError.NoAvailableDestinations => (503, "No healthy upstream", ReasonCodes.UpstreamUnavailable, "No destination of this route's cluster is healthy and undrained."),
            ForwarderError.RequestTimedOut => (504, "Upstream timed out", ReasonCodes.UpstreamTimeout, upstreamFailed),
            ForwarderError.RequestCanceled => (499, "Client closed the request", ReasonCodes.ClientCanceled, "The client went away before the answer."),
            ForwarderError.RequestBodyClient when ClientStatus(error.Exception) == StatusCodes.Status413PayloadTooLarge => (413, "Request body too large", ReasonCodes.RequestBodyTooLarge, "The request body is larger than the gateway accepts."),
            ForwarderError.RequestBodyClient when ClientStatus(error.Exception) == StatusCodes.Status408RequestTimeout => (408, "Request body too slow", ReasonCodes.RequestBodyTimeout, "The request body arrived more slowly than the gateway accepts."),
            ForwarderError.RequestBodyClient => (400, "Bad request body", ReasonCodes.RequestBodyInvalid, "The request body could not be read."),
            _ => (502, "Bad gateway", ReasonCodes.UpstreamError, upstreamFailed),
        };
        if (reason.Stage == ReasonStage.Upstream) gateway.RecordUpstreamFailure(reason);
        else gateway.Refusal = reason;
        await ProblemWriter.WriteAsync(context, status, title, detail, reason);
    }

    // The status Kestrel gave a client error while the body was read: 413 over the size limit, 408 below the minimum data rate.
    private static int? ClientStatus(Exception? exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is BadHttpRequestException bad) return bad.StatusCode;
        }

        return null;
    }

    // "METHOD SP request-target SP HTTP-version" as Kestrel measures it (the target as sent, before decoding);
    // over HTTP/2 the same parts of the pseudo-headers.
    private static int RequestLineLength(HttpContext context)
    {
        var request = context.Request;
        var target = context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpRequestFeature>()?.RawTarget;
        return request.Method.Length + (target?.Length ?? 0) + request.Protocol.Length + 2;
    }

    // Counted the way Kestrel counts its limits: every header line (repeated names included, which the
    // dictionary merges into one entry with several values) and the name and value lengths of each.
    private static (int Count, long Size) Measure(IHeaderDictionary headers)
    {
        var count = 0;
        long size = 0;
        foreach (var header in headers)
        {
            var values = header.Value;
            var lines = Math.Max(1, values.Count);
            count += lines;
            size += (long)header.Key.Length * lines;
            foreach (var value in values) size += value?.Length ?? 0;
        }

        return (count, size);
    }
}
