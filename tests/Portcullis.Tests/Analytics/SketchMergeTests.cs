using System.Text;
using System.Text.Json;
using DuckDB.NET.Data;
using Portcullis.Analytics;
using Portcullis.Testing;

namespace Portcullis.Tests.Analytics;

/// <summary>
/// The C# merge of the sketch lists (<see cref="SketchMerge"/>, what the query API uses) against the SQL merge it
/// replaced (unnest, sum per bucket) and against merging every generated request's bucket naively: the same
/// counts per bucket, so the same percentiles, for every query kind, grouping and order.
/// </summary>
public sealed class SketchMergeTests : IDisposable
{
    private static readonly DateTime Start = new(2026, 12, 1, 0, 0, 0, DateTimeKind.Utc);
    private static readonly DateTime Now = Start.AddHours(12);

    // Keys the reader must decode as DuckDB stores them: multi-byte UTF-8, longer than 12 bytes (not inlined), and
    // longer than the reader's 256-character stack buffer.
    private static readonly string Unicode = "commandes-é✓-📦";
    private static readonly string Long = "consumer-" + new string('x', 300);

    private readonly string _dir = Directory.CreateTempSubdirectory("portcullis-merge-").FullName;
    private readonly AnalyticsDatabase _database;
    private readonly AnalyticsDataGenerator _data = new();

    public SketchMergeTests()
    {
        _database = new AnalyticsDatabase(Path.Combine(_dir, "analytics.duckdb"));
        // 600 minutes × 12 rows: more rows than one result chunk (2048), so chunk boundaries are crossed.
        _data.Traffic(Start, minutes: 600, rowsPerMinute: 12, seed: 11);
        var random = new Random(5);
        for (var m = 0; m < 600; m += 7)
        {
            long[] Latencies() => [.. Enumerable.Range(0, random.Next(1, 40)).Select(_ => (long)random.Next(1, 3_000_000))];
            _data.Rollup(Start.AddMinutes(m), Unicode, Long, 200, null, Latencies(), cluster: "c-é", upstreamUs: Latencies());
            _data.Rollup(Start.AddMinutes(m), Unicode, "alice", 503, "upstream.unavailable", Latencies(), cluster: "c-é");
            // Two flushes of the same minute and key: two rows, merged.
            _data.Rollup(Start.AddMinutes(m), Unicode, Long, 200, null, Latencies(), cluster: "c-é", upstreamUs: Latencies());
        }

        _data.WriteTo(_database);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string, string> Queries() => new()
    {
        { "summary", "from=2026-12-01T00:00:00Z" },
        { "summary", "from=2026-12-01T02:00:00Z&to=2026-12-01T05:30:00Z&route=" + Uri.EscapeDataString(Unicode) },
        { "summary", "from=2026-12-01T00:00:00Z&consumer=(none)&status=4xx" },
        { "summary", "from=2026-12-01T00:00:00Z&route=nothing-matches" },
        { "top", "from=2026-12-01T00:00:00Z&by=route&orderBy=p99" },
        { "top", "from=2026-12-01T00:00:00Z&by=consumer&orderBy=p99&limit=3" },
        { "top", "from=2026-12-01T00:00:00Z&by=status&orderBy=p99" },
        { "top", "from=2026-12-01T00:00:00Z&by=reason&orderBy=requests" },
        { "top", "from=2026-12-01T00:00:00Z&by=consumer&orderBy=errors&limit=2" },
        { "top", "from=2026-12-01T00:00:00Z&by=cluster&orderBy=errorRate" },
        { "top", "from=2026-12-01T00:00:00Z&by=consumerGroup&orderBy=bytesOut" },
        { "timeseries", "from=2026-12-01T00:00:00Z&step=1h" },
        { "timeseries", "from=2026-12-01T00:00:00Z&step=15m&groupBy=route" },
        { "timeseries", "from=2026-12-01T00:00:00Z&step=1h&groupBy=consumer&limit=3" },
        { "timeseries", "from=2026-12-01T03:00:00Z&to=2026-12-01T03:01:00Z&step=1m&groupBy=status" },
        { "timeseries", "from=2026-12-01T00:00:00Z&to=2026-12-01T00:01:00Z&step=1m" },
    };

    [Theory]
    [MemberData(nameof(Queries))]
    public void Csharp_merge_answers_exactly_what_the_sql_merge_answers(string kind, string query)
    {
        var parameters = AnalyticsQueryParameters.Parse(Enum.Parse<AnalyticsQueryKind>(kind, ignoreCase: true),
            query.Split('&').Select(q => q.Split('=', 2)).Select(q => KeyValuePair.Create(q[0], new[] { Uri.UnescapeDataString(q[1]) })), Now);
        using var connection = _database.OpenConnection();
        var native = Json(AnalyticsQuery.Run(connection, parameters, "local", SketchMergeMode.Native));
        var sql = Json(AnalyticsQuery.Run(connection, parameters, "local", SketchMergeMode.Sql));

        Assert.Equal(sql, native);
        Assert.Contains("\"p99\":", native);
    }

    [Fact]
    public void Merged_cells_equal_every_generated_request_bucketed_naively()
    {
        using var connection = _database.OpenConnection();
        using var command = connection.CreateCommand();
        command.Parameters.Add(new DuckDBParameter("from", Start.AddMinutes(30)));
        var keys = _data.Rollups.Select(r => r.Route ?? SketchMerge.NullKey).Distinct().ToList();
        var groups = keys.Select((k, i) => (k, i)).ToDictionary(x => x.k, x => x.i);
        const int steps = 10; // hours 0..9 after the start (rows past them are skipped)
        var cells = SketchMerge.Read(connection,
            "SELECT route, (epoch_us(minute - TIMESTAMP '2026-12-01 00:00:00') // 3600000000)::INTEGER, latency_buckets, latency_counts, upstream_buckets, upstream_counts FROM rollups WHERE minute >= $from",
            command.Parameters, groups, steps, 2, CancellationToken.None);

        var checkedCells = 0;
        foreach (var key in keys)
        {
            for (var hour = 0; hour < steps; hour++)
            {
                var rows = _data.Rollups.Where(r => (r.Route ?? SketchMerge.NullKey) == key && r.Minute >= Start.AddMinutes(30) && (int)(r.Minute - Start).TotalHours == hour).ToList();
                for (var sketch = 0; sketch < 2; sketch++)
                {
                    var expected = AnalyticsDataGenerator.Dense(rows, upstream: sketch == 1);
                    var actual = cells.Get(groups[key], hour, sketch);
                    if (expected.All(n => n == 0))
                    {
                        Assert.Null(actual);
                        continue;
                    }

                    Assert.Equal(expected, actual);
                    checkedCells++;
                }
            }
        }

        Assert.True(checkedCells > 50, $"only {checkedCells} cells had data");
        Assert.NotNull(cells.Get(groups[Unicode], 3, 1));
    }

    [Fact]
    public void A_cancelled_merge_throws_instead_of_answering_short()
    {
        using var connection = _database.OpenConnection();
        using var command = connection.CreateCommand();
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() =>
            SketchMerge.Read(connection, "SELECT latency_buckets, latency_counts FROM rollups", command.Parameters, null, 1, 1, cancelled.Token));
    }

    /// <summary>An answer as the query API writes it (shared by the equality tests).</summary>
    internal static string Json(AnalyticsResult result)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream))
        {
            writer.WriteStartObject();
            result.WriteJson(writer);
            writer.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }
}
