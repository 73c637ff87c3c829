using System.IO.Hashing;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.AspNetCore.Http;
using Portcullis.Configuration;
using Portcullis.Pipeline;
using Portcullis.Routing;
using Yarp.ReverseProxy.LoadBalancing;
using Yarp.ReverseProxy.Model;

namespace Portcullis.Clusters;

/// <summary>A cluster's consistent-hash settings (clusters.NAME.consistentHash), compiled once per snapshot.</summary>
internal sealed record CompiledConsistentHash(RequestSource Key, double BalanceFactor);

/// <summary>
/// A hash ring over a cluster's destinations: <see cref="PointsPerDestination"/> points each, placed by
/// XxHash3 of the destination's name, so adding or removing one of N destinations moves about 1/N of the keys
/// and every instance of a fleet builds the same ring. A key goes to the first destination clockwise from its
/// hash that is available (healthy, undrained, not yet tried) and, with bounded loads (Mirrokni, Thorup and
/// Zadimoghaddam, "Consistent hashing with bounded loads", 2016), has fewer requests in flight than
/// balanceFactor × the average: a hot key spills to the next destinations instead of overloading one.
/// </summary>
internal sealed class HashRing
{
    internal const int PointsPerDestination = 160;

    private readonly ulong[] _points;
    private readonly DestinationState[] _owners;

    public HashRing(IEnumerable<DestinationState> destinations)
    {
        var points = new List<(ulong Point, DestinationState Owner)>();
        Span<byte> buffer = stackalloc byte[512];
        foreach (var destination in destinations.OrderBy(d => d.DestinationId, StringComparer.Ordinal))
        {
            for (var i = 0; i < PointsPerDestination; i++)
            {
                var label = $"{destination.DestinationId}#{i}";
                var length = Encoding.UTF8.GetBytes(label, buffer);
                points.Add((XxHash3.HashToUInt64(buffer[..length]), destination));
            }
        }

        points.Sort((a, b) => a.Point.CompareTo(b.Point));
        _points = [.. points.Select(p => p.Point)];
        _owners = [.. points.Select(p => p.Owner)];
    }

    /// <summary>
    /// The destination for a key hash among <paramref name="available"/>; with a balance factor &gt; 0, the first
    /// one clockwise whose requests in flight are below its bounded share. Null when none is available.
    /// </summary>
    public DestinationState? Pick(ulong hash, IReadOnlyList<DestinationState> available, double balanceFactor)
    {
        if (available.Count == 0 || _points.Length == 0) return null;
        long capacity = long.MaxValue;
        if (balanceFactor > 0)
        {
            long inFlight = 0;
            for (var i = 0; i < available.Count; i++) inFlight += available[i].ConcurrentRequestCount;
            // +1: the request being placed; ceiling so a capacity is never 0.
            capacity = (long)Math.Ceiling(balanceFactor * (inFlight + 1) / available.Count);
        }

        var start = Array.BinarySearch(_points, hash);
        if (start < 0) start = ~start;
        DestinationState? firstAvailable = null;
        for (var step = 0; step < _points.Length; step++)
        {
            var owner = _owners[(start + step) % _points.Length];
            if (!Contains(available, owner)) continue;
            firstAvailable ??= owner;
            if (owner.ConcurrentRequestCount < capacity) return owner;
        }

        // Every available destination at its bound (cannot happen with factor ≥ 1, kept for safety), or the ring
        // is of an older destination set than the available list: fall back without losing the request.
        return firstAvailable ?? available[(int)(hash % (ulong)available.Count)];
    }

    private static bool Contains(IReadOnlyList<DestinationState> available, DestinationState destination)
    {
        for (var i = 0; i < available.Count; i++)
        {
            if (ReferenceEquals(available[i], destination)) return true;
        }

        return false;
    }
}

/// <summary>
/// YARP load-balancing policy for `loadBalancing: consistentHash`: the key is read from the request (the
/// cluster's consistentHash.key, e.g. header:X-User or consumer) and hashed with XxHash3; a request without
/// the key goes to a random point. One ring per destination set, built on first use and shared by every request.
/// </summary>
internal sealed class ConsistentHashPolicy : ILoadBalancingPolicy
{
    internal const string PolicyName = "Portcullis.ConsistentHash";

    // Keyed by YARP's destinations state, which it replaces whenever the destination set (config) or their
    // availability (health, drains) changes: the ring always matches AllDestinations.
    private readonly ConditionalWeakTable<ClusterDestinationsState, HashRing> _rings = new();

    public string Name => PolicyName;

    public DestinationState? PickDestination(HttpContext context, ClusterState cluster, IReadOnlyList<DestinationState> availableDestinations)
    {
        if (availableDestinations.Count <= 1) return availableDestinations.Count == 0 ? null : availableDestinations[0];
        var settings = context.Features.Get<GatewayFeature>()?.Snapshot.Clusters.GetValueOrDefault(cluster.ClusterId)?.ConsistentHash;
        var state = cluster.DestinationsState;
        if (!_rings.TryGetValue(state, out var ring))
        {
            ring = new HashRing(state.AllDestinations);
            _rings.AddOrUpdate(state, ring);
        }

        var key = settings is null ? default : settings.Key.Read(context.Request);
        var hash = key.Length > 0 ? XxHash3.HashToUInt64(MemoryMarshal.AsBytes(key)) : (ulong)Random.Shared.NextInt64();
        return ring.Pick(hash, availableDestinations, settings?.BalanceFactor ?? 0);
    }
}
