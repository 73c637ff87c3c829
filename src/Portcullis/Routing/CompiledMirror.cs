using Portcullis.Configuration;

namespace Portcullis.Routing;

/// <summary>A route's mirror (routes[].mirror), validated once per snapshot; counts its copies in flight.</summary>
internal sealed class CompiledMirror
{
    private int _inFlight;

    public required string Cluster { get; init; }

    /// <summary>Share of requests copied, 0–1.</summary>
    public required double Share { get; init; }

    public required long MaxBodySize { get; init; }

    public required int MaxConcurrent { get; init; }

    public required TimeSpan Timeout { get; init; }

    /// <summary>Takes a slot for one copy; false at the cap (copies in flight are per snapshot: a reload starts a new count).</summary>
    public bool TryEnter()
    {
        if (Interlocked.Increment(ref _inFlight) <= MaxConcurrent) return true;
        Interlocked.Decrement(ref _inFlight);
        return false;
    }

    public void Exit() => Interlocked.Decrement(ref _inFlight);

    public static CompiledMirror? Compile(CompileContext context, MirrorOptions? options, string path, IReadOnlySet<string> clusters)
    {
        if (options is null) return null;
        var ok = true;
        if (!clusters.Contains(options.Cluster))
        {
            context.Error(path + ".cluster", $"mirror cluster '{options.Cluster}' is not defined", "name a cluster under clusters");
            ok = false;
        }

        if (options.Percent is < 0 or > 100 || double.IsNaN(options.Percent))
        {
            context.Error(path + ".percent", $"percent must be between 0 and 100, not {options.Percent}", "e.g. percent: 10");
            ok = false;
        }

        if (options.MaxBodySize.Bytes < 0)
        {
            context.Error(path + ".maxBodySize", "maxBodySize cannot be negative", "e.g. maxBodySize: 64KiB (0: copy only requests without a body)");
            ok = false;
        }

        if (options.MaxConcurrent < 1)
        {
            context.Error(path + ".maxConcurrent", $"maxConcurrent must be at least 1, not {options.MaxConcurrent}", "e.g. maxConcurrent: 64");
            ok = false;
        }

        if (options.Timeout <= TimeSpan.Zero)
        {
            context.Error(path + ".timeout", "timeout must be above 0", "e.g. timeout: 5s");
            ok = false;
        }

        return ok ? new CompiledMirror
        {
            Cluster = options.Cluster,
            Share = options.Percent / 100,
            MaxBodySize = options.MaxBodySize.Bytes,
            MaxConcurrent = options.MaxConcurrent,
            Timeout = options.Timeout,
        } : null;
    }
}
