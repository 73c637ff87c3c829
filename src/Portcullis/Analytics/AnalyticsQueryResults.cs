using System.Text.Json;

namespace Portcullis.Analytics;

/// <summary>Latency percentiles in microseconds (from merged sketches) and the exact mean; null parts when nothing was measured.</summary>
internal readonly record struct Latencies(double? P50, double? P95, double? P99, double? Mean);

internal sealed record KeyCount(string? Key, long Requests);

internal sealed record SummaryResult(
    long Requests, long Errors, long Refused, long BytesIn, long BytesOut, Latencies Latency, Latencies? Upstream,
    long Status2xx, long Status3xx, long Status4xx, long Status5xx, IReadOnlyList<KeyCount> Reasons);

internal sealed record SeriesPoint(DateTime T, long Requests, long Errors, long Refused, double? P50, double? P99);

internal sealed record Series(string? Key, IReadOnlyList<SeriesPoint> Points);

internal sealed record TopRow(string? Key, long Requests, long Errors, long Refused, long BytesIn, long BytesOut, double? P50, double? P95, double? P99)
{
    public double ErrorRate => Requests == 0 ? 0 : (double)Errors / Requests;
}

internal sealed record SampleRow(
    DateTime Ts, string RequestId, string? TraceId, string? Route, string? Cluster, string? Consumer, string? ConsumerGroup, string? Client,
    string Method, string? Host, string Path, int Status, string? Reason, string? Auth, string? Traffic, int Attempts,
    long BytesIn, long BytesOut, long LatencyUs, long? UpstreamUs);

/// <summary>
/// One query's answer. <see cref="WriteJson"/> writes the shapes of docs/analytics.md#query-api (the admin API
/// and `portcullis analytics --json` write the same): latencies in milliseconds with 3 decimals.
/// </summary>
internal sealed record AnalyticsResult(AnalyticsQueryParameters Parameters, string Source)
{
    public SummaryResult? Summary { get; init; }
    public IReadOnlyList<Series>? Series { get; init; }
    public IReadOnlyList<TopRow>? Top { get; init; }
    public IReadOnlyList<SampleRow>? Samples { get; init; }

    public static double? Milliseconds(double? microseconds) => microseconds is { } us ? Math.Round(us / 1000, 3) : null;

    /// <summary>Writes the answer's properties into an open object.</summary>
    public void WriteJson(Utf8JsonWriter w)
    {
        var p = Parameters;
        w.WriteString("from", p.From);
        w.WriteString("to", p.To);
        w.WriteString("source", Source);
        if (Summary is { } s) WriteSummary(w, s);
        if (Series is { } series)
        {
            w.WriteString("step", p.StepName);
            if (p.GroupBy is { } groupBy) w.WriteString("groupBy", AnalyticsQueryParameters.Name(groupBy));
            else w.WriteNull("groupBy");
            w.WriteStartArray("series");
            foreach (var one in series)
            {
                w.WriteStartObject();
                w.WriteString("key", one.Key);
                w.WriteStartArray("points");
                foreach (var point in one.Points)
                {
                    w.WriteStartObject();
                    w.WriteString("t", point.T);
                    w.WriteNumber("requests", point.Requests);
                    w.WriteNumber("errors", point.Errors);
                    w.WriteNumber("refused", point.Refused);
                    Number(w, "p50", Milliseconds(point.P50));
                    Number(w, "p99", Milliseconds(point.P99));
                    w.WriteEndObject();
                }

                w.WriteEndArray();
                w.WriteEndObject();
            }

            w.WriteEndArray();
        }

        if (Top is { } top)
        {
            w.WriteString("by", AnalyticsQueryParameters.Name(p.GroupBy!.Value));
            w.WriteString("orderBy", AnalyticsQueryParameters.Name(p.OrderBy));
            w.WriteStartArray("rows");
            foreach (var row in top)
            {
                w.WriteStartObject();
                w.WriteString("key", row.Key);
                w.WriteNumber("requests", row.Requests);
                w.WriteNumber("errors", row.Errors);
                w.WriteNumber("refused", row.Refused);
                w.WriteNumber("errorRate", Math.Round(row.ErrorRate, 6));
                w.WriteNumber("bytesIn", row.BytesIn);
                w.WriteNumber("bytesOut", row.BytesOut);
                Number(w, "p50", Milliseconds(row.P50));
                Number(w, "p95", Milliseconds(row.P95));
                Number(w, "p99", Milliseconds(row.P99));
                w.WriteEndObject();
            }

            w.WriteEndArray();
        }

        if (Samples is { } samples) WriteSamples(w, samples);
    }

