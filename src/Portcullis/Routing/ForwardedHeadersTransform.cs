using Microsoft.AspNetCore.Http;
using Yarp.ReverseProxy.Transforms;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Routing;

/// <summary>
/// X-Forwarded-For/-Proto/-Host and Forwarded toward upstreams. From a trusted proxy the inbound
/// values are kept and the peer appended; from anyone else they are replaced, so a client cannot
/// pretend to be someone else.
/// </summary>
internal sealed class ForwardedHeadersTransform : RequestTransform
{
    private const string ForwardedFor = "X-Forwarded-For";
    private const string ForwardedProto = "X-Forwarded-Proto";
    private const string ForwardedHost = "X-Forwarded-Host";
    private const string ForwardedPrefix = "X-Forwarded-Prefix";
    private const string Forwarded = "Forwarded";
    private const string RealIp = "X-Real-IP";

    public override ValueTask ApplyAsync(RequestTransformContext context)
    {
        var http = context.HttpContext;
        var inbound = http.Request.Headers;
        var outbound = context.ProxyRequest.Headers;
        var peer = http.Connection.RemoteIpAddress;
        var trusted = http.Features.Get<GatewayFeature>()?.Snapshot.IsTrustedProxy(peer) == true;

        var inboundFor = trusted ? inbound[ForwardedFor].ToString() : "";
        var inboundProto = trusted ? inbound[ForwardedProto].ToString() : "";
        var inboundHost = trusted ? inbound[ForwardedHost].ToString() : "";

        outbound.Remove(ForwardedFor);
        outbound.Remove(ForwardedProto);
        outbound.Remove(ForwardedHost);
        outbound.Remove(ForwardedPrefix);
        if (!trusted)
        {
            outbound.Remove(Forwarded);
            outbound.Remove(RealIp);
        }

        if (peer is not null)
        {
            if (peer.IsIPv4MappedToIPv6) peer = peer.MapToIPv4();
            var address = peer.ToString();
            outbound.TryAddWithoutValidation(ForwardedFor, inboundFor.Length > 0 ? inboundFor + ", " + address : address);
        }

        outbound.TryAddWithoutValidation(ForwardedProto, inboundProto.Length > 0 ? inboundProto : http.Request.Scheme);
        var host = inboundHost.Length > 0 ? inboundHost : http.Request.Host.Value;
        if (!string.IsNullOrEmpty(host)) outbound.TryAddWithoutValidation(ForwardedHost, host);
        if (http.Request.PathBase.HasValue) outbound.TryAddWithoutValidation(ForwardedPrefix, http.Request.PathBase.Value);
        return ValueTask.CompletedTask;
    }

}
