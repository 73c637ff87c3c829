using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Portcullis.Configuration;
using Yarp.ReverseProxy;
using Yarp.ReverseProxy.Forwarder;
using Yarp.ReverseProxy.Model;
using Portcullis.Pipeline;

namespace Portcullis.Observability;

/// <summary>
/// The gateway's instruments (meter "Portcullis"). Per-request ones are recorded once, when the response
/// has completed, from the request's <see cref="GatewayFeature"/>; everything else is observed from the
/// components' own counters when a reader collects. Tags are config-bounded names and fixed codes only
/// (never paths, consumers or addresses of clients). With nobody listening each instrument's
/// <c>Enabled</c> is false and nothing is computed.
/// </summary>
internal sealed class GatewayMetrics : IDisposable
{
    public const string MeterName = "Portcullis";

    /// <summary>Seconds: 0.5 ms to 30 s, dense where a proxy's latencies sit.</summary>
    internal static readonly double[] LatencyBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

    private static readonly string[] StatusClasses = ["1xx", "2xx", "3xx", "4xx", "5xx"];

    private readonly Meter _meter;
    private readonly IServiceProvider _services;
    private readonly Counter<long> _requests;
    private readonly Histogram<double> _duration;
    private readonly Histogram<double> _upstreamDuration;
    private readonly Counter<long> _authFailures;
    private readonly Counter<long> _trafficRejections;
    private readonly Counter<long> _storeUnavailable;
    private readonly Counter<long> _sessionStoreUnavailable;
    private readonly Counter<long> _upstreamRetries;
    private readonly Counter<long> _upstreamRetriesDenied;

    public GatewayMetrics(IServiceProvider services, IMeterFactory? meterFactory = null)
    {
        _services = services;
        _meter = meterFactory?.Create(MeterName) ?? new Meter(MeterName);
        var latency = new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets };

        _requests = _meter.CreateCounter<long>("portcullis.requests", "{request}", "Requests answered, by listener, route and status class.");
        _duration = _meter.CreateHistogram("portcullis.request.duration", "s", "Time from the first middleware until the response completed.", advice: latency);
        _upstreamDuration = _meter.CreateHistogram("portcullis.upstream.duration", "s", "Time from the first upstream attempt until the upstream's response headers (or its failure).", advice: latency);
        _authFailures = _meter.CreateCounter<long>("portcullis.auth.failures", "{request}", "Requests refused by authentication or authorization, by route and reason code.");
        _storeUnavailable = _meter.CreateCounter<long>("portcullis.traffic.store_unavailable", "{request}", "Decisions taken while the limit store could not answer, by route, decision (….open fail-open, ….local / ….local-exceeded the local share, ….store-unavailable fail-closed) and policy.");
        _sessionStoreUnavailable = _meter.CreateCounter<long>("portcullis.session.store_unavailable", "{request}", "Requests answered while the browser-session store (Redis) could not answer, by route and decision (session-check.refused, sign-in.refused, login.refused, logout.refused: all 503).");
        _upstreamRetries = _meter.CreateCounter<long>("portcullis.upstream.retries", "{retry}", "Upstream attempts retried, by route, cluster and reason (connect-failure, reset-before-response, timeout, status-NNN).");
        _upstreamRetriesDenied = _meter.CreateCounter<long>("portcullis.upstream.retries_denied", "{retry}", "Retries the cluster's retries settings called for but did not make, by route, cluster and reason (budget: the retry budget was spent; deadline: retries.deadline had passed).");
        _trafficRejections = _meter.CreateCounter<long>("portcullis.traffic.rejections", "{request}", "Requests refused by rate limits, quotas or concurrency limits, by route, decision and policy.");

