using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using DuckDB.NET.Data;
using Portcullis.Analytics;

namespace Portcullis.Cli;

/// <summary>
/// `portcullis analytics summary|top|timeseries|samples --path FILE|DIR`: the admin API's queries, offline, on a
/// store file (opened read-only) or a fleet's Parquet folder. Tables by default, `--json` the API's JSON. The same
/// parameter checks as the API (<see cref="AnalyticsQueryParameters"/>): a bad one exits 2 naming it.
/// </summary>
internal static class AnalyticsCommand
{
    public static Command Create(TextWriter output, TextWriter errors)
    {
        var command = new Command("analytics", "Query the analytics store file or a fleet's Parquet folder offline (no gateway needed).");
        foreach (var (name, kind, description) in new[]
        {
            ("summary", AnalyticsQueryKind.Summary, "Requests, errors, refusals, bytes, latency percentiles, status classes and top reasons."),
            ("top", AnalyticsQueryKind.Top, "The top routes, consumers, … (--by) by requests, errors, error rate, p99 or bytes out (--order-by)."),
            ("timeseries", AnalyticsQueryKind.Timeseries, "Requests, errors, refusals and p50/p99 per step, optionally per group (--by)."),
            ("samples", AnalyticsQueryKind.Samples, "Individual requests kept for drill-down, newest first."),
        })
        {
            command.Subcommands.Add(Query(name, kind, description, output, errors));
        }

        return command;
    }

    private static Command Query(string name, AnalyticsQueryKind kind, string description, TextWriter output, TextWriter errors)
    {
        var path = new Option<string>("--path", "-p") { Description = "The store file (analytics.path) or a Parquet export folder (analytics.export.path / fleetPath).", Required = true };
        var json = new Option<bool>("--json") { Description = "Print the admin API's JSON instead of a table." };
        // Option → API parameter; only the options this query takes are added.
        var options = new List<(Option<string?> Option, string Parameter)>
        {
            (new("--from") { Description = "Start: ISO 8601 UTC or now-15m, now-1h, now-24h, now-7d (default: to - 1h)." }, "from"),
            (new("--to") { Description = "End: ISO 8601 UTC or now, now-… (default: now)." }, "to"),
            (new("--route") { Description = "Only this route; (none) for requests no route matched." }, "route"),
            (new("--cluster") { Description = "Only this cluster; (none) for requests not proxied." }, "cluster"),
            (new("--consumer") { Description = "Only this consumer; (none) for anonymous requests." }, "consumer"),
            (new("--consumer-group") { Description = "Only this consumer group; (none) for none." }, "consumerGroup"),
            (new("--status") { Description = "Only this status (503) or class (5xx)." }, "status"),
            (new("--reason") { Description = "Only this reason code; (none) for requests served." }, "reason"),
        };
        switch (kind)
        {
            case AnalyticsQueryKind.Top:
                options.Add((new("--by") { Description = "route, cluster, consumer, consumerGroup, status or reason (default route)." }, "by"));
                options.Add((new("--order-by") { Description = "requests, errors, errorRate, p99 or bytesOut (default requests)." }, "orderBy"));
                options.Add((new("--limit", "-n") { Description = "Rows, at most 1000 (default 10)." }, "limit"));
                break;
            case AnalyticsQueryKind.Timeseries:
                options.Add((new("--by") { Description = "One series per route, cluster, consumer, consumerGroup, status or reason (default: one series)." }, "groupBy"));
                options.Add((new("--step") { Description = "1m, 5m, 15m, 1h or 1d (default: at most 360 points)." }, "step"));
                options.Add((new("--limit", "-n") { Description = "Series (the groups with most requests), at most 50 (default 10)." }, "limit"));
                break;
            case AnalyticsQueryKind.Samples:
                options.Add((new("--min-status") { Description = "Only requests answered with this status or above (e.g. 400)." }, "minStatus"));
                options.Add((new("--limit", "-n") { Description = "Rows, at most 1000 (default 100)." }, "limit"));
                break;
        }

        var command = new Command(name, description) { path, json };
        foreach (var (option, _) in options) command.Options.Add(option);
        command.SetAction(result =>
        {
            var query = options
                .Select(o => (o.Parameter, Value: result.GetValue(o.Option)))
                .Where(o => o.Value is not null)
                .Select(o => KeyValuePair.Create(o.Parameter, new[] { o.Value! }));
            return Run(kind, result.GetRequiredValue(path), query, result.GetValue(json), TimeProvider.System, output, errors);
        });
        return command;
    }

