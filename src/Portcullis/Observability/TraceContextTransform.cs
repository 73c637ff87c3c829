using System.Diagnostics;
using Yarp.ReverseProxy.Transforms;
using Portcullis.Pipeline;

namespace Portcullis.Observability;

/// <summary>
/// Toward the upstream: the request id the gateway minted (replacing an untrusted or invalid inbound
/// X-Request-Id; a kept one was copied with the other headers), a traceparent whose parent id is the gateway's span (same trace id, flags and
/// tracestate as the inbound context), replacing whatever the client sent; and the upstream timing
/// (first attempt's request → the response headers). When an HttpClient Activity exists (someone
/// listens to System.Net.Http), its propagator overwrites this header with its own child span.
/// </summary>
internal sealed class TraceContextRequestTransform : RequestTransform
{
    private const string TraceParent = "traceparent";
    private const string TraceState = "tracestate";

    public override ValueTask ApplyAsync(RequestTransformContext context)
    {
        if (context.HttpContext.Features.Get<GatewayFeature>() is not { } gateway) return ValueTask.CompletedTask;
        var now = Stopwatch.GetTimestamp();
        if (gateway.Times.UpstreamStart == 0) gateway.Times.UpstreamStart = now;
        gateway.Times.AttemptStart = now;
        gateway.Times.UpstreamEnd = 0; // a retry starts over
        if (gateway.RequestIdMinted)
        {
            var proxyHeaders = context.ProxyRequest.Headers;
            proxyHeaders.Remove(RequestObserver.RequestIdHeader);
            proxyHeaders.TryAddWithoutValidation(RequestObserver.RequestIdHeader, gateway.RequestId);
        }

        if (gateway.TraceId == default) return ValueTask.CompletedTask;
        var activity = Activity.Current;
        var flags = activity?.ActivityTraceFlags ?? gateway.TraceFlags;
        var state = activity is null ? gateway.TraceState : activity.TraceStateString;
        var parent = gateway.SpanId;
        if (GatewayTracing.StartUpstream(context.HttpContext, gateway) is { } upstream)
        {
            // Tracing on: the upstream's parent is this attempt's span, a child of the request span.
            parent = upstream.SpanId;
            flags = upstream.ActivityTraceFlags;
        }

        var headers = context.ProxyRequest.Headers;
        headers.Remove(TraceParent);
        headers.Remove(TraceState);
        headers.TryAddWithoutValidation(TraceParent, Format(gateway.TraceId, parent, flags));
        if (!string.IsNullOrEmpty(state)) headers.TryAddWithoutValidation(TraceState, state);
        return ValueTask.CompletedTask;
    }

    /// <summary>version-traceid-parentid-flags (W3C Trace Context, version 00).</summary>
    internal static string Format(ActivityTraceId traceId, ActivitySpanId spanId, ActivityTraceFlags flags) =>
        string.Create(55, (traceId, spanId, flags), static (span, s) =>
        {
            Span<byte> raw = stackalloc byte[16];
            span[0] = '0';
            span[1] = '0';
            span[2] = '-';
            s.traceId.CopyTo(raw);
            Convert.TryToHexStringLower(raw, span.Slice(3, 32), out _);
            span[35] = '-';
            s.spanId.CopyTo(raw[..8]);
            Convert.TryToHexStringLower(raw[..8], span.Slice(36, 16), out _);
            span[52] = '-';
            span[53] = '0';
            span[54] = (s.flags & ActivityTraceFlags.Recorded) != 0 ? '1' : '0';
        });
}

/// <summary>Stamps the end of the upstream call when its response headers arrive.</summary>
internal sealed class UpstreamTimingResponseTransform : ResponseTransform
{
    public override ValueTask ApplyAsync(ResponseTransformContext context)
    {
        if (context.HttpContext.Features.Get<GatewayFeature>() is { } gateway)
        {
            gateway.Times.UpstreamEnd = Stopwatch.GetTimestamp();
            if (context.ProxyResponse is { } response) GatewayTracing.EndUpstream(gateway, (int)response.StatusCode);
        }

        return ValueTask.CompletedTask;
    }
}
