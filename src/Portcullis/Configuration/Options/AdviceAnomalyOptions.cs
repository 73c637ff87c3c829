using System.ComponentModel;

namespace Portcullis.Configuration;

/// <summary>advice.anomalies (owned by the unusual routes and callers checks; docs/advisor.md#unusual-routes-and-callers).</summary>
internal sealed record AdviceAnomalyOptions
{
    [Description("Run the unusual-routes-and-callers checks. Default true.")]
    public bool Enabled { get; init; } = true;

    [Description("The recent traffic compared with the baseline: the last complete minute(s) plus the current partial one, 1m to 10m. Default 2m (a departure shows within two engine runs).")]
    public TimeSpan DetectionWindow { get; init; } = TimeSpan.FromMinutes(2);

    [Description("The recent-hours baseline (minute noise, and the level when fewer than 3 past days have the same hour of day), 1h to 24h. Default 6h.")]
    public TimeSpan RecentBaseline { get; init; } = TimeSpan.FromHours(6);

    [Description("Least history the store must hold before a baseline is trusted at all (new routes, new path shapes, departures). Default 1h.")]
    public TimeSpan MinHistory { get; init; } = TimeSpan.FromHours(1);

    [Description("Robust z-score (|x − median| / (1.4826·MAD)) a departure must reach. Default 6.")]
    public double ZThreshold { get; init; } = 6;

    [Description("Volume: the factor (up, or down) by which a route's request rate must depart from its baseline. Default 3.")]
    public double VolumeRatio { get; init; } = 3;

    [Description("Volume: the least change in requests per minute, so small routes do not alarm. Default 60.")]
    public double MinVolumeChange { get; init; } = 60;

    [Description("Error rate: the least rise of a route's 5xx share over its baseline, 0 to 1. Default 0.05 (5 points).")]
    public double ErrorRateIncrease { get; init; } = 0.05;

    [Description("Error rate: the least 5xx answers in the detection window. Default 10.")]
    public int MinErrors { get; init; } = 10;

    [Description("Latency: the factor by which a route's p99 must exceed its baseline p99. Default 2.")]
    public double LatencyRatio { get; init; } = 2;

    [Description("Latency: the least rise of p99 over the baseline. Default 100ms.")]
    public TimeSpan MinLatencyIncrease { get; init; } = TimeSpan.FromMilliseconds(100);

    [Description("Latency: the least served requests in the detection window for its p99 to count. Default 50.")]
    public int MinLatencyRequests { get; init; } = 50;

    [Description("Surge: the factor by which a consumer's rate on a route must exceed its usual peak (p99 of its active minutes). Default 5.")]
    public double SurgeRatio { get; init; } = 5;

    [Description("Surge: the least rate, in requests per minute, that can be a surge. Default 60.")]
    public double MinSurgeRate { get; init; } = 60;

    [Description("New route: how recent a consumer's first call of a route must be to be reported. Default 15m.")]
    public TimeSpan NewRouteWindow { get; init; } = TimeSpan.FromMinutes(15);

    [Description("New route: report a consumer's first call only on sensitive routes (with scopes, groups, consumers or claim rules, or an administrative name or path). Default true (false: every route, as info).")]
    public bool NewRouteSensitiveOnly { get; init; } = true;

    [Description("Auth bursts, scanners and enumeration: the window of samples looked at. Default 5m.")]
    public TimeSpan BurstWindow { get; init; } = TimeSpan.FromMinutes(5);

    [Description("Auth bursts: the least 401/403 answers from one address or consumer in the burst window. Default 20.")]
    public int MinAuthFailures { get; init; } = 20;

    [Description("Auth bursts: the factor by which the failures per minute must exceed the caller's usual request pace. Default 5.")]
    public double AuthBurstRatio { get; init; } = 5;

    [Description("Scanners: the least distinct well-known probe paths (/.env, /wp-admin, …) from one address. Default 3.")]
    public int MinProbePaths { get; init; } = 3;

    [Description("Scanners: the least distinct unmatched paths from one address, probes or not. Default 25.")]
    public int MinUnmatchedPaths { get; init; } = 25;

    [Description("Enumeration: the least distinct ids (paths of one shape, or 404s on a route with an {id}) from one address. Default 20.")]
    public int MinEnumerationPaths { get; init; } = 20;

    [Description("New path shapes: the least requests of a shape in the new-route window before it is reported. Default 5.")]
    public int MinShapeRequests { get; init; } = 5;
}
