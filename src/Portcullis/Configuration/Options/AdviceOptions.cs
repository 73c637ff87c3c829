using System.ComponentModel;

namespace Portcullis.Configuration;

/// <summary>
/// The `advice` section: the traffic advisor (docs/advisor.md). It runs in the background over the analytics
/// store plus the live config and runtime state, and publishes findings with evidence and config patches.
/// On by default; without analytics.path it runs its config-only checks.
/// </summary>
internal sealed record AdviceOptions
{
    [Description("Run the advisor. Default true (its config-only checks cost nothing per request; the traffic checks read the analytics store in the background).")]
    public bool Enabled { get; init; } = true;

    [Description("How often the advisor runs over the store and the live state. Default 1m.")]
    public TimeSpan Interval { get; init; } = TimeSpan.FromMinutes(1);

    [Description("How much history suggestions learn from (rate distributions, baselines). Works from 1h of data, with lower confidence shown. Default 7d.")]
    public TimeSpan Window { get; init; } = TimeSpan.FromDays(7);

    [Description("JSON file where acknowledged and muted findings are kept across restarts; relative to the config file. Default: advice-state.json next to analytics.path (kept in memory only when analytics is off).")]
    [FilePath]
    public string? StatePath { get; init; }

    [Description("POST every new finding as JSON to a URL, retried with backoff; never blocks the advisor.")]
    public AdviceWebhookOptions? Webhook { get; init; }

    [Description("Rate-limit suggestions: the share of legitimate traffic a suggestion may refuse, and the checks of existing limits.")]
    public AdviceRateLimitOptions RateLimits { get; init; } = new();

    [Description("Unusual routes and callers: baselines and the thresholds that make a departure a finding.")]
    public AdviceAnomalyOptions Anomalies { get; init; } = new();

    [Description("Misconfigured services: the thresholds of the upstream, health, timeout, header and certificate checks.")]
    public AdviceServiceOptions Services { get; init; } = new();
}

internal sealed record AdviceWebhookOptions
{
    [Description("Where new findings are POSTed (http or https).")]
    public string Url { get; init; } = "";

    [Description("Per-attempt timeout. Default 5s.")]
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(5);

    [Description("Attempts per finding before it is given up (logged). Default 5.")]
    public int MaxAttempts { get; init; } = 5;
}
