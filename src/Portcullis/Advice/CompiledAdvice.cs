using Portcullis.Configuration;

namespace Portcullis.Advice;

/// <summary>The `advice` section as the advisor runs it (compiled once per snapshot by <see cref="AdviceCompiler"/>).</summary>
internal sealed record CompiledAdvice
{
    public required TimeSpan Interval { get; init; }

    public required TimeSpan Window { get; init; }

    /// <summary>Where acknowledged/muted findings are kept (absolute); null: in memory only.</summary>
    public string? StatePath { get; init; }

    public AdviceWebhookOptions? Webhook { get; init; }

    public AdviceRateLimitOptions RateLimits { get; init; } = new();

    public AdviceAnomalyOptions Anomalies { get; init; } = new();

    public AdviceServiceOptions Services { get; init; } = new();
}
