
namespace Portcullis.Pipeline;

/// <summary>
/// Per-request facts every stage reads and writes: the snapshot taken at the start of the request,
/// the route, the chosen cluster, attempts. Logs and metrics read this one object at the end.
/// </summary>
public sealed class GatewayFeature
{
    internal GatewayFeature(IRequestGeneration generation) => Generation = generation;

    /// <summary>
    /// The generation this request runs on: the one current when it arrived, until routing matches a route;
    /// from then on the one that route's endpoint was built from (<see cref="BindRoute"/>). Stages read it
    /// typed as <c>Snapshot</c> (an extension in Configuration, which composes the snapshot).
    /// </summary>
    // Internal: the compiled snapshot is the gateway's own model, not part of the embedding surface.
    internal IRequestGeneration Generation { get; private set; }

    public string? RouteName { get; internal set; }

    private IRouteGeneration? _binding;
    private bool _routeResolved;

    /// <summary>
    /// The endpoint metadata of the route routing matched, taken once per request and shared by every stage
    /// (Routing's <c>ResolveRoute</c> gives its compiled form). Null when no route matched.
    /// </summary>
    /// <remarks>
    /// Mid-reload, the endpoint routing matched may come from a newer (or older) generation than the snapshot
    /// taken on arrival. The request then adopts the endpoint's generation, so every route-specific stage
    /// (identity, traffic, cluster choice, retries, access log) reads one generation; the stages before routing
    /// read only listener-wide settings (limits, header scrub, trusted proxies).
    /// </remarks>
    internal IRouteGeneration? BindRoute(Microsoft.AspNetCore.Http.HttpContext context)
    {
        if (_routeResolved) return _binding;
        _routeResolved = true;
        _binding = Microsoft.AspNetCore.Http.EndpointHttpContextExtensions.GetEndpoint(context)?.Metadata.GetMetadata<IRouteGenerationSource>()?.Current;
        if (_binding is null) return null;
        RouteName = _binding.RouteId;
        Generation = _binding.Generation;
        return _binding;
    }

    /// <summary>The matched route's endpoint metadata (after <see cref="BindRoute"/>); null when no route matched.</summary>
    internal IRouteGeneration? BoundRoute => _binding;

    public string? ClusterName { get; internal set; }

    private string? _clientAddress;

    /// <summary>The client's address as text (behind trusted proxies: the forwarded one), resolved once per request.</summary>
    public string ClientAddress(Microsoft.AspNetCore.Http.HttpContext context) =>
        _clientAddress ??= Pipeline.ClientAddress.Resolve(context, Generation)?.ToString() ?? "unknown";

    /// <summary>The traffic stage's decision (default: not decided).</summary>
    public TrafficDecision Traffic { get; internal set; }

    /// <summary>A route matched and authentication passed: the request reached the traffic stage (with or without limits on its route). The advisor's arrivals count these.</summary>
    internal bool TrafficReached { get; set; }

    /// <summary>
    /// The path as the client sent it (after normalization: what routing saw), kept when the route's
    /// pathRewrite changed <c>Request.Path</c>, which then holds the path sent upstream; null when no rewrite changed it.
    /// </summary>
    internal string? PathBeforeRewrite { get; set; }

    /// <summary>The path the client asked for (what routing saw), without PathBase: the rewrite's input when there was one.</summary>
    internal string? ClientPath(Microsoft.AspNetCore.Http.HttpRequest request) => PathBeforeRewrite ?? request.Path.Value;

    /// <summary>The caller's plan (`plans`) on a route plans apply to; null otherwise.</summary>
    public string? Plan { get; internal set; }

    /// <summary>The route's rate-limit key parts this request did not carry ("policy part", ", "-joined; counted per client address instead); null when none.</summary>
    internal string? RateKeyMissing { get; set; }

    /// <summary>The traffic decision's code as text: admitted, ratelimit.exceeded, quota.exceeded, concurrency.limit, ….store-unavailable(.open, .local, .local-exceeded).</summary>
    public string? TrafficDecision => Traffic.Reason?.Code;

    /// <summary>The rate-limit policy, quota or concurrency scope ("route:NAME", "cluster:NAME") behind a refusal or store failure; null when admitted.</summary>
    public string? TrafficPolicy => Traffic.Policy;

    /// <summary>
    /// What the gateway did because the browser-session store (Redis) could not answer, for the
    /// session_store_unavailable metric: session-check.refused, sign-in.refused, login.refused, logout.refused.
    /// The access log carries the reason code session.store-unavailable (authReason / reason).
    /// </summary>
    internal string? SessionStoreDecision { get; set; }

    /// <summary>Upstream attempts made (1 + retries).</summary>
    public int Attempts { get; internal set; }

    /// <summary>The cluster's retries while a try that may still be retried on its status is in flight (RetryMiddleware); null otherwise.</summary>
    internal IStatusRetry? RetryOnStatus;

    /// <summary>The TimeProvider timestamp after which no retry may start (retries.deadline less a small margin); 0 when none.</summary>
    internal long RetryDeadline;

