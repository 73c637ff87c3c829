using System.Threading.Channels;
using Microsoft.AspNetCore.Http;
using Portcullis.Observability;
using Portcullis.Configuration;
using Portcullis.Pipeline;
using Yarp.ReverseProxy.Model;

namespace Portcullis.Analytics;

/// <summary>
/// The request path's part of analytics, called once per request when the response has completed: adds
/// the request to its rollup row (<see cref="RollupTables"/>) and, for every refused or failed request and
/// a share of the rest, queues a sample for the background writer. Never blocks and never does I/O: a
/// full sample queue drops the sample and counts it. Registered only when analytics.path is set.
/// </summary>
internal sealed class AnalyticsRecorder : IRequestCompletionObserver
{
    /// <summary>Raw paths of requests no route matched are cut to this many characters.</summary>
    public const int MaxRawPathLength = 256;

    private readonly Channel<AnalyticsSample> _samples;
    private readonly CompiledAnalytics _started;
    private long _samplesDropped;

    /// <param name="stripes">Rollup stripes (default: two per core); tests pin one so a thread that changes cores finds its row.</param>
    public AnalyticsRecorder(CompiledAnalytics started, int? stripes = null)
    {
        _started = started;
        Rollups = new RollupTables(stripes);
        Arrivals = new ArrivalTables(stripes);
        _samples = Channel.CreateBounded<AnalyticsSample>(new BoundedChannelOptions(started.QueueSize)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait, // TryWrite then fails instead of waiting: dropped and counted
        });
    }

    public RollupTables Rollups { get; }

    /// <summary>Per-second arrivals per route and rate key, for the advisor (kept only while advice is on).</summary>
    public ArrivalTables Arrivals { get; }

    public ChannelReader<AnalyticsSample> Samples => _samples.Reader;

    /// <summary>Samples dropped because the queue was full.</summary>
    public long SamplesDropped => Interlocked.Read(ref _samplesDropped);

    public void Completed(HttpContext context, GatewayFeature gateway)
    {
        // A reload that turns analytics off (or moves it) needs a restart: until then the store started with records.
        var options = gateway.Snapshot.Analytics ?? _started;
        var status = context.Response.StatusCode;
        var cluster = gateway.ClusterName ?? context.Features.Get<IReverseProxyFeature>()?.Cluster.Config.ClusterId;
        // The access log's sizes (counted when there is no Content-Length); unknown counts as 0 here.
        var bytesIn = Math.Max(0, Observability.BodyByteCounting.BytesIn(context, gateway));
        var bytesOut = Math.Max(0, Observability.BodyByteCounting.BytesOut(context, gateway));
        Record(gateway, status, cluster, bytesIn, bytesOut);
        if (gateway.TrafficReached && gateway.Snapshot.Advice is not null) RecordArrival(context, gateway);
        if (status >= 400 || (options.SuccessRate > 0 && (options.SuccessRate >= 1 || Random.Shared.NextDouble() < options.SuccessRate)))
        {
            Sample(context, gateway, options, status, cluster, bytesIn, bytesOut);
        }
    }

    /// <summary>The rollup step (allocation-free for a row seen before in this flush interval).</summary>
    internal void Record(GatewayFeature gateway, int status, string? cluster, long bytesIn, long bytesOut)
    {
        var caller = gateway.Caller;
        var ticks = gateway.StartedAt.UtcTicks;
        var key = new RollupKey(ticks - (ticks % TimeSpan.TicksPerMinute), gateway.RouteName, cluster, caller?.Consumer, caller?.ConsumerGroup, (short)status, ReasonOf(gateway));
        Rollups.Add(key, bytesIn, bytesOut, Microseconds(gateway.Times.Total) ?? 0, Microseconds(gateway.Times.Upstream) ?? -1);
    }

    /// <summary>
    /// The arrivals step: the request's second within its minute, under its route and rate key (the consumer, or
    /// "ip:" and the client address when anonymous: what a `key: consumer` limit counts). Allocation-free for a
    /// row seen before in this flush interval.
    /// </summary>
    internal void RecordArrival(HttpContext context, GatewayFeature gateway)
    {
        if (gateway.RouteName is not { } route) return;
        var caller = gateway.Caller;
        var ticks = gateway.StartedAt.UtcTicks;
        var minute = ticks - (ticks % TimeSpan.TicksPerMinute);
        var second = (int)(ticks / TimeSpan.TicksPerSecond % 60);
        var limited = ReferenceEquals(gateway.Refusal, ReasonCodes.RateLimitExceeded);
        var key = caller?.Consumer is { Length: > 0 } consumer
            ? new ArrivalKey(minute, route, consumer, caller.ConsumerGroup, limited, gateway.RateKeyMissing)
            : ArrivalKey.ForAddress(minute, route, gateway.ClientAddress(context), caller?.ConsumerGroup, limited, gateway.RateKeyMissing);
        Arrivals.Add(key, second);
    }

    private void Sample(HttpContext context, GatewayFeature gateway, CompiledAnalytics options, int status, string? cluster, long bytesIn, long bytesOut)
    {
        var request = context.Request;
        var caller = gateway.Caller;
        var sample = new AnalyticsSample
        {
            Time = gateway.StartedAt,
            RequestId = gateway.RequestId ?? context.TraceIdentifier,
            TraceId = gateway.TraceId,
            Route = gateway.RouteName,
            Cluster = cluster,
            Consumer = caller?.Consumer,
            ConsumerGroup = caller?.ConsumerGroup,
            Client = gateway.ClientAddress(context),
            Method = request.Method,
            Host = request.Host.HasValue ? request.Host.Value : null,
            Path = PathOf(request, gateway, options),
            Status = (short)status,
            Reason = ReasonOf(gateway),
            Auth = gateway.Auth.Reason?.Code,
            Traffic = gateway.Traffic.Reason?.Code,
            Attempts = gateway.Upstream.Attempts,
            BytesIn = bytesIn,
            BytesOut = bytesOut,
            LatencyUs = Microseconds(gateway.Times.Total) ?? 0,
            UpstreamUs = Microseconds(gateway.Times.Upstream) ?? -1,
        };
        if (!_samples.Writer.TryWrite(sample)) Interlocked.Increment(ref _samplesDropped);
    }

    // The route's template unless raw paths are asked for; a request no route matched has no template, so
    // its raw path is kept, capped. Never the query string (it can carry credentials and personal data).
    // A raw path is the client's, as the access log's `path`: before any route pathRewrite.
    internal static string PathOf(HttpRequest request, GatewayFeature gateway, CompiledAnalytics options)
    {
        var route = gateway.RouteName;
        if (!options.RawPaths && route is not null && options.RouteTemplates.TryGetValue(route, out var template)) return template;
        var path = request.PathBase.HasValue ? request.PathBase.Value + gateway.ClientPath(request) : gateway.ClientPath(request);
        if (string.IsNullOrEmpty(path)) return "/";
        return path.Length > MaxRawPathLength ? path[..MaxRawPathLength] : path;
    }

    /// <summary>Why the gateway answered itself: its own refusal, else the identity or traffic stage's refusal; null when served.</summary>
    internal static string? ReasonOf(GatewayFeature gateway)
    {
        if (gateway.Refusal is { } refusal) return refusal.Code;
        var auth = gateway.Auth;
        if (auth.Denied) return auth.Reason?.Code;
        var traffic = gateway.Traffic;
        return traffic.Refused ? traffic.Reason?.Code : null;
    }

    private static long? Microseconds(TimeSpan? duration) => duration is { } d ? d.Ticks / TimeSpan.TicksPerMicrosecond : null;
}
