using System.Collections.Concurrent;

namespace Portcullis.Clusters;

/// <summary>Which health check changed a destination's state.</summary>
internal enum HealthCheckKind
{
    Active,
    Passive,
}

/// <summary>One change of a destination's health: it became unhealthy (<see cref="Healthy"/> false) or healthy again.</summary>
internal sealed record HealthTransition(string Cluster, string Destination, HealthCheckKind Check, bool Healthy, DateTimeOffset At);

/// <summary>
/// The latest health transitions of every destination (at most <see cref="PerDestination"/> each), for the advisor's
/// flapping check. Recorded by the health policies when a state actually changes: the active policy after a probe
/// round (off the request path), the passive one on an ejection and on the first good answer after it (rare
/// events on the request path: a lock on that destination's small ring, no allocation beyond the record).
/// </summary>
internal sealed class DestinationHealthHistory(TimeProvider time)
{
    /// <summary>Transitions kept per destination: enough to count flaps over any sensible window.</summary>
    public const int PerDestination = 64;

    private readonly ConcurrentDictionary<(string Cluster, string Destination), Ring> _rings = new();

    public void Record(string cluster, string destination, HealthCheckKind check, bool healthy)
    {
        var ring = _rings.GetOrAdd((cluster, destination), static _ => new Ring());
        var transition = new HealthTransition(cluster, destination, check, healthy, time.GetUtcNow());
        lock (ring) ring.Add(transition);
    }

    /// <summary>Every kept transition at or after <paramref name="since"/>, oldest first per destination.</summary>
    public IReadOnlyList<HealthTransition> Since(DateTimeOffset since)
    {
        var result = new List<HealthTransition>();
        foreach (var ring in _rings.Values)
        {
            lock (ring) ring.CopyTo(result, since);
        }

        return result;
    }

    private sealed class Ring
    {
        private readonly HealthTransition[] _items = new HealthTransition[PerDestination];
        private int _next;
        private int _count;

        public void Add(HealthTransition transition)
        {
            _items[_next] = transition;
            _next = (_next + 1) % _items.Length;
            if (_count < _items.Length) _count++;
        }

        public void CopyTo(List<HealthTransition> into, DateTimeOffset since)
        {
            var start = (_next - _count + _items.Length) % _items.Length;
            for (var i = 0; i < _count; i++)
            {
                var item = _items[(start + i) % _items.Length];
                if (item.At >= since) into.Add(item);
            }
        }
    }
}
