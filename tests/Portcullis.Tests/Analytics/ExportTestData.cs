using Microsoft.Extensions.Logging;
using Portcullis.Analytics;

namespace Portcullis.Tests.Analytics;

/// <summary>
/// Writes rollup and sample rows through the Appender as the flusher does (AnalyticsSchema's columns), and
/// keeps its own totals and merged latency buckets: the ground truth the exported files are checked against.
/// </summary>
internal sealed class ExportTestData(int seed)
{
    private static readonly string?[] Routes = ["orders", "users", "search", null];
    private static readonly string?[] Consumers = ["alice", "bob", "carol", null];
    private static readonly (short Status, string? Reason)[] Outcomes =
        [(200, null), (200, null), (200, null), (201, null), (404, "route.not-found"), (429, "ratelimit.exceeded"), (503, "upstream.unavailable")];

    private readonly Random _random = new(seed);

    public long Requests { get; private set; }
    public long BytesIn { get; private set; }
    public long BytesOut { get; private set; }
    public long Samples { get; private set; }

    /// <summary>Total latency counts by bucket (dense), merged over every row written.</summary>
    public long[] LatencyBuckets { get; } = new long[LatencySketch.BucketCount];

    public Dictionary<DateTime, long> RequestsByHour { get; } = [];

    /// <summary>Appends <paramref name="rows"/> rollup rows (and one sample per refused or failed row) in the hour starting at <paramref name="hour"/>.</summary>
    public void WriteHour(AnalyticsDatabase database, DateTime hour, int rows = 25, bool samples = true)
    {
        using var connection = database.OpenConnection();
        var sampleRows = new List<(DateTime Ts, string? Route, string? Consumer, short Status, string? Reason, long Latency)>();
        using (var appender = connection.CreateAppender(AnalyticsSchema.Rollups))
        {
            for (var i = 0; i < rows; i++)
            {
                var minute = hour.AddMinutes(_random.Next(60));
                var route = Routes[_random.Next(Routes.Length)];
                var consumer = Consumers[_random.Next(Consumers.Length)];
                var (status, reason) = Outcomes[_random.Next(Outcomes.Length)];
                var requests = _random.Next(1, 40);
                var bytesIn = _random.NextInt64(0, 100_000);
                var bytesOut = _random.NextInt64(0, 1_000_000);
                var sketch = new SortedDictionary<short, long>();
                var upstream = new SortedDictionary<short, long>();
                long latencySum = 0, upstreamSum = 0;
                for (var r = 0; r < requests; r++)
                {
                    // Log-uniform from 100 µs to ~3 s: many buckets, a long tail.
                    var latency = (long)Math.Exp(_random.NextDouble() * Math.Log(30_000)) * 100;
                    latencySum += latency;
                    var bucket = (short)LatencySketch.BucketOf(latency);
                    sketch[bucket] = sketch.GetValueOrDefault(bucket) + 1;
                    LatencyBuckets[bucket]++;
                    if (status != 404)
                    {
                        upstreamSum += latency / 2;
                        var up = (short)LatencySketch.BucketOf(latency / 2);
                        upstream[up] = upstream.GetValueOrDefault(up) + 1;
                    }

                    if (r == 0 && status >= 400) sampleRows.Add((minute.AddSeconds(_random.Next(60)), route, consumer, status, reason, latency));
                }

                appender.CreateRow()
                    .AppendValue(minute).AppendValue(route).AppendValue(route is null ? null : route + "-v1")
                    .AppendValue(consumer).AppendValue(consumer is null ? null : "partners").AppendValue(status).AppendValue(reason)
                    .AppendValue((long)requests).AppendValue(bytesIn).AppendValue(bytesOut).AppendValue(latencySum).AppendValue(upstreamSum)
                    .AppendValue(sketch.Keys.ToList()).AppendValue(sketch.Values.ToList())
                    .AppendValue(upstream.Keys.ToList()).AppendValue(upstream.Values.ToList())
                    .EndRow();
                Requests += requests;
                BytesIn += bytesIn;
                BytesOut += bytesOut;
                RequestsByHour[hour] = RequestsByHour.GetValueOrDefault(hour) + requests;
            }
        }

        if (!samples) return;
        using var sampleAppender = connection.CreateAppender(AnalyticsSchema.Samples);
        foreach (var s in sampleRows)
        {
            sampleAppender.CreateRow()
                .AppendValue(s.Ts).AppendValue(Guid.NewGuid().ToString("N")).AppendValue((string?)null)
                .AppendValue(s.Route).AppendValue(s.Route is null ? null : s.Route + "-v1").AppendValue(s.Consumer).AppendValue((string?)null)
                .AppendValue("192.0.2.7").AppendValue("GET").AppendValue("api.example.test").AppendValue(s.Route is null ? "/unknown" : "/" + s.Route + "/{id}")
                .AppendValue(s.Status).AppendValue(s.Reason).AppendValue((string?)null).AppendValue("admitted")
                .AppendValue((sbyte)1).AppendValue(0L).AppendValue(120L).AppendValue(s.Latency).AppendValue(s.Status == 404 ? null : (long?)(s.Latency / 2))
                .EndRow();
            Samples++;
        }
    }
}

/// <summary>Keeps what is logged (level, event id, text).</summary>
internal sealed class ListLogger<T> : ILogger<T>
{
    private readonly List<(LogLevel Level, int EventId, string Text)> _lines = [];

    public IReadOnlyList<(LogLevel Level, int EventId, string Text)> Lines
    {
        get
        {
            lock (_lines) return [.. _lines];
        }
    }

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        lock (_lines) _lines.Add((logLevel, eventId.Id, formatter(state, exception)));
    }
}
