using Microsoft.AspNetCore.Http;
using Portcullis.Admin;
using Portcullis.Problems;
using Yarp.ReverseProxy.Forwarder;

namespace Portcullis.Hosting;

/// <summary>
/// Outermost stage: takes the snapshot for this request, sends admin-listener traffic to the admin API,
/// enforces the configured header and body limits with problem+json answers (Kestrel's own, higher
/// limits stay as the hard backstop), and turns proxy errors into problem+json.
/// </summary>
internal sealed class GatewayMiddleware(RequestDelegate next, SnapshotStore store, AdminListenerFilter adminFilter, AdminApi admin)
{
    public Task InvokeAsync(HttpContext context)
    {
        if (adminFilter.IsAdmin(context.Connection))
        {
            return admin.HandleAsync(context);
        }

        var snapshot = store.Current;
        var gateway = new GatewayFeature(snapshot);
        context.Features.Set(gateway);

        var limits = snapshot.Config.Limits;
        var headers = context.Request.Headers;
        if (headers.Count > limits.MaxRequestHeaderCount || HeadersSize(headers) > limits.MaxRequestHeadersSize.Bytes)
        {
            gateway.Reason = "request.headers-too-large";
            context.Response.Headers.Connection = "close";
            return ProblemWriter.WriteAsync(context, StatusCodes.Status431RequestHeaderFieldsTooLarge, "Request headers too large",
                $"Request headers must stay within {limits.MaxRequestHeaderCount} headers and {limits.MaxRequestHeadersSize} in total.", gateway.Reason);
        }

        if (context.Request.ContentLength > limits.MaxRequestBodySize.Bytes)
        {
            gateway.Reason = "request.body-too-large";
            context.Response.Headers.Connection = "close";
            return ProblemWriter.WriteAsync(context, StatusCodes.Status413PayloadTooLarge, "Request body too large",
                $"Request bodies must stay within {limits.MaxRequestBodySize}.", gateway.Reason);
        }

        var task = next(context);
        return task.IsCompletedSuccessfully && context.Response.HasStarted ? task : AfterAsync(task, context, gateway);
    }

    private static async Task AfterAsync(Task pending, HttpContext context, GatewayFeature gateway)
    {
        await pending;
        if (context.Response.HasStarted) return;
        if (context.Features.Get<IForwarderErrorFeature>() is not { } error) return;

        var (status, title, reason) = error.Error switch
        {
            ForwarderError.NoAvailableDestinations => (503, "No healthy upstream", "upstream.unavailable"),
            ForwarderError.RequestTimedOut => (504, "Upstream timed out", "upstream.timeout"),
            ForwarderError.RequestCanceled => (499, "Client closed the request", "client.canceled"),
            ForwarderError.RequestBodyClient when IsTooLarge(error.Exception) => (413, "Request body too large", "request.body-too-large"),
            ForwarderError.RequestBodyClient => (400, "Bad request body", "request.body-invalid"),
            _ => (502, "Bad gateway", "upstream.error"),
        };
        gateway.Reason = reason;
        await ProblemWriter.WriteAsync(context, status, title, "The gateway could not get an answer from the upstream.", reason);
    }

    private static bool IsTooLarge(Exception? exception)
    {
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is BadHttpRequestException { StatusCode: StatusCodes.Status413PayloadTooLarge }) return true;
        }

        return false;
    }

    // Counted the way Kestrel counts its limit: name and value lengths.
    private static long HeadersSize(IHeaderDictionary headers)
    {
        long total = 0;
        foreach (var header in headers)
        {
            total += header.Key.Length;
            foreach (var value in header.Value) total += value?.Length ?? 0;
        }

        return total;
    }
}
