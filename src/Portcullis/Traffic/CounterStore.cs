
namespace Portcullis.Traffic;

/// <summary>
/// Where rate-limit and quota counters live. Implementations never throw on the request path and never
/// wait longer than their timeout: trouble is reported as <see cref="RateOutcome.StoreUnavailable"/>.
/// </summary>
internal interface ICounterStore
{
    /// <summary>Counts one request against a rate-limit policy's key and says whether it is admitted.</summary>
    ValueTask<RateDecision> RateAsync(CompiledRateLimit policy, string key, CancellationToken cancellationToken);

    /// <summary>Counts one request against a quota's key in the given calendar window (nothing is counted when refused).</summary>
    ValueTask<RateDecision> QuotaAsync(CompiledQuota quota, string key, QuotaWindow window, CancellationToken cancellationToken);

    /// <summary>Requests counted so far in the window, for the admin API; null when the store cannot answer.</summary>
    ValueTask<long?> QuotaUsedAsync(CompiledQuota quota, string key, QuotaWindow window, CancellationToken cancellationToken);
}
