using System.Net;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Listeners;

/// <summary>Binds Kestrel to the configured listeners and applies the request limits.</summary>
internal sealed class KestrelSetup(SnapshotStore store, Tls.CertificateStore certificates, ConnectionPeers peers) : IConfigureOptions<KestrelServerOptions>, IConfigureOptions<HostOptions>
{
    public void Configure(KestrelServerOptions options)
    {
        var snapshot = store.Current;
        var limits = snapshot.Config.Limits;
        options.AddServerHeader = false;
        // Content-Length must be 1*DIGIT (RFC 9110 §8.6); Kestrel alone also takes "+5".
        options.RequestHeaderEncodingSelector = StrictContentLength.Select;

        // Kestrel's limits are the hard backstop, set above the configured ones so that the gateway
        // itself answers requests between the two with a problem+json body.
        // Saturating: a huge configured value must not overflow into a negative one Kestrel throws on at startup.
        options.Limits.MaxRequestHeadersTotalSize = Backstop(limits.MaxRequestHeadersSize.Bytes);
        options.Limits.MaxRequestHeaderCount = Backstop(limits.MaxRequestHeaderCount);
        options.Limits.MaxRequestLineSize = Backstop(limits.MaxRequestLineSize.Bytes);
        // Kestrel refuses to start when its read buffer cannot hold a whole request line or header block.
        var buffer = Math.Max(options.Limits.MaxRequestLineSize, options.Limits.MaxRequestHeadersTotalSize);
        if (options.Limits.MaxRequestBufferSize is { } size && size < buffer) options.Limits.MaxRequestBufferSize = buffer;
        options.Limits.MaxRequestBodySize = limits.MaxRequestBodySize.Bytes;
        options.Limits.RequestHeadersTimeout = limits.RequestHeadersTimeout;
        options.Limits.KeepAliveTimeout = limits.KeepAliveTimeout;
        options.Limits.MaxConcurrentConnections = limits.MaxConnections > 0 ? limits.MaxConnections : null;
        options.Limits.MaxConcurrentUpgradedConnections = limits.MaxConnections > 0 ? limits.MaxConnections : null;
        options.Limits.MinRequestBodyDataRate = limits.MinRequestBodyDataRate > 0
            ? new MinDataRate(limits.MinRequestBodyDataRate, limits.MinRequestBodyDataRateGracePeriod)
            : null;
        options.Limits.Http2.MaxRequestHeaderFieldSize = Backstop(limits.MaxRequestHeadersSize.Bytes);

        foreach (var listener in snapshot.Listeners)
        {
            var protocols = listener.Protocols switch
            {
                ListenerProtocols.Http1 => HttpProtocols.Http1,
                ListenerProtocols.Http2 => HttpProtocols.Http2,
                _ => HttpProtocols.Http1AndHttp2,
            };
            var address = listener.Address;
            var policy = ListenerPolicy.For(listener);
            Action<ListenOptions> configure = listen =>
            {
                listen.Protocols = protocols;
                if (protocols != HttpProtocols.Http1) listen.Use(peers.Middleware); // who a HTTP/2 flood comes from
                if (policy is not null)
                {
                    // HSTS and the HTTPS redirect are per listener: the connection carries its listener's policy.
                    listen.Use(next => connection =>
                    {
                        connection.Items[ListenerPolicy.ItemKey] = policy;
                        return next(connection);
                    });
                }

                if (listener.Tls is not null) certificates.UseHttps(listen, listener.Name);

                // After TLS: the guard reads the plaintext HTTP/1.1 bytes (HTTP/2 has no chunked framing).
                if (protocols != HttpProtocols.Http2) listen.Use(ChunkExtensionGuard.Middleware);
            };
            if (address.IsLocalhost) options.ListenLocalhost(address.Port, configure);
            else if (address.Ip is null) options.ListenAnyIP(address.Port, configure);
            else options.Listen(new IPEndPoint(address.Ip, address.Port), configure);
        }
    }

    /// <summary>Twice the configured limit, kept within 1..int.MaxValue/2.</summary>
    private static int Backstop(long configured) => (int)Math.Clamp(configured, 1, int.MaxValue / 4) * 2;

    // The stop's whole time: the delay during which route listeners still accept, then the drain (GatewayShutdown).
    public void Configure(HostOptions options) => options.ShutdownTimeout = store.Current.Config.Limits.ShutdownDelay + store.Current.Config.Limits.ShutdownTimeout;
}
