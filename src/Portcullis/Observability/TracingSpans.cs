using System.Diagnostics;
using Microsoft.AspNetCore.Http;
using Yarp.ReverseProxy.Forwarder;
using Yarp.ReverseProxy.Model;
using Portcullis.Pipeline;

namespace Portcullis.Observability;

/// <summary>
/// Spans (ActivitySource "Portcullis"): one server span per request, with children for the identity,
/// traffic and upstream stages. Created only while a listener samples the source: without one,
/// <see cref="ActivitySource.HasListeners"/> is false and nothing is allocated. The spans are never made
/// <see cref="Activity.Current"/> (they are parented explicitly), so ambient code is unaffected. Identity
/// and traffic spans are written when the request completes, from the stage timestamps; the upstream
/// span is live, because its id is the parent id the upstream receives in traceparent.
/// </summary>
internal sealed class GatewayTracing : IDisposable
{
    public const string SourceName = "Portcullis";
    public const string RequestSpan = "portcullis.request";
    public const string IdentitySpan = "portcullis.identity";
    public const string TrafficSpan = "portcullis.traffic";
    public const string UpstreamSpan = "portcullis.upstream";

    private readonly ActivitySource _source = new(SourceName);

    internal ActivitySource Source => _source;

    /// <summary>Starts the request span when someone samples it; its ids become the request's trace and span ids.</summary>
    public void Begin(HttpContext context, GatewayFeature gateway)
    {
        if (!_source.HasListeners()) return;
        ActivityContext parent;
        // ASP.NET Core's own request Activity is the parent only when a listener of its source records it;
        // otherwise (it exists for logging scopes only) the span continues the client's traceparent
        // directly, so that exported traces have no missing parent.
        if (Activity.Current is { IsAllDataRequested: true } ambient && ambient.Source.Name.Length > 0 && ambient.Source.HasListeners())
        {
            parent = ambient.Context;
        }
        else
        {
            var headers = context.Request.Headers;
            var traceparent = headers.TraceParent;
            if (traceparent.Count != 1 || !ActivityContext.TryParse(traceparent[0], headers.TraceState.Count == 1 ? headers.TraceState[0] : null, isRemote: true, out parent)) parent = default;
        }

        var previous = Activity.Current;
        var activity = _source.StartActivity(RequestSpan, ActivityKind.Server, parent);
        Activity.Current = previous;
        if (activity is null) return;
        gateway.RequestActivity = activity;
        gateway.TraceId = activity.TraceId;
        gateway.SpanId = activity.SpanId;
        if (activity.IsAllDataRequested)
        {
            activity.SetTag("http.request.method", context.Request.Method);
            activity.SetTag("portcullis.request_id", gateway.RequestId);
        }
    }

    /// <summary>
    /// Starts the span of one upstream attempt (ending a previous attempt's, which was retried) as a child
    /// of the request span; null without a request span. Its id is the upstream's traceparent parent id.
    /// </summary>
    public static Activity? StartUpstream(HttpContext context, GatewayFeature gateway)
    {
        if (gateway.RequestActivity is not { } request) return null;
        if (gateway.UpstreamActivity is { } retried)
        {
            retried.SetStatus(ActivityStatusCode.Error, "retried");
            retried.Stop();
        }

        var previous = Activity.Current;
        var activity = request.Source.StartActivity(UpstreamSpan, ActivityKind.Client, request.Context);
        Activity.Current = previous;
        gateway.UpstreamActivity = activity;
        if (activity is { IsAllDataRequested: true })
        {
            var proxy = context.Features.Get<IReverseProxyFeature>();
            activity.SetTag("portcullis.cluster", gateway.ClusterName ?? proxy?.Cluster.Config.ClusterId);
            activity.SetTag("portcullis.destination", proxy?.ProxiedDestination?.DestinationId);
            activity.SetTag("server.address", proxy?.ProxiedDestination?.Model.Config.Address);
            activity.SetTag("portcullis.attempt", Math.Max(1, gateway.Attempts));
        }

        return activity;
    }

    /// <summary>Ends the upstream span when the upstream's response headers arrive.</summary>
    public static void EndUpstream(GatewayFeature gateway, int status)
    {
        if (gateway.UpstreamActivity is not { } activity) return;
        gateway.UpstreamActivity = null;
        activity.SetTag("http.response.status_code", status);
        if (status >= 500) activity.SetStatus(ActivityStatusCode.Error);
        activity.Stop();
    }

    /// <summary>When the response has completed: the stage spans from their timestamps, then the request span ends.</summary>
    public static void Complete(HttpContext context, GatewayFeature gateway)
    {
        if (gateway.RequestActivity is not { } request) return;
        gateway.RequestActivity = null;
        var status = context.Response.StatusCode;
        if (gateway.UpstreamActivity is { } upstream)
        {
            gateway.UpstreamActivity = null;
            var error = context.Features.Get<IForwarderErrorFeature>();
            upstream.SetStatus(ActivityStatusCode.Error, error is null ? null : error.Error.ToString());
            upstream.Stop();
        }

        var times = gateway.Times;
        Stage(request, IdentitySpan, times.Start, times.IdentityStart, times.IdentityEnd, times.End, gateway.AuthReason);
        Stage(request, TrafficSpan, times.Start, times.TrafficStart, times.TrafficEnd, times.End, gateway.TrafficDecision);

        if (request.IsAllDataRequested)
        {
            if (gateway.RouteName is { } route)
            {
                request.DisplayName = $"{context.Request.Method} {route}";
                request.SetTag("portcullis.route", route);
            }

            request.SetTag("http.response.status_code", status);
            if (gateway.ClusterName is { } cluster) request.SetTag("portcullis.cluster", cluster);
            if (gateway.AuthReason is { } reason) request.SetTag("portcullis.auth_reason", reason);
            if (gateway.TrafficDecision is { } decision) request.SetTag("portcullis.traffic_decision", decision);
            if (gateway.Reason is { } answered) request.SetTag("portcullis.reason", answered);
        }

        if (status >= 500) request.SetStatus(ActivityStatusCode.Error);
        request.Stop();
    }

    // A stage span after the fact: start and end from Stopwatch stamps, placed on the request span's clock.
    private static void Stage(Activity request, string name, long origin, long start, long end, long completed, string? result)
    {
        if (start == 0) return;
        if (end == 0) end = completed != 0 ? completed : Stopwatch.GetTimestamp();
        var startTime = request.StartTimeUtc + Stopwatch.GetElapsedTime(origin, start);
        var previous = Activity.Current;
        var activity = request.Source.StartActivity(name, ActivityKind.Internal, request.Context, startTime: new DateTimeOffset(startTime, TimeSpan.Zero));
        Activity.Current = previous;
        if (activity is null) return;
        if (result is not null) activity.SetTag("portcullis.result", result);
        activity.SetEndTime(startTime + Stopwatch.GetElapsedTime(start, Math.Max(start, end)));
        activity.Stop();
    }

    public void Dispose() => _source.Dispose();
}
