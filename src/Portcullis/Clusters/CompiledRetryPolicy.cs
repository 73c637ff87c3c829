using System.Globalization;
using Portcullis.Configuration;

namespace Portcullis.Clusters;

/// <summary>A cluster's `retries`, compiled: what is retried, the bounds of each try and of all of them, and the budget.</summary>
internal sealed class CompiledRetryPolicy : Pipeline.IStatusRetry
{
    public const int FirstStatus = 400;
    public const int LastStatus = 599;

    public static readonly CompiledRetryPolicy None = new() { Attempts = 0, Budget = new RetryBudget(0, 0) };

    private readonly bool[] _statuses = new bool[LastStatus - FirstStatus + 1];

    /// <summary>Most extra tries after the first.</summary>
    public required int Attempts { get; init; }

    public bool OnConnectFailure { get; init; }

    public bool OnReset { get; init; }

    public bool OnTimeout { get; init; }

    /// <summary>Some response status is retried (the response transform has work to do).</summary>
    public bool OnStatus { get; private init; }

    public TimeSpan? PerTryTimeout { get; init; }

    public TimeSpan? Deadline { get; init; }

    public TimeSpan BackoffBase { get; init; } = TimeSpan.FromMilliseconds(25);

    public TimeSpan BackoffMax { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>Largest declared request body kept so it can be sent again; 0 keeps none.</summary>
    public long BufferBody { get; init; }

    public required RetryBudget Budget { get; init; }

    /// <summary>A try needs its own timer: per-try timeout or a deadline.</summary>
    public bool TimesTries => PerTryTimeout is not null || Deadline is not null;

    public IReadOnlyList<int> Statuses
    {
        get
        {
            var list = new List<int>();
            for (var i = 0; i < _statuses.Length; i++) if (_statuses[i]) list.Add(FirstStatus + i);
            return list;
        }
        init
        {
            foreach (var status in value) _statuses[status - FirstStatus] = true;
            OnStatus = value.Count > 0;
        }
    }

    public bool RetriesStatus(int status) => status is >= FirstStatus and <= LastStatus && _statuses[status - FirstStatus];

    public bool TryTakeRetry(long second) => Budget.TryRetry(second);

    /// <summary>The pause before retry number <paramref name="retry"/> (1 for the first): full jitter up to base × 2^(retry−1), at most max.</summary>
    public TimeSpan Backoff(int retry, double random)
    {
        var ceiling = BackoffBase.TotalMilliseconds * Math.Pow(2, Math.Min(retry - 1, 30));
        return TimeSpan.FromMilliseconds(Math.Min(ceiling, BackoffMax.TotalMilliseconds) * random);
    }

    internal static CompiledRetryPolicy Compile(CompileContext context, RetryOptions options, string path)
    {
        if (options.Attempts < 0) context.Error(path + ".attempts", "attempts cannot be negative", "0 disables retries");
        else if (options.Attempts > 10) context.Error(path + ".attempts", $"attempts {options.Attempts} is more than 10", "a few retries are enough; more only multiply load on a failing upstream");

        bool connect = false, reset = false, timeout = false;
        var statuses = new List<int>();
        for (var i = 0; i < options.On.Count; i++)
        {
            var item = options.On[i];
            switch (item)
            {
                case "connect-failure": connect = true; break;
                case "reset": reset = true; break;
                case "timeout": timeout = true; break;
                case "5xx": statuses.AddRange(Enumerable.Range(500, 100)); break; // Envoy's names
                case "gateway-error": statuses.AddRange([502, 503, 504]); break;
                default:
                    if (int.TryParse(item, NumberStyles.None, CultureInfo.InvariantCulture, out var status) && status is >= FirstStatus and <= LastStatus)
                    {
                        if (status < 500 && status is not (408 or 425 or 429))
                        {
                            context.Warning($"{path}.on[{i}]", $"retrying status {status} sends a request the upstream refused as wrong again", "usually only 5xx, 408, 425 and 429 are worth retrying");
                        }

                        statuses.Add(status);
                    }
                    else
                    {
                        context.Error($"{path}.on[{i}]", $"'{item}' is not something that can be retried",
                            "connect-failure, reset, timeout, 5xx, gateway-error (502, 503, 504), or a status 400-599 such as 503");
                    }

                    break;
            }
        }

        if (options.PerTryTimeout is { } perTry && perTry <= TimeSpan.Zero) context.Error(path + ".perTryTimeout", "perTryTimeout must be greater than zero", "e.g. perTryTimeout: 2s, or omit it");
        if (options.Deadline is { } deadline && deadline <= TimeSpan.Zero) context.Error(path + ".deadline", "deadline must be greater than zero", "e.g. deadline: 10s, or omit it");
        if (options.PerTryTimeout is { } t && options.Deadline is { } d && t > d)
        {
            context.Warning(path + ".perTryTimeout", $"perTryTimeout {t} is longer than the deadline {d}: no try can use all of it", "make perTryTimeout a fraction of the deadline");
        }

        if (timeout && options.PerTryTimeout is null)
        {
            context.Warning($"{path}.on", "`timeout` without perTryTimeout retries only after timeouts.request", "set perTryTimeout, e.g. 2s");
        }

        if (options.Backoff.Base < TimeSpan.Zero) context.Error(path + ".backoff.base", "backoff.base cannot be negative", "e.g. base: 25ms");
        if (options.Backoff.Max < options.Backoff.Base) context.Error(path + ".backoff.max", "backoff.max is below backoff.base", "e.g. base: 25ms, max: 250ms");
        if (options.Budget.Percent is < 0 or > 100 || double.IsNaN(options.Budget.Percent)) context.Error(path + ".budget.percent", "budget.percent must be between 0 and 100", "e.g. percent: 20");
        if (options.Budget.MinPerSecond < 0) context.Error(path + ".budget.minPerSecond", "budget.minPerSecond cannot be negative", "e.g. minPerSecond: 10");
        if (options.BufferBody.Bytes < 0 || options.BufferBody.Bytes > 16L * 1024 * 1024)
        {
            context.Error(path + ".bufferBody", "bufferBody must be between 0 and 16MiB", "e.g. bufferBody: 64KiB; bodies are held in memory per request in flight");
        }

        statuses = [.. statuses.Distinct().Order()];
        return new CompiledRetryPolicy
        {
            Attempts = Math.Max(0, options.Attempts),
            OnConnectFailure = connect,
            OnReset = reset,
            OnTimeout = timeout,
            Statuses = statuses,
            PerTryTimeout = options.PerTryTimeout,
            Deadline = options.Deadline,
            BackoffBase = options.Backoff.Base,
            BackoffMax = options.Backoff.Max,
            BufferBody = options.BufferBody.Bytes,
            Budget = new RetryBudget(options.Budget.Percent, Math.Max(0, options.Budget.MinPerSecond)),
        };
    }
}
