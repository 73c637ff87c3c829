using System.IO.Hashing;
using System.Runtime.InteropServices;
using Microsoft.AspNetCore.Http;
using Portcullis.Pipeline;

namespace Portcullis.Routing;

/// <summary>
/// A route's weighted clusters, compiled once per snapshot. A request is placed on a point of a fixed range
/// (65,536 points) — by a hash of its sticky value, else at random — and each cluster owns a run of the range
/// in proportion to its weight, in list order. The range does not depend on the weights' scale, so 95/5 and
/// 950/50 place every caller the same, and raising the last cluster's share only moves callers toward it.
/// The hash is XxHash3 of the value: the same on every instance, so a fleet keeps a caller on one side.
/// </summary>
internal sealed class CompiledSplit
{
    private const int Points = 1 << 16;

    private readonly string[] _clusters;
    private readonly long[] _bounds; // run i is [bounds[i-1], bounds[i]) scaled by Points / total

    public CompiledSplit(IReadOnlyList<(string Cluster, int Weight)> targets, RequestSource? sticky)
    {
        _clusters = [.. targets.Select(t => t.Cluster)];
        var total = targets.Sum(t => (long)t.Weight);
        _bounds = new long[targets.Count];
        long cumulative = 0;
        for (var i = 0; i < targets.Count; i++)
        {
            cumulative += targets[i].Weight;
            _bounds[i] = cumulative * Points / total;
        }

        _bounds[^1] = Points; // rounding never leaves a point unowned
        Targets = targets;
        Sticky = sticky;
    }

    public IReadOnlyList<(string Cluster, int Weight)> Targets { get; }

    public RequestSource? Sticky { get; }

    /// <summary>The cluster names, in list order (each may be chosen; zero weights included).</summary>
    public IReadOnlyList<string> Clusters => _clusters;

    /// <summary>The cluster for this request: by its sticky value's hash, else at random. Allocates nothing.</summary>
    public string Choose(HttpRequest request)
    {
        var point = Sticky is { } sticky && sticky.Read(request) is { Length: > 0 } value
            ? (long)(XxHash3.HashToUInt64(MemoryMarshal.AsBytes(value)) % Points)
            : Random.Shared.Next(Points);
        return ClusterAt(point);
    }

    /// <summary>The cluster that owns a point of the range (0 ≤ point &lt; 65,536).</summary>
    internal string ClusterAt(long point)
    {
        for (var i = 0; i < _bounds.Length; i++)
        {
            if (point < _bounds[i]) return _clusters[i];
        }

        return _clusters[^1];
    }
}
