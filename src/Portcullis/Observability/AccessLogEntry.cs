using System.Diagnostics;
using System.Security.Authentication;
using Portcullis.Pipeline;

namespace Portcullis.Observability;

/// <summary>How identity ended for a request: the top-level `auth` field.</summary>
internal enum AuthOutcome : byte
{
    /// <summary>The route has no auth (or allows anonymous callers).</summary>
    None,

    /// <summary>The request was answered before identity ran (no route, limits, ...).</summary>
    NotReached,

    Allowed,

    /// <summary>401: credentials missing or invalid.</summary>
    Unauthenticated,

    /// <summary>403: authenticated but not authorized.</summary>
    Forbidden,

    /// <summary>503: credentials could not be checked (issuer or introspection unavailable).</summary>
    Unavailable,
}

/// <summary>
/// One access-log line's facts, copied from the request when it completes (a struct: queued in the
/// channel without an allocation; it keeps only strings and values, never the pooled HttpContext).
/// Formatting happens on the background writer.
/// </summary>
internal struct AccessLogEntry
{
    public CompiledAccessLog Options;
    public DateTimeOffset Time;
    public string? RequestId;
    public ActivityTraceId TraceId;
    public ActivitySpanId SpanId;
    public string? Listener;
    public string? Method;
    public string? Scheme;
    public string? Host;
    public string? Path;

    /// <summary>The path sent upstream when the route's pathRewrite changed it; null otherwise.</summary>
    public string? UpstreamPath;
    public string? Query;
    public string? Protocol;
    public int Status;
    public string? Route;
    public string? Cluster;
    public string? Destination;
    public int Attempts;
    public long BytesIn;
    public long BytesOut;
    public TimeSpan Total;
    public TimeSpan? Identity;
    public TimeSpan? Traffic;
    public TimeSpan? Upstream;
    public string? ClientIp;
    public string? UserAgent;
    public SslProtocols Tls;
    public string? Sni;
    public string? Consumer;
    public AuthOutcome Auth;
    public string? AuthReason;

    /// <summary>Authentication passed (the reason, if any, is an authorization one).</summary>
    public bool Authenticated;
    public bool RouteHasTraffic;
    public string? TrafficDecision;

    /// <summary>The caller's plan (`plans`); null on routes without plans.</summary>
    public string? Plan;

    /// <summary>Why the gateway answered itself (its stage tells edge-limit refusals apart).</summary>
    public Portcullis.Pipeline.ReasonCode? Reason;

    /// <summary>Response-header policy findings; null when none.</summary>
    public IReadOnlyList<string>? ResponseFindings;
    public int UpstreamStatus;
    public string? UpstreamError;
}
