using System.Threading.RateLimiting;
using Portcullis.Configuration;

namespace Portcullis.Traffic;

/// <summary>
/// A route's or cluster's in-flight limit: System.Threading.RateLimiting's ConcurrencyLimiter (permits,
/// oldest-first queue). The limiter carries in-flight counts, so a reload that keeps the settings hands
/// the same limiter to the new snapshot (<see cref="TakeOver"/>); changed settings start a fresh one while
/// requests already holding the old one finish against it.
/// </summary>
internal sealed class ConcurrencyGate
{
    public ConcurrencyGate(string scope, ConcurrencyOptions options)
    {
        Scope = scope;
        Options = options;
        RetryAfterSeconds = TrafficMiddleware.Seconds(options.RetryAfter);
        // Compiled with the gate: the refusal depends only on its settings ("This route serves at most ...").
        var kind = scope.StartsWith("cluster:", StringComparison.Ordinal) ? "cluster" : "route";
        RefusalDetail = $"This {kind} serves at most {options.Max} requests at once; retry after {RetryAfterSeconds} s.";
        Limiter = new ConcurrencyLimiter(new ConcurrencyLimiterOptions
        {
            PermitLimit = options.Max,
            QueueLimit = options.Queue,
            QueueProcessingOrder = QueueProcessingOrder.OldestFirst,
        });
    }

    /// <summary>"route:NAME" or "cluster:NAME".</summary>
    public string Scope { get; }

    public ConcurrencyOptions Options { get; }

    /// <summary>The Retry-After value of a refusal, in whole seconds.</summary>
    public string RetryAfterSeconds { get; }

    /// <summary>The problem detail of a refusal.</summary>
    public string RefusalDetail { get; }

    public ConcurrencyLimiter Limiter { get; private set; }

    /// <summary>Keeps the previous generation's limiter when nothing about it changed.</summary>
    public void TakeOver(ConcurrencyGate? previous)
    {
        if (previous is not null && previous.Scope == Scope && previous.Options == Options && !ReferenceEquals(previous.Limiter, Limiter))
        {
            Limiter.Dispose();
            Limiter = previous.Limiter;
        }
    }

    /// <summary>A slot now, or after queueing for at most queueTimeout; null when refused.</summary>
    public ValueTask<RateLimitLease?> EnterAsync(TimeProvider time, CancellationToken requestAborted)
    {
        var lease = Limiter.AttemptAcquire();
        if (lease.IsAcquired) return ValueTask.FromResult<RateLimitLease?>(lease);
        lease.Dispose();
        return Options.Queue == 0 ? ValueTask.FromResult<RateLimitLease?>(null) : QueueAsync(time, requestAborted);
    }

    private async ValueTask<RateLimitLease?> QueueAsync(TimeProvider time, CancellationToken requestAborted)
    {
        using var timeout = new CancellationTokenSource(Options.QueueTimeout, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, requestAborted);
        try
        {
            var lease = await Limiter.AcquireAsync(1, linked.Token);
            if (lease.IsAcquired) return lease;
            lease.Dispose();
            return null;
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }
}
