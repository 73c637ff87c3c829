using System.ComponentModel;

namespace Portcullis.Configuration;

/// <summary>advice.rateLimits (owned by the rate-limit suggestions; docs/advisor.md#rate-limit-suggestions).</summary>
internal sealed record AdviceRateLimitOptions
{
    [Description("Largest share of historical legitimate requests a suggested limit may refuse, 0 to 0.1. Default 0.001 (0.1 %).")]
    public double TargetRefusalShare { get; init; } = 0.001;
}