    private static void WriteSummary(Utf8JsonWriter w, SummaryResult s)
    {
        w.WriteNumber("requests", s.Requests);
        w.WriteNumber("errors", s.Errors);
        w.WriteNumber("refused", s.Refused);
        w.WriteNumber("errorRate", s.Requests == 0 ? 0 : Math.Round((double)s.Errors / s.Requests, 6));
        w.WriteNumber("bytesIn", s.BytesIn);
        w.WriteNumber("bytesOut", s.BytesOut);
        w.WritePropertyName("latency");
        WriteLatencies(w, s.Latency);
        w.WritePropertyName("upstreamLatency");
        if (s.Upstream is { } upstream) WriteLatencies(w, upstream);
        else w.WriteNullValue();
        w.WriteStartObject("statusClasses");
        w.WriteNumber("2xx", s.Status2xx);
        w.WriteNumber("3xx", s.Status3xx);
        w.WriteNumber("4xx", s.Status4xx);
        w.WriteNumber("5xx", s.Status5xx);
        w.WriteEndObject();
        w.WriteStartArray("reasons");
        foreach (var reason in s.Reasons)
        {
            w.WriteStartObject();
            w.WriteString("reason", reason.Key);
            w.WriteNumber("requests", reason.Requests);
            w.WriteEndObject();
        }

        w.WriteEndArray();
    }

    private static void WriteLatencies(Utf8JsonWriter w, Latencies l)
    {
        w.WriteStartObject();
        Number(w, "p50", Milliseconds(l.P50));
        Number(w, "p95", Milliseconds(l.P95));
        Number(w, "p99", Milliseconds(l.P99));
        Number(w, "mean", Milliseconds(l.Mean));
        w.WriteEndObject();
    }

    private static void WriteSamples(Utf8JsonWriter w, IReadOnlyList<SampleRow> samples)
    {
        w.WriteStartArray("rows");
        foreach (var r in samples)
        {
            w.WriteStartObject();
            w.WriteString("ts", r.Ts);
            w.WriteString("requestId", r.RequestId);
            w.WriteString("traceId", r.TraceId);
            w.WriteString("route", r.Route);
            w.WriteString("cluster", r.Cluster);
            w.WriteString("consumer", r.Consumer);
            w.WriteString("consumerGroup", r.ConsumerGroup);
            w.WriteString("client", r.Client);
            w.WriteString("method", r.Method);
            w.WriteString("host", r.Host);
            w.WriteString("path", r.Path);
            w.WriteNumber("status", r.Status);
            w.WriteString("reason", r.Reason);
            w.WriteString("auth", r.Auth);
            w.WriteString("traffic", r.Traffic);
            w.WriteNumber("attempts", r.Attempts);
            w.WriteNumber("bytesIn", r.BytesIn);
            w.WriteNumber("bytesOut", r.BytesOut);
            Number(w, "latencyMs", Milliseconds(r.LatencyUs));
            Number(w, "upstreamMs", Milliseconds(r.UpstreamUs));
            w.WriteEndObject();
        }

        w.WriteEndArray();
    }

    private static void Number(Utf8JsonWriter w, string name, double? value)
    {
        if (value is { } v) w.WriteNumber(name, v);
        else w.WriteNull(name);
    }
}