    /// <summary>The status of the try's response that the retry transform held back to retry; 0 when none.</summary>
    internal int RetryHeldStatus;

    /// <summary>Why a retryable status was passed on instead of retried (budget, deadline); null when not.</summary>
    internal string? RetryDenied;

    /// <summary>The current try's timer (retries.perTryTimeout / deadline), disarmed when its response headers arrive; null when none.</summary>
    internal CancellationTokenSource? TryTimer;

    /// <summary>Request body bytes read, when counted (a body without Content-Length, Observability.BodyByteCounting); −1 when not counted.</summary>
    internal long RequestBodyRead = -1;

    /// <summary>Response body bytes written, when counted (Observability.BodyByteCounting); −1 when not counted.</summary>
    internal long ResponseBodyWritten = -1;

    private ReasonCode? _upstreamFailure;
    private int _upstreamStatus;

    /// <summary>The upstream stage's outcome; its status is settled when the response completes.</summary>
    public UpstreamOutcome Upstream => new(Attempts, _upstreamStatus, _upstreamFailure);

    /// <summary>Records that the gateway answered for a failed upstream (or a client that went away) with this code.</summary>
    internal void RecordUpstreamFailure(ReasonCode reason)
    {
        _upstreamFailure = reason;
        Refusal = reason;
    }

    /// <summary>Settles the upstream's status once the response completed: the response's, when it came from an upstream without error.</summary>
    internal void CompleteUpstream(int responseStatus, bool forwarderError) =>
        _upstreamStatus = Attempts > 0 && !forwarderError ? responseStatus : 0;

    /// <summary>The authenticated caller, when the route has auth.</summary>
    internal ICaller? Caller { get; set; }

    /// <summary>Consumer id of the caller (token claim or API key consumer).</summary>
    public string? Consumer => Caller?.Consumer;

    /// <summary>The identity stage's decision (default: not decided).</summary>
    public AuthDecision Auth { get; internal set; }

    /// <summary>The authentication / authorization code as text, e.g. jwt.valid, apikey.unknown, authz.scope.</summary>
    public string? AuthReason => Auth.Reason?.Code;

    /// <summary>Response-header policy findings (forbid:NAME, require:NAME, rule:NAME); null when none.</summary>
    public IReadOnlyList<string>? ResponseFindings { get; internal set; }

    /// <summary>Why the gateway answered itself (a refusal, or an endpoint of its own), e.g. route.unmatched, upstream.unavailable.</summary>
    public ReasonCode? Refusal { get; internal set; }

    /// <summary>The <see cref="Refusal"/> code as text.</summary>
    public string? Reason => Refusal?.Code;

    /// <summary>The header that carries the request id, inbound (when trusted) and to the upstream and client.</summary>
    internal const string RequestIdHeader = "X-Request-Id";

    /// <summary>Request id (kept from a trusted X-Request-Id or minted); also HttpContext.TraceIdentifier.</summary>
    public string? RequestId { get; internal set; }

    /// <summary>True when <see cref="RequestId"/> was minted here (any inbound X-Request-Id is replaced upstream).</summary>
    internal bool RequestIdMinted { get; set; }

    /// <summary>W3C trace id of this request (inbound traceparent, or a new trace).</summary>
    public System.Diagnostics.ActivityTraceId TraceId { get; internal set; }

    /// <summary>The gateway's span id: the parent id the upstream receives in traceparent.</summary>
    public System.Diagnostics.ActivitySpanId SpanId { get; internal set; }

    /// <summary>Inbound trace flags and tracestate, kept only when no Activity carries them.</summary>
    internal System.Diagnostics.ActivityTraceFlags TraceFlags { get; set; }

    internal string? TraceState { get; set; }

    /// <summary>The gateway's request span (ActivitySource "Portcullis"), only while someone samples it.</summary>
    internal System.Diagnostics.Activity? RequestActivity { get; set; }

    /// <summary>The span of the current upstream attempt, when the request span exists.</summary>
    internal System.Diagnostics.Activity? UpstreamActivity { get; set; }

    /// <summary>When the request reached the gateway.</summary>
    public DateTimeOffset StartedAt { get; internal set; }

    /// <summary>Stopwatch timestamps of the stages (0 = not reached); read through the durations below.</summary>
    internal StageTimes Times;

    /// <summary>Authentication and authorization decision time; null when the route has no auth or was not reached.</summary>
    public TimeSpan? IdentityDuration => Times.Identity;

    /// <summary>Rate limit, concurrency and quota decision time; null when the route has no traffic control or was not reached.</summary>
    public TimeSpan? TrafficDuration => Times.Traffic;

    /// <summary>From the first upstream attempt until the upstream's response headers (or failure); null when not proxied.</summary>
    public TimeSpan? UpstreamDuration => Times.Upstream;
}

/// <summary>
/// What the retry stage lends the response stage for one try that may be retried on its status: whether a status
/// is retried, and the cluster's retry budget to take one from.
/// </summary>
internal interface IStatusRetry
{
    bool RetriesStatus(int status);

    /// <summary>Takes one retry from the budget at this second; false when the budget is spent.</summary>
    bool TryTakeRetry(long second);
}
