using System.Buffers;
using System.Diagnostics;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Primitives;
using Portcullis.Configuration;
using Yarp.ReverseProxy.Forwarder;
using Yarp.ReverseProxy.Model;
using Portcullis.Pipeline;

namespace Portcullis.Observability;

/// <summary>
/// Stage 1 and stage 10 of the request path. <see cref="Begin"/> (first thing for every route request)
/// settles the request id and trace context; when the response has completed, the access-log line is
/// captured from the request's <see cref="GatewayFeature"/> and queued. Nothing here blocks, and with
/// the access log off nothing is captured.
/// </summary>
internal sealed class RequestObserver
{
    public const string RequestIdHeader = GatewayFeature.RequestIdHeader;
    public const int MaxRequestIdLength = 128;

    private static readonly SearchValues<char> RequestIdChars =
        SearchValues.Create("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:/+=@");

    private static readonly Func<object, Task> OnStarting = static state =>
    {
        var context = (HttpContext)state;
        // Set as late as possible: upstream answers (and a retry that clears headers) cannot remove or replace it.
        context.Response.Headers[RequestIdHeader] = context.TraceIdentifier;
        return Task.CompletedTask;
    };

    private readonly AccessLog _log;
    private readonly TimeProvider _time;
    private readonly Func<object, Task> _onCompleted;
    private readonly GatewayMetrics? _metrics;
    private readonly GatewayTracing? _tracing;
    private readonly IRequestCompletionObserver? _completion;

    public RequestObserver(AccessLog log, TimeProvider time, GatewayMetrics? metrics = null, GatewayTracing? tracing = null, IRequestCompletionObserver? completion = null)
    {
        _log = log;
        _time = time;
        _metrics = metrics;
        _tracing = tracing;
        _completion = completion; // analytics, when on
        _onCompleted = Completed;
    }

    public void Begin(HttpContext context, GatewayFeature gateway)
    {
        gateway.Times.Start = Stopwatch.GetTimestamp();
        gateway.StartedAt = _time.GetUtcNow();
        var snapshot = gateway.Snapshot;
        var headers = context.Request.Headers;

        // Request id: a valid one from a peer allowed to set it, otherwise a new one (16 random bytes, hex).
        var inbound = headers[RequestIdHeader];
        string requestId;
        if (inbound.Count == 1 && IsValidRequestId(inbound[0]) && Trusts(snapshot, context))
        {
            requestId = inbound[0]!;
        }
        else
        {
            // TraceContextRequestTransform puts it on the upstream request (replacing an inbound one): the
            // client's request headers stay untouched, which keeps Kestrel's header store small.
            requestId = ActivityTraceId.CreateRandom().ToHexString();
            gateway.RequestIdMinted = true;
        }

        gateway.RequestId = requestId;
        context.TraceIdentifier = requestId; // problem bodies' requestId, ASP.NET Core logs
        context.Response.OnStarting(OnStarting, context);

        // Trace context. ASP.NET Core's hosting already made an Activity from traceparent/tracestate when
        // anyone listens (or logging is on); its span is the gateway's span and HttpClient propagates it
        // upstream. Without one, no Activity is created here: the ids are kept as values and
        // TraceContextTransform writes the upstream's traceparent.
        if (Activity.Current is { } activity)
        {
            gateway.TraceId = activity.TraceId;
            gateway.SpanId = activity.SpanId;
        }
        else
        {
            var traceparent = headers.TraceParent;
            if (traceparent.Count == 1 && ActivityContext.TryParse(traceparent[0], headers.TraceState.Count == 1 ? headers.TraceState[0] : null, isRemote: true, out var parent))
            {
                gateway.TraceId = parent.TraceId;
                gateway.TraceFlags = parent.TraceFlags;
                gateway.TraceState = parent.TraceState;
            }
            else
            {
                gateway.TraceId = ActivityTraceId.CreateRandom();
            }

            gateway.SpanId = ActivitySpanId.CreateRandom();
        }

        _tracing?.Begin(context, gateway); // the request span, only when someone samples it
        if (snapshot.Observability.AccessLog is not null || gateway.RequestActivity is not null || _metrics?.AnyRequestInstrumentEnabled == true || _completion is not null)
        {
            context.Response.OnCompleted(_onCompleted, context);
        }

        // Body sizes are counted only for someone who reads them: analytics, or an access log with bytesIn/bytesOut.
        if (_completion is not null || (snapshot.Observability.AccessLog is { } log && (log.Fields & (AccessLogFields.BytesIn | AccessLogFields.BytesOut)) != 0))
        {
            BodyByteCounting.Install(context, gateway);
        }
    }

