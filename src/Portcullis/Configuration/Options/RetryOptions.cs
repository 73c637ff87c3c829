using System.ComponentModel;

namespace Portcullis.Configuration;

/// <summary>
/// A cluster's retries (Envoy's retry policy with a Finagle-style budget): what is retried, how many times,
/// how long each try and all of them may take, the pause between tries, and the share of traffic retries may add.
/// `retries: 2` is short for `retries: { attempts: 2 }`.
/// </summary>
[ScalarShorthand(nameof(Attempts))]
internal sealed record RetryOptions
{
    [Description("Most extra tries after the first, for idempotent requests (GET, HEAD, OPTIONS, PUT, DELETE, TRACE). Default 2; 0 disables.")]
    public int Attempts { get; init; } = 2;

    [Description("What is retried: connect-failure (no connection; always safe), reset (the connection was lost before the response headers), timeout (no response headers within perTryTimeout or timeouts.request), response statuses such as 502, 503, 504, 5xx (500-599) and gateway-error (502, 503, 504). Default [connect-failure, reset].")]
    public IReadOnlyList<string> On { get; init; } = ["connect-failure", "reset"];

    [Description("Longest one try may wait for the response headers before it is abandoned (and retried, with `timeout` in `on`). Default none: timeouts.request applies.")]
    public TimeSpan? PerTryTimeout { get; init; }

    [Description("Longest all tries together may take from the first one; no try starts after it, and a try in flight is cut at it (504). Default none.")]
    public TimeSpan? Deadline { get; init; }

    [Description("Pause before each retry: a random time up to base × 2^(retry−1), at most max (full jitter).")]
    public RetryBackoffOptions Backoff { get; init; } = new();

    [Description("Most retries the cluster makes, as a share of its requests over the last 10 seconds plus a floor, so a failing cluster is not hit by a retry storm.")]
    public RetryBudgetOptions Budget { get; init; } = new();

    [Description("Request bodies of declared length up to this size are kept in memory so a try can send them again; larger or chunked bodies are retried only when the connection failed before any of them was sent. Default 64KiB; 0 keeps none.")]
    public ByteSize BufferBody { get; init; } = ByteSize.FromKiB(64);
}

internal sealed record RetryBackoffOptions
{
    [Description("Upper bound of the first retry's pause. Default 25ms.")]
    public TimeSpan Base { get; init; } = TimeSpan.FromMilliseconds(25);

    [Description("Largest pause. Default 250ms.")]
    public TimeSpan Max { get; init; } = TimeSpan.FromMilliseconds(250);
}

internal sealed record RetryBudgetOptions
{
    [Description("Retries allowed as a percentage of the cluster's requests over the last 10 seconds. Default 20.")]
    public double Percent { get; init; } = 20;

    [Description("Retries per second always allowed on top (so a quiet cluster can still retry). Default 10.")]
    public int MinPerSecond { get; init; } = 10;
}
