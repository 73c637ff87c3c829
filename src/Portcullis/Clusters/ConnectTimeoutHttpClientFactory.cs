using System.Globalization;
using Microsoft.Extensions.Logging;
using Portcullis.Configuration;
using Yarp.ReverseProxy.Forwarder;

namespace Portcullis.Clusters;

/// <summary>YARP's client factory plus the per-cluster connect timeout (YARP does not expose one).</summary>
internal sealed class ConnectTimeoutHttpClientFactory(ILogger<ForwarderHttpClientFactory> logger) : ForwarderHttpClientFactory(logger)
{
    protected override void ConfigureHandler(ForwarderHttpClientContext context, SocketsHttpHandler handler)
    {
        base.ConfigureHandler(context, handler);
        // traceparent is written by TraceContextRequestTransform with the gateway's span as parent (no HttpClient child Activity per request).
        handler.ActivityHeadersPropagator = null;
        if (context.NewMetadata is { } metadata
            && metadata.TryGetValue(SnapshotBuilder.ConnectTimeoutMetadata, out var text)
            && double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var milliseconds))
        {
            handler.ConnectTimeout = TimeSpan.FromMilliseconds(milliseconds);
        }
    }
}