    internal static bool IsValidRequestId(string? value) =>
        value is { Length: > 0 and <= MaxRequestIdLength } && !value.AsSpan().ContainsAnyExcept(RequestIdChars);

    private static bool Trusts(GatewaySnapshot snapshot, HttpContext context) => snapshot.Observability.RequestIdTrust switch
    {
        RequestIdTrust.Always => true,
        RequestIdTrust.Never => false,
        _ => snapshot.IsTrustedProxy(context.Connection.RemoteIpAddress),
    };

    private Task Completed(object state)
    {
        var context = (HttpContext)state;
        if (context.Features.Get<GatewayFeature>() is not { } gateway) return Task.CompletedTask;
        gateway.Times.End = Stopwatch.GetTimestamp();
        gateway.CompleteUpstream(context.Response.StatusCode, context.Features.Get<IForwarderErrorFeature>() is not null);
        _metrics?.RequestCompleted(context, gateway);
        GatewayTracing.Complete(context, gateway);
        _completion?.Completed(context, gateway);
        if (gateway.Snapshot.Observability.AccessLog is not { } options) return Task.CompletedTask;
        var response = context.Response;
        var status = response.StatusCode;
        if (status is >= 200 and < 400 && options.SampleSuccesses < 1.0 && Random.Shared.NextDouble() >= options.SampleSuccesses)
        {
            _log.CountSampledOut();
            return Task.CompletedTask;
        }

        var request = context.Request;
        var route = gateway.BindRoute(context);
        var proxy = context.Features.Get<IReverseProxyFeature>();
        var error = context.Features.Get<IForwarderErrorFeature>();
        var tls = context.Features.Get<ITlsHandshakeFeature>();
        var times = gateway.Times;
        var auth = gateway.Auth;
        var traffic = gateway.Traffic;

        var entry = new AccessLogEntry
        {
            Options = options,
            Time = gateway.StartedAt,
            RequestId = gateway.RequestId,
            TraceId = gateway.TraceId,
            SpanId = gateway.SpanId,
            Listener = ListenerName(gateway.Snapshot, context.Connection),
            Method = request.Method,
            Scheme = request.Scheme,
            Host = request.Host.HasValue ? request.Host.Value : null,
            // What the client asked for; a route's pathRewrite changed Request.Path to what the upstream got.
            Path = request.PathBase.HasValue ? request.PathBase.Value + gateway.ClientPath(request) : gateway.ClientPath(request),
            UpstreamPath = gateway.PathBeforeRewrite is null ? null : request.Path.Value,
            Query = request.QueryString.HasValue ? request.QueryString.Value : null,
            Protocol = request.Protocol,
            Status = status,
            Route = gateway.RouteName,
            Cluster = gateway.ClusterName ?? proxy?.Cluster.Config.ClusterId,
            Destination = proxy?.ProxiedDestination?.Model.Config.Address,
            Attempts = gateway.Upstream.Attempts,
            BytesIn = BodyByteCounting.BytesIn(context, gateway),
            BytesOut = BodyByteCounting.BytesOut(context, gateway),
            Total = times.Total ?? TimeSpan.Zero,
            Identity = times.Identity,
            Traffic = times.Traffic,
            Upstream = times.Upstream,
            ClientIp = gateway.ClientAddress(context),
            UserAgent = Single(request.Headers.UserAgent),
            Tls = tls?.Protocol ?? System.Security.Authentication.SslProtocols.None,
            Sni = tls?.HostName is { Length: > 0 } sni ? sni : null,
            Consumer = gateway.Consumer,
            AuthReason = auth.Reason?.Code,
            Auth = AuthOf(auth, route),
            Authenticated = auth.Authenticated,
            RouteHasTraffic = route?.HasTrafficControl == true || traffic.Result != TrafficResult.None,
            TrafficDecision = traffic.Reason?.Code,
            Plan = gateway.Plan,
            Reason = gateway.Refusal,
            ResponseFindings = gateway.ResponseFindings,
            UpstreamStatus = gateway.Upstream.Status,
            UpstreamError = error is null ? null : ErrorName(error.Error),
        };
        _log.Enqueue(entry);
        return Task.CompletedTask;
    }

