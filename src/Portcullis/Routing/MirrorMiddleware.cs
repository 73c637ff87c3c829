using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Portcullis.Pipeline;
using Yarp.ReverseProxy.Model;

namespace Portcullis.Routing;

/// <summary>
/// routes[].mirror (shadow traffic), in YARP's pipeline after the route's header edits: a drawn share of the
/// requests is copied to the mirror cluster through that cluster's own YARP client (its TLS, its connection pool),
/// fire-and-forget — the client's request neither waits for the copy nor sees its answer or failure, and at most
/// maxConcurrent copies are in flight. A body is copied only when declared within maxBodySize; it is read once
/// into memory and replayed to the upstream (EnableBuffering), so the client's upload is not read twice.
/// The copy goes to a random available destination of the mirror cluster with the path and query as received,
/// the request's headers (after the gateway's scrub and the route's edits) and X-Portcullis-Mirror: 1.
/// </summary>
internal sealed partial class MirrorMiddleware(RequestDelegate next, MirrorMetrics metrics, ILogger<MirrorMiddleware> logger)
{
    internal const string MarkerHeader = "X-Portcullis-Mirror";

    // Connection-level and framing headers are the copy's own (HttpClient writes them).
    private static readonly HashSet<string> NotCopied = new(StringComparer.OrdinalIgnoreCase)
    {
        "Host", "Connection", "Keep-Alive", "Transfer-Encoding", "TE", "Trailer", "Upgrade", "Proxy-Connection", "Proxy-Authorization", "Content-Length", "Expect",
    };

    public Task InvokeAsync(HttpContext context)
    {
        var gateway = context.Features.Get<GatewayFeature>();
        if (gateway?.ResolveRoute(context)?.Mirror is not { } mirror || (mirror.Share < 1 && Random.Shared.NextDouble() >= mirror.Share)) return next(context);
        if (gateway.RouteBinding?.Clusters.GetValueOrDefault(mirror.Cluster) is not { } cluster) return next(context);
        return MirrorAsync(context, mirror, cluster, metrics.For(gateway.RouteName ?? ""));
    }

    private async Task MirrorAsync(HttpContext context, CompiledMirror mirror, ClusterState cluster, MirrorMetrics.RouteCounts counts)
    {
        var request = context.Request;
        byte[]? body = null;
        var hasBody = context.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody == true;
        if (hasBody)
        {
            if (request.ContentLength is not { } length || length > mirror.MaxBodySize)
            {
                Interlocked.Increment(ref counts.DroppedBody);
                await next(context);
                return;
            }

            request.EnableBuffering((int)Math.Min(length, 1 << 20));
            body = new byte[length];
            await request.Body.ReadExactlyAsync(body, context.RequestAborted);
            request.Body.Position = 0;
        }

        if (!mirror.TryEnter())
        {
            Interlocked.Increment(ref counts.DroppedConcurrency);
        }
        else if (Copy(context, cluster, body) is not { } copy)
        {
            mirror.Exit();
            Interlocked.Increment(ref counts.Failed); // no available destination in the mirror cluster
        }
        else
        {
            Interlocked.Increment(ref counts.Sent);
            _ = SendAsync(cluster, copy, mirror, counts, context.TraceIdentifier);
        }

        await next(context);
    }

    private static HttpRequestMessage? Copy(HttpContext context, ClusterState cluster, byte[]? body)
    {
        var destinations = cluster.DestinationsState.AvailableDestinations;
        if (destinations.Count == 0) return null;
        var destination = destinations[destinations.Count == 1 ? 0 : Random.Shared.Next(destinations.Count)];
        var request = context.Request;
        var target = destination.Model.Config.Address.TrimEnd('/') + request.PathBase + request.Path + request.QueryString;
        var copy = new HttpRequestMessage(new HttpMethod(request.Method), target);
        if (body is not null) copy.Content = new ByteArrayContent(body);
        foreach (var (name, values) in request.Headers)
        {
            if (NotCopied.Contains(name) || name.StartsWith(':')) continue;
            if (!copy.Headers.TryAddWithoutValidation(name, (IEnumerable<string?>)values)) copy.Content?.Headers.TryAddWithoutValidation(name, (IEnumerable<string?>)values);
        }

        copy.Headers.TryAddWithoutValidation(MarkerHeader, "1");
        return copy;
    }

    private async Task SendAsync(ClusterState cluster, HttpRequestMessage copy, CompiledMirror mirror, MirrorMetrics.RouteCounts counts, string requestId)
    {
        try
        {
            using var timeout = new CancellationTokenSource(mirror.Timeout);
            using var response = await cluster.Model.HttpClient.SendAsync(copy, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException or IOException)
        {
            Interlocked.Increment(ref counts.Failed);
            Log.CopyFailed(logger, mirror.Cluster, requestId, ex.GetType().Name);
        }
        finally
        {
            copy.Dispose();
            mirror.Exit();
        }
    }

    private static partial class Log
    {
        [LoggerMessage(2130, LogLevel.Debug, "Mirror copy of request {RequestId} to cluster {Cluster} failed ({Error}); the client is not affected")]
        public static partial void CopyFailed(ILogger logger, string cluster, string requestId, string error);
    }
}
