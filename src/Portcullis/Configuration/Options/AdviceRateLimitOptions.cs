using System.ComponentModel;

namespace Portcullis.Configuration;

/// <summary>advice.rateLimits (owned by the rate-limit suggestions; docs/advisor.md#rate-limit-suggestions).</summary>
internal sealed record AdviceRateLimitOptions
{
    [Description("Largest share of historical legitimate requests a suggested limit may refuse, 0 to 0.1. Default 0.001 (0.1 %).")]
    public double TargetRefusalShare { get; init; } = 0.001;

    [Description("Fewest requests on a route (or through a limit) over the window before anything is suggested about it; below it nothing is. Default 100.")]
    public long MinRequests { get; init; } = 100;

    [Description("Requests (with at least a day of history and 5 callers) from which a suggestion is high confidence; fewer make it medium, under a day or 1,000 requests low. Default 10000.")]
    public long ConfidentRequests { get; init; } = 10_000;

    [Description("An existing limit is too loose when no caller's peak over any `per` came above this share of its limit over the window, 0 to 1. Default 0.1.")]
    public double TooLooseUse { get; init; } = 0.1;

    [Description("An existing limit is too tight when it refuses at least this share of a legitimate caller's requests, 0 to 1. Default 0.05.")]
    public double TooTightShare { get; init; } = 0.05;

    [Description("A rate limit's key part is reported absent when at least this share of the route's requests lacked it, 0 to 1. Default 0.99.")]
    public double KeyAbsentShare { get; init; } = 0.99;
}
