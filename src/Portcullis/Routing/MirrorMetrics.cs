using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Portcullis.Observability;

namespace Portcullis.Routing;

/// <summary>
/// portcullis_mirror_requests_total{route,outcome}: copies sent, dropped at the concurrency cap, dropped for their
/// body (larger than maxBodySize or of undeclared length) and failed (no answer within the timeout, a refused
/// connection). Counted per route name across reloads, so the counters only grow; only routes with a mirror appear.
/// </summary>
internal sealed class MirrorMetrics : IMetricsContributor
{
    private readonly ConcurrentDictionary<string, RouteCounts> _routes = new(StringComparer.Ordinal);

    internal sealed class RouteCounts
    {
        public long Sent;
        public long DroppedConcurrency;
        public long DroppedBody;
        public long Failed;
    }

    public RouteCounts For(string route) => _routes.GetOrAdd(route, static _ => new RouteCounts());

    public void Register(Meter meter) =>
        meter.CreateObservableCounter("portcullis.mirror.requests", Observe, "{request}",
            "Mirror copies by route and outcome: sent, dropped_concurrency (maxConcurrent reached), dropped_body (body over maxBodySize or undeclared), failed (no answer in time, connection refused).");

    private IEnumerable<Measurement<long>> Observe()
    {
        foreach (var (route, counts) in _routes)
        {
            yield return Of(route, "sent", Interlocked.Read(ref counts.Sent));
            yield return Of(route, "dropped_concurrency", Interlocked.Read(ref counts.DroppedConcurrency));
            yield return Of(route, "dropped_body", Interlocked.Read(ref counts.DroppedBody));
            yield return Of(route, "failed", Interlocked.Read(ref counts.Failed));
        }
    }

    private static Measurement<long> Of(string route, string outcome, long value) =>
        new(value, new TagList { { "route", route }, { "outcome", outcome } });
}