    internal static int Run(AnalyticsQueryKind kind, string path, IEnumerable<KeyValuePair<string, string[]>> query, bool json, TimeProvider time, TextWriter output, TextWriter errors)
    {
        AnalyticsQueryParameters parameters;
        try
        {
            parameters = AnalyticsQueryParameters.Parse(kind, query, time.GetUtcNow().UtcDateTime);
        }
        catch (AnalyticsQueryException ex)
        {
            errors.WriteLine($"error: {ex.Message}");
            return PortcullisCli.Usage;
        }

        AnalyticsResult result;
        try
        {
            var full = Path.GetFullPath(path);
            if (Directory.Exists(full))
            {
                var fleet = AnalyticsSource.Fleet(full);
                using var connection = fleet.OpenConnection();
                result = AnalyticsQuery.Run(connection, parameters, fleet.Name);
            }
            else if (File.Exists(full))
            {
                // Read-only: the file is never changed, and DuckDB refuses (rather than waits) while a gateway writes it.
                using var connection = new DuckDBConnection(new DuckDBConnectionStringBuilder { DataSource = full, ["access_mode"] = "READ_ONLY" }.ConnectionString);
                connection.Open();
                result = AnalyticsQuery.Run(connection, parameters, "local");
            }
            else
            {
                errors.WriteLine($"error: {path}: no such file or folder");
                return PortcullisCli.Invalid;
            }
        }
        catch (Exception ex) when (ex is DuckDBException or IOException or ArgumentException or UnauthorizedAccessException)
        {
            var locked = ex.Message.Contains("lock", StringComparison.OrdinalIgnoreCase);
            errors.WriteLine(locked
                ? $"error: {path} is in use by a running gateway; ask it instead: GET /admin/analytics/{kind.ToString().ToLowerInvariant()} on its admin listener"
                : $"error: cannot read {path}: {ex.Message.Split('\n')[0]}");
            return PortcullisCli.Invalid;
        }

        if (json) WriteJson(result, output);
        else AnalyticsTable.Write(result, output);
        return PortcullisCli.Ok;
    }

    private static void WriteJson(AnalyticsResult result, TextWriter output)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            writer.WriteStartObject();
            result.WriteJson(writer);
            writer.WriteEndObject();
        }

        output.WriteLine(System.Text.Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length));
    }
}

/// <summary>The plain-text tables of `portcullis analytics`.</summary>
internal static class AnalyticsTable
{
    public static void Write(AnalyticsResult result, TextWriter output)
    {
        var p = result.Parameters;
        output.WriteLine($"{result.Source} {Time(p.From)} .. {Time(p.To)}");
        if (result.Summary is { } s)
        {
            Rows(output, ["", "value"],
            [
                ["requests", N(s.Requests)], ["errors (5xx)", N(s.Errors)], ["refused", N(s.Refused)],
                ["error rate", s.Requests == 0 ? "0 %" : ((double)s.Errors / s.Requests).ToString("P2", CultureInfo.InvariantCulture)],
                ["bytes in", N(s.BytesIn)], ["bytes out", N(s.BytesOut)],
                ["latency p50/p95/p99/mean ms", Ms(s.Latency)], ["upstream p50/p95/p99/mean ms", s.Upstream is { } u ? Ms(u) : "-"],
                ["2xx/3xx/4xx/5xx", $"{N(s.Status2xx)} / {N(s.Status3xx)} / {N(s.Status4xx)} / {N(s.Status5xx)}"],
                .. s.Reasons.Select(r => (string[])["reason " + r.Key, N(r.Requests)]),
            ]);
        }

        if (result.Top is { } top)
        {
            Rows(output, [AnalyticsQueryParameters.Name(p.GroupBy!.Value), "requests", "errors", "refused", "error%", "bytes in", "bytes out", "p50 ms", "p95 ms", "p99 ms"],
                [.. top.Select(r => (string[])[Key(r.Key), N(r.Requests), N(r.Errors), N(r.Refused), r.ErrorRate.ToString("P2", CultureInfo.InvariantCulture),
                    N(r.BytesIn), N(r.BytesOut), Ms(r.P50), Ms(r.P95), Ms(r.P99)])]);
        }

        if (result.Series is { } series)
        {
            Rows(output, ["t (step " + p.StepName + ")", p.GroupBy is { } g ? AnalyticsQueryParameters.Name(g) : "series", "requests", "errors", "refused", "p50 ms", "p99 ms"],
                [.. series.SelectMany(one => one.Points.Select(t => (string[])[Time(t.T), Key(one.Key), N(t.Requests), N(t.Errors), N(t.Refused), Ms(t.P50), Ms(t.P99)]))]);
        }

        if (result.Samples is { } samples)
        {
            Rows(output, ["ts", "status", "method", "path", "route", "consumer", "reason", "ms", "request id"],
                [.. samples.Select(r => (string[])[r.Ts.ToString("yyyy-MM-dd HH:mm:ss.fff", CultureInfo.InvariantCulture), N(r.Status), r.Method, r.Path, Key(r.Route),
                    Key(r.Consumer), r.Reason ?? "", Ms(r.LatencyUs), r.RequestId])]);
        }
    }

    private static void Rows(TextWriter output, string[] header, IReadOnlyList<string[]> rows)
    {
        var widths = header.Select((h, i) => Math.Max(h.Length, rows.Count == 0 ? 0 : rows.Max(r => r[i].Length))).ToArray();
        foreach (var row in rows.Prepend(header))
        {
            // Text left, numbers right.
            output.WriteLine(string.Join("  ", row.Select((cell, i) => i == 0 || !IsNumber(cell) ? cell.PadRight(widths[i]) : cell.PadLeft(widths[i]))).TrimEnd());
        }
    }

    private static bool IsNumber(string cell) => cell.Length > 0 && (char.IsAsciiDigit(cell[0]) || cell == "-") && !cell.Contains(' ', StringComparison.Ordinal);

    private static string Time(DateTime t) => t.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture);

    private static string Key(string? key) => key ?? AnalyticsQueryParameters.None;

    private static string N(long n) => n.ToString(CultureInfo.InvariantCulture);

    private static string Ms(double? us) => AnalyticsResult.Milliseconds(us)?.ToString("0.###", CultureInfo.InvariantCulture) ?? "-";

    private static string Ms(Latencies l) => $"{Ms(l.P50)} / {Ms(l.P95)} / {Ms(l.P99)} / {Ms(l.Mean)}";
}
