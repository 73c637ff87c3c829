using Portcullis.Testing;

namespace Portcullis.Tests.Advice;

/// <summary>
/// Per-second traffic to one cluster written as the gateway writes it: per-minute rollups (successes and failures
/// in their own rows) and a sample for every failure (status ≥ 400 is always sampled), at its own second.
/// </summary>
internal sealed class ServiceTrafficGenerator(AnalyticsDataGenerator data, string route, string cluster)
{
    /// <summary>
    /// <paramref name="rps"/> requests a second over [from, to); a share of them fails with the status and reason
    /// (null reason: the upstream's own 5xx) while the failure window holds; upstream latency by second.
    /// </summary>
    public ServiceTrafficGenerator Add(DateTime from, DateTime to, int rps, Func<DateTime, double>? failShare = null, short status = 503, string? reason = "upstream.unavailable",
        Func<DateTime, long>? upstreamUs = null)
    {
        var minutes = new SortedDictionary<DateTime, (List<long> Ok, List<long> Failed)>();
        var id = 0;
        for (var second = from; second < to; second = second.AddSeconds(1))
        {
            var minute = new DateTime(second.Ticks - second.Ticks % TimeSpan.TicksPerMinute, DateTimeKind.Utc);
            if (!minutes.TryGetValue(minute, out var bucket)) minutes[minute] = bucket = ([], []);
            var share = failShare?.Invoke(second) ?? 0;
            var failures = (int)Math.Round(rps * share);

            // A fractional share fails one request every 1/(rps·share) seconds.
            if (failures == 0 && share > 0 && (long)(second - from).TotalSeconds % Math.Max(1, (long)Math.Round(1 / (rps * share))) == 0) failures = 1;
            var latency = upstreamUs?.Invoke(second) ?? 20_000;
            for (var i = 0; i < rps; i++)
            {
                if (i < failures)
                {
                    bucket.Failed.Add(latency);
                    data.Sample(second.AddMilliseconds(i * (1000.0 / rps)), "r" + id++, route, null, status, reason, "/x", latency + 500, latency, cluster);
                }
                else
                {
                    bucket.Ok.Add(latency);
                }
            }
        }

        foreach (var (minute, (ok, failed)) in minutes)
        {
            if (ok.Count > 0) data.Rollup(minute, route, null, 200, null, [.. ok.Select(l => l + 500)], cluster, upstreamUs: [.. ok]);
            if (failed.Count > 0) data.Rollup(minute, route, null, status, reason, [.. failed.Select(l => l + 500)], cluster, upstreamUs: [.. failed]);
        }

        return this;
    }
}