    // The identity stage's own decision; undecided is "none" on a route without auth, else "not-reached".
    private static AuthOutcome AuthOf(AuthDecision auth, IRouteGeneration? route) => auth.Result switch
    {
        AuthResult.Allowed => AuthOutcome.Allowed,
        AuthResult.Unauthenticated => AuthOutcome.Unauthenticated,
        AuthResult.Forbidden => AuthOutcome.Forbidden,
        AuthResult.Unavailable => AuthOutcome.Unavailable,
        _ => route?.HasAuth == true ? AuthOutcome.NotReached : AuthOutcome.None,
    };

    private static string? Single(StringValues values) => values.Count == 0 ? null : values.Count == 1 ? values[0] : values.ToString();

    // Listeners are bound once at start, so the local endpoint names the listener.
    internal static string? ListenerName(GatewaySnapshot snapshot, ConnectionInfo connection) =>
        ListenerName(snapshot, connection.LocalPort, connection.LocalIpAddress);

    internal static string? ListenerName(GatewaySnapshot snapshot, int port, System.Net.IPAddress? localIp)
    {
        var listeners = snapshot.Listeners;
        string? byPort = null;
        for (var i = 0; i < listeners.Count; i++)
        {
            var address = listeners[i].Address;
            if (address.Port != port) continue;
            if (address.IsAny || address.IsLocalhost || address.Ip is null) return listeners[i].Name;
            var local = localIp;
            if (local is not null && local.IsIPv4MappedToIPv6) local = local.MapToIPv4();
            if (address.Ip.Equals(local)) return listeners[i].Name;
            byPort ??= listeners[i].Name;
        }

        return byPort;
    }

    private static string ErrorName(ForwarderError error) => error switch
    {
        ForwarderError.None => "none",
        ForwarderError.Request => "request",
        ForwarderError.RequestTimedOut => "request-timed-out",
        ForwarderError.RequestCanceled => "request-canceled",
        ForwarderError.RequestBodyCanceled => "request-body-canceled",
        ForwarderError.RequestBodyClient => "request-body-client",
        ForwarderError.RequestBodyDestination => "request-body-destination",
        ForwarderError.ResponseBodyCanceled => "response-body-canceled",
        ForwarderError.ResponseBodyClient => "response-body-client",
        ForwarderError.ResponseBodyDestination => "response-body-destination",
        ForwarderError.ResponseHeaders => "response-headers",
        ForwarderError.NoAvailableDestinations => "no-available-destinations",
        ForwarderError.UpgradeRequestCanceled or ForwarderError.UpgradeRequestClient or ForwarderError.UpgradeRequestDestination
            or ForwarderError.UpgradeResponseCanceled or ForwarderError.UpgradeResponseClient or ForwarderError.UpgradeResponseDestination => "upgrade",
        _ => "other",
    };
}
