using System.ComponentModel;

namespace Portcullis.Configuration;

/// <summary>advice.services (owned by the misconfigured-services checks; docs/advisor.md#misconfigured-services).</summary>
internal sealed record AdviceServiceOptions
{
    [Description("Trailing window the upstream error and timeout checks look at. Default 2m (an incident is reported within about two minutes of its start).")]
    public TimeSpan ErrorWindow { get; init; } = TimeSpan.FromMinutes(2);

    [Description("Share of a cluster's requests failing with an upstream 5xx (the upstream's own 5xx, upstream.error, upstream.unavailable) above which it is a finding. Default 0.05.")]
    public double ErrorRatio { get; init; } = 0.05;

    [Description("Share of a cluster's requests failing with upstream.timeout above which it is a finding. Default 0.02.")]
    public double TimeoutRatio { get; init; } = 0.02;

    [Description("Fewest failed requests in the window before an error or timeout finding: a handful of failures is not an incident. Default 10.")]
    public int MinErrors { get; init; } = 10;

    [Description("Fewest requests to the cluster in the window before an error or timeout finding. Default 30.")]
    public int MinRequests { get; init; } = 30;

    [Description("How long the failures must have gone on (first to last failure in the window, the last one recent) before they are a finding: a shorter blip is not. Default 30s.")]
    public TimeSpan SustainedFor { get; init; } = TimeSpan.FromSeconds(30);

    [Description("Trailing window of the p99 upstream latency the timeout checks compare with the cluster's timeouts.request. Default 5m.")]
    public TimeSpan LatencyWindow { get; init; } = TimeSpan.FromMinutes(5);

    [Description("Fewest proxied requests in the latency window before a timeout-too-tight finding. Default 50.")]
    public int MinLatencyRequests { get; init; } = 50;

    [Description("p99 upstream latency at or above this share of timeouts.request: the timeout is too tight (or the upstream is getting slow). Default 0.8.")]
    public double TightShare { get; init; } = 0.8;

    [Description("timeouts.request above this many times the p99 upstream latency (over the last day, with enough data): the timeout is too loose. Default 20.")]
    public double LooseFactor { get; init; } = 20;

    [Description("Fewest proxied requests over the last day before a timeout-too-loose finding. Default 1000.")]
    public int MinLooseRequests { get; init; } = 1000;

    [Description("Window in which a destination's health transitions are counted. Default 10m.")]
    public TimeSpan FlapWindow { get; init; } = TimeSpan.FromMinutes(10);

    [Description("Health transitions (healthy to unhealthy or back) of one destination within flapWindow that make it flapping. Default 4 (two round trips).")]
    public int FlapTransitions { get; init; } = 4;

    [Description("Fewest requests to a cluster over the last day before the single-destination and no-health-check checks speak (they are about clusters with real traffic). Default 100.")]
    public int MinTrafficRequests { get; init; } = 100;

    [Description("Response headers every upstream answer should carry; a cluster whose answers were seen without one, or (on a TLS listener) where nothing checks for them, is a finding. Empty turns the check off. Default [Strict-Transport-Security, X-Content-Type-Options].")]
    public IReadOnlyList<string> SecurityHeaders { get; init; } = ["Strict-Transport-Security", "X-Content-Type-Options"];

    [Description("Response headers that reveal the upstream's software and should be stripped; a cluster that lets them through is a finding. Empty turns the check off. Default [Server, X-Powered-By].")]
    public IReadOnlyList<string> LeakingHeaders { get; init; } = ["Server", "X-Powered-By"];

    [Description("A certificate expiring within this time is a warning finding. Default 30d.")]
    public TimeSpan CertificateWarning { get; init; } = TimeSpan.FromDays(30);

    [Description("A certificate expiring within this time is a critical finding. Default 7d.")]
    public TimeSpan CertificateCritical { get; init; } = TimeSpan.FromDays(7);

    [Description("How long an issuer's JWKS refresh must have been failing before it is a finding (a single failed fetch retried seconds later is not). Default 1m.")]
    public TimeSpan JwksFailingFor { get; init; } = TimeSpan.FromMinutes(1);
}