        _meter.CreateObservableCounter("portcullis.config.reloads", ObserveReloads, "{reload}", "Configuration reloads by result (ok, rejected).");
        _meter.CreateObservableGauge("portcullis.config.last_reload.duration", ObserveLastReload, "s", "How long the last reload took (applied, unchanged or rejected); absent before the first. Its phases are in GET /admin/reload.");
        _meter.CreateObservableCounter("portcullis.heap.trims", ObserveHeapTrims, "{trim}", "Collections run to give a large build's memory back (HeapTrim, log event 1045); each paused requests.");
        _meter.CreateObservableCounter("portcullis.access_log.lines", ObserveAccessLog, "{line}", "Access-log lines by outcome (written, dropped, sampled_out, write_error, format_error).");
        // The other capabilities' observable instruments (destinations, issuer keys, token caches, certificates, Redis).
        foreach (var contributor in services.GetServices<IMetricsContributor>()) contributor.Register(_meter);
        _meter.CreateObservableCounter("portcullis.response_header.findings", ObserveResponseFindings, "{finding}", "Response-header validation findings by route and finding (forbid:NAME, require:NAME, rule:NAME).");
    }

    /// <summary>True when any per-request instrument has a listener (the completion hook is needed).</summary>
    public bool AnyRequestInstrumentEnabled =>
        _requests.Enabled || _duration.Enabled || _upstreamDuration.Enabled || _authFailures.Enabled || _trafficRejections.Enabled || _storeUnavailable.Enabled || _sessionStoreUnavailable.Enabled;

    internal Meter Meter => _meter;

    /// <summary>Records one completed request from its feature (called once, when the response has completed).</summary>
    public void RequestCompleted(HttpContext context, GatewayFeature gateway)
    {
        var route = gateway.RouteName ?? "";
        if (_requests.Enabled || _duration.Enabled)
        {
            var status = context.Response.StatusCode;
            var tags = new TagList
            {
                { "listener", RequestObserver.ListenerName(gateway.Snapshot, context.Connection) ?? "" },
                { "route", route },
                { "status_class", status is >= 100 and < 600 ? StatusClasses[(status / 100) - 1] : "other" },
            };
            _requests.Add(1, tags);
            if (gateway.Times.Total is { } total) _duration.Record(total.TotalSeconds, tags);
        }

        if (_upstreamDuration.Enabled && gateway.Times.Upstream is { } upstream)
        {
            var error = context.Features.Get<IForwarderErrorFeature>();
            var cluster = gateway.ClusterName ?? context.Features.Get<IReverseProxyFeature>()?.Cluster.Config.ClusterId ?? "";
            _upstreamDuration.Record(upstream.TotalSeconds, new TagList
            {
                { "route", route },
                { "cluster", cluster },
                { "outcome", error is null ? "ok" : "error" },
            });
        }

        var auth = gateway.Auth;
        if (_authFailures.Enabled && auth.Denied && auth.Reason is { } reason)
        {
            _authFailures.Add(1, new TagList { { "route", route }, { "reason", reason.Code } });
        }

        var traffic = gateway.Traffic;
        if (_trafficRejections.Enabled && traffic.Refused)
        {
            _trafficRejections.Add(1, new TagList { { "route", route }, { "decision", traffic.Reason?.Code }, { "policy", traffic.Policy } });
        }

        if (_storeUnavailable.Enabled && traffic.StoreUnavailable)
        {
            _storeUnavailable.Add(1, new TagList { { "route", route }, { "decision", traffic.Reason?.Code }, { "policy", traffic.Policy } });
        }

        if (_sessionStoreUnavailable.Enabled && gateway.SessionStoreDecision is { } sessionDecision)
        {
            _sessionStoreUnavailable.Add(1, new TagList { { "route", route }, { "decision", sessionDecision } });
        }
    }

    /// <summary>One retry of an upstream request on another destination (recorded when it is decided; free with nobody listening).</summary>
    public void UpstreamRetried(string route, string cluster, string reason)
    {
        if (_upstreamRetries.Enabled) _upstreamRetries.Add(1, new TagList { { "route", route }, { "cluster", cluster }, { "reason", reason } });
    }

    public void UpstreamRetryDenied(string route, string cluster, string reason)
    {
        if (_upstreamRetriesDenied.Enabled) _upstreamRetriesDenied.Add(1, new TagList { { "route", route }, { "cluster", cluster }, { "reason", reason } });
    }

    private IEnumerable<Measurement<long>> ObserveReloads()
    {
        if (_services.GetService<ConfigReloader>() is not { } reloader) yield break;
        yield return new Measurement<long>(reloader.AppliedCount, new KeyValuePair<string, object?>("result", "ok"));
        yield return new Measurement<long>(reloader.RejectedCount, new KeyValuePair<string, object?>("result", "rejected"));
    }

    private IEnumerable<Measurement<double>> ObserveLastReload()
    {
        if (_services.GetService<ConfigReloader>() is not { LastResult.Timings: not null } reloader) yield break;
        yield return new Measurement<double>(reloader.LastResult.Duration.TotalSeconds);
    }

    private IEnumerable<Measurement<long>> ObserveHeapTrims()
    {
        if (_services.GetService<HeapTrim>() is not { } trim) yield break;
        yield return new Measurement<long>(trim.Trims);
    }

    private IEnumerable<Measurement<long>> ObserveAccessLog()
    {
        if (_services.GetService<AccessLog>() is not { } log) yield break;
        yield return new Measurement<long>(log.Written, new KeyValuePair<string, object?>("outcome", "written"));
        yield return new Measurement<long>(log.Dropped, new KeyValuePair<string, object?>("outcome", "dropped"));
        yield return new Measurement<long>(log.SampledOut, new KeyValuePair<string, object?>("outcome", "sampled_out"));
        yield return new Measurement<long>(log.WriteErrors, new KeyValuePair<string, object?>("outcome", "write_error"));
        yield return new Measurement<long>(log.FormatErrors, new KeyValuePair<string, object?>("outcome", "format_error"));
    }

    // Route names and findings come from the config (header names it lists), so the label set is bounded.
    private IEnumerable<Measurement<long>> ObserveResponseFindings()
    {
        if (_services.GetService<ResponseHeaderFindings>() is not { } findings) yield break;
        foreach (var (route, finding, count) in findings.Counts())
        {
            yield return new Measurement<long>(count, new KeyValuePair<string, object?>("route", route), new KeyValuePair<string, object?>("finding", finding));
        }
    }

    public void Dispose() => _meter.Dispose();
}
