using System.Diagnostics;

namespace Portcullis.Pipeline;

/// <summary>
/// Stopwatch timestamps a request's stages stamp as they run (plain fields: one request is handled by
/// one logical flow at a time). A stage that started but never stamped its end (it answered the request
/// itself, or the upstream failed) counts until <see cref="End"/>, the moment the response completed.
/// </summary>
internal struct StageTimes
{
    public long Start;
    public long IdentityStart;
    public long IdentityEnd;
    public long TrafficStart;
    public long TrafficEnd;
    public long UpstreamStart;

    /// <summary>When the latest attempt's request was sent (a retry starts over; outlier latency is per attempt).</summary>
    public long AttemptStart;

    public long UpstreamEnd;
    public long End;

    public readonly TimeSpan? Identity => Between(IdentityStart, IdentityEnd);

    public readonly TimeSpan? Traffic => Between(TrafficStart, TrafficEnd);

    public readonly TimeSpan? Upstream => Between(UpstreamStart, UpstreamEnd);

    public readonly TimeSpan? Total => Between(Start, End);

    private readonly TimeSpan? Between(long start, long end)
    {
        if (start == 0) return null;
        if (end == 0) end = End != 0 ? End : Stopwatch.GetTimestamp();
        return end >= start ? Stopwatch.GetElapsedTime(start, end) : TimeSpan.Zero;
    }
}
