using System.Net;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Portcullis.Advice;
using Portcullis.Analytics;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.Testing;

namespace Portcullis.IntegrationTests.Advice;

/// <summary>
/// What the per-kind advice tests share: history written into the store before the gateway opens it (the
/// <see cref="AnalyticsDataGenerator"/>'s appender rows, as the writer leaves them), requests through the real
/// gateway, a wait until the gateway's writer has flushed them, a run of the real engine triggered now (rather than
/// waiting for advice.interval) and the findings as GET /admin/advice lists them.
/// </summary>
internal static class AdviceKindGateway
{
    public static DateTime Minute(DateTime t) => new(t.Ticks - (t.Ticks % TimeSpan.TicksPerMinute), DateTimeKind.Utc);

    /// <summary>
    /// Writes one set of rows per minute of [from, to) into the store at <paramref name="database"/>; returns the
    /// number of minutes written.
    /// </summary>
    public static int Seed(string database, DateTime from, DateTime to, Action<AnalyticsDataGenerator, DateTime> minute)
    {
        var history = new AnalyticsDataGenerator();
        var minutes = 0;
        for (var t = Minute(from); t < to; t = t.AddMinutes(1), minutes++) minute(history, t);
        history.WriteTo(new AnalyticsDatabase(database));
        return minutes;
    }

    /// <summary>n latencies (µs) spread evenly over [fromMs, toMs).</summary>
    public static long[] Latencies(int n, int fromMs, int toMs) =>
        [.. Enumerable.Range(0, n).Select(i => (long)(fromMs + ((toMs - fromMs) * i / (double)n)) * 1000)];

    /// <summary>Sends a GET from client address <paramref name="client"/> (X-Forwarded-For, the loopback proxy is trusted).</summary>
    public static async Task<HttpStatusCode> SendAsync(TestGateway gateway, string path, string? client = null, string? key = null, HttpMethod? method = null)
    {
        using var request = new HttpRequestMessage(method ?? HttpMethod.Get, path);
        if (client is not null) request.Headers.TryAddWithoutValidation("X-Forwarded-For", client);
        if (key is not null) request.Headers.TryAddWithoutValidation("X-Api-Key", key);
        using var response = await gateway.Client.SendAsync(request);
        await response.Content.ReadAsByteArrayAsync();
        return response.StatusCode;
    }

    /// <summary>Sends <paramref name="count"/> requests, <paramref name="parallel"/> at a time; returns the statuses by index.</summary>
    public static async Task<HttpStatusCode[]> SendManyAsync(TestGateway gateway, int count, Func<int, string> path, string? client = null, string? key = null, int parallel = 8)
    {
        var statuses = new HttpStatusCode[count];
        await Parallel.ForAsync(0, count, new ParallelOptions { MaxDegreeOfParallelism = parallel },
            async (i, _) => statuses[i] = await SendAsync(gateway, path(i), client, key));
        return statuses;
    }

    /// <summary>Waits until the store's rollups since <paramref name="since"/> (whole minutes) count <paramref name="requests"/> requests.</summary>
    public static Task FlushedAsync(TestGateway gateway, DateTime since, long requests) =>
        ScalarAsync(gateway, "SELECT coalesce(sum(requests), 0)::BIGINT FROM rollups WHERE minute >= $p", requests, Minute(since));

    /// <summary>Waits until a query (one parameter, $p) over the gateway's store answers <paramref name="expected"/>.</summary>
    public static async Task ScalarAsync(TestGateway gateway, string sql, long expected, object parameter)
    {
        var database = gateway.Services.GetRequiredService<AnalyticsDatabase>();
        long last = -1;
        await Eventually.TrueAsync(() =>
        {
            using var connection = database.OpenConnection();
            using var command = connection.CreateCommand();
            command.CommandText = sql;
            command.Parameters.Add(new DuckDB.NET.Data.DuckDBParameter("p", parameter));
            last = Convert.ToInt64(command.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
            return last == expected;
        }, $"the store to answer {expected} to {sql}", TimeSpan.FromSeconds(60), () => Task.FromResult($"last answer {last}\n{gateway.Logs}"));
    }

    /// <summary>
    /// Runs the gateway's own advisor now (the same <see cref="AdviceService.RunOnce"/> its background loop calls,
    /// over the live snapshot, store and runtime), then lists the findings of <paramref name="kind"/> from
    /// GET /admin/advice, where the run just published them.
    /// </summary>
    public static async Task<List<JsonElement>> RunAsync(TestGateway gateway, string kind)
    {
        var set = await Task.Run(() => gateway.Services.GetRequiredService<AdviceService>().RunOnce());
        Assert.NotNull(set);
        var failed = set.LastRun!.Detectors.Where(d => d.Error is not null).Select(d => d.Name + ": " + d.Error).ToList();
        Assert.True(failed.Count == 0, string.Join("\n", failed));
        using var response = await gateway.Admin.GetAsync("/admin/advice?state=all&kind=" + kind);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
        return [.. body.GetProperty("findings").EnumerateArray().Where(f => f.GetProperty("state").GetString() != "resolved")];
    }

    public static string Subject(JsonElement finding) => finding.GetProperty("subject").GetProperty("name").GetString()!;

    public static string? SubjectRoute(JsonElement finding) => finding.GetProperty("subject").GetProperty("route").GetString();

    public static string SubjectKind(JsonElement finding) => finding.GetProperty("subject").GetProperty("kind").GetString()!;

    public static string Severity(JsonElement finding) => finding.GetProperty("severity").GetString()!;

    public static string Explanation(JsonElement finding) => finding.GetProperty("explanation").GetString()!;

    public static string? Patch(JsonElement finding) =>
        finding.GetProperty("patch").ValueKind == JsonValueKind.Null ? null : finding.GetProperty("patch").GetProperty("yaml").GetString();

    public static JsonElement Evidence(JsonElement finding, string name) =>
        finding.GetProperty("evidence").GetProperty("values").EnumerateArray().Single(v => v.GetProperty("name").GetString() == name);

    public static double Value(JsonElement finding, string name) => Evidence(finding, name).GetProperty("value").GetDouble();

    public static double Baseline(JsonElement finding, string name) => Evidence(finding, name).GetProperty("baseline").GetDouble();

    /// <summary>The findings, one a line, for assertion messages.</summary>
    public static string Describe(IEnumerable<JsonElement> findings) => string.Join("\n", findings.Select(f => f.ToString()));
}
