using System.Globalization;
using Microsoft.Extensions.Logging;
using Portcullis.Configuration;
using Portcullis.Upstream;
using Yarp.ReverseProxy.Forwarder;

namespace Portcullis.Clusters;

/// <summary>
/// YARP's client factory plus the per-cluster connect timeout (YARP does not expose one) and upstream TLS
/// (CA bundle, SNI name, pins, rotating client certificate) for clusters with a `tls` section.
/// </summary>
internal sealed class ConnectTimeoutHttpClientFactory(ILogger<ForwarderHttpClientFactory> logger, UpstreamTlsStore? upstreamTls = null) : ForwarderHttpClientFactory(logger)
{
    // YARP reuses a cluster's client when its HttpClientConfig is unchanged; our settings live in metadata.
    protected override bool CanReuseOldClient(ForwarderHttpClientContext context) =>
        base.CanReuseOldClient(context)
        && Same(context, ClustersCompiler.ConnectTimeoutMetadata)
        && Same(context, UpstreamMetadata.Tls);

    private static bool Same(ForwarderHttpClientContext context, string key) =>
        context.OldMetadata?.GetValueOrDefault(key) == context.NewMetadata?.GetValueOrDefault(key);

    protected override void ConfigureHandler(ForwarderHttpClientContext context, SocketsHttpHandler handler)
    {
        base.ConfigureHandler(context, handler);
        // traceparent is written by TraceContextRequestTransform with the gateway's span as parent (no HttpClient child Activity per request).
        handler.ActivityHeadersPropagator = null;
        if (context.NewMetadata is not { } metadata) return;
        if (metadata.TryGetValue(ClustersCompiler.ConnectTimeoutMetadata, out var text)
            && double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var milliseconds))
        {
            handler.ConnectTimeout = TimeSpan.FromMilliseconds(milliseconds);
        }

        if (upstreamTls is not null && metadata.TryGetValue(UpstreamMetadata.Tls, out var key) && upstreamTls.Get(key) is { } tls)
        {
            // The cluster opens its connections itself so that SNI, trust and the client certificate are its own;
            // pooled connections are renewed so that a rotated certificate or CA reaches all of them in bounded time.
            handler.ConnectCallback = tls.ConnectAsync;
            handler.PooledConnectionLifetime = UpstreamTlsStore.ConnectionLifetime;
        }
    }
}
