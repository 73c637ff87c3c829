using System.Net;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Portcullis.Configuration;
using Portcullis.Hosting;

namespace Portcullis.Listeners;

/// <summary>Binds Kestrel to the configured listeners and applies the request limits.</summary>
internal sealed class KestrelSetup(SnapshotStore store) : IConfigureOptions<KestrelServerOptions>, IConfigureOptions<HostOptions>
{
    public void Configure(KestrelServerOptions options)
    {
        var snapshot = store.Current;
        var limits = snapshot.Config.Limits;
        options.AddServerHeader = false;

        // Kestrel's limits are the hard backstop, set above the configured ones so that the gateway
        // itself answers requests between the two with a problem+json body.
        options.Limits.MaxRequestHeadersTotalSize = (int)Math.Min(int.MaxValue / 2, limits.MaxRequestHeadersSize.Bytes * 2);
        options.Limits.MaxRequestHeaderCount = limits.MaxRequestHeaderCount * 2;
        options.Limits.MaxRequestLineSize = (int)Math.Min(int.MaxValue, limits.MaxRequestLineSize.Bytes);
        options.Limits.MaxRequestBodySize = limits.MaxRequestBodySize.Bytes;
        options.Limits.RequestHeadersTimeout = limits.RequestHeadersTimeout;
        options.Limits.KeepAliveTimeout = limits.KeepAliveTimeout;
        options.Limits.MaxConcurrentConnections = limits.MaxConnections > 0 ? limits.MaxConnections : null;
        options.Limits.MaxConcurrentUpgradedConnections = limits.MaxConnections > 0 ? limits.MaxConnections : null;
        options.Limits.MinRequestBodyDataRate = limits.MinRequestBodyDataRate > 0
            ? new MinDataRate(limits.MinRequestBodyDataRate, limits.MinRequestBodyDataRateGracePeriod)
            : null;
        options.Limits.Http2.MaxRequestHeaderFieldSize = (int)Math.Min(int.MaxValue / 2, limits.MaxRequestHeadersSize.Bytes * 2);

        foreach (var listener in snapshot.Listeners)
        {
            var protocols = listener.Protocols switch
            {
                ListenerProtocols.Http1 => HttpProtocols.Http1,
                ListenerProtocols.Http2 => HttpProtocols.Http2,
                _ => HttpProtocols.Http1AndHttp2,
            };
            var address = listener.Address;
            Action<ListenOptions> configure = listen => listen.Protocols = protocols;
            if (address.IsLocalhost) options.ListenLocalhost(address.Port, configure);
            else if (address.Ip is null) options.ListenAnyIP(address.Port, configure);
            else options.Listen(new IPEndPoint(address.Ip, address.Port), configure);
        }
    }

    public void Configure(HostOptions options) => options.ShutdownTimeout = store.Current.Config.Limits.ShutdownTimeout;
}
