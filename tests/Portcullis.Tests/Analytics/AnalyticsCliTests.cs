using System.Text.Json;
using DuckDB.NET.Data;
using Portcullis.Analytics;
using Portcullis.Cli;
using Portcullis.Testing;

namespace Portcullis.Tests.Analytics;

/// <summary>
/// `portcullis analytics` offline: on a store file (opened read-only: the file is unchanged) and on a Parquet
/// folder laid out as the export writes it (dt=/hour=/instance=/, written here with DuckDB COPY), tables and
/// --json (the API's JSON), bad parameters exit 2.
/// </summary>
public sealed class AnalyticsCliTests : IDisposable
{
    private static readonly DateTime Start = new(2026, 12, 3, 22, 0, 0, DateTimeKind.Utc);

    private readonly string _dir = Directory.CreateTempSubdirectory("portcullis-analytics-cli-").FullName;
    private readonly AnalyticsDataGenerator _data = new();

    private string Store => Path.Combine(_dir, "analytics.duckdb");

    public AnalyticsCliTests()
    {
        // Three hours across midnight (two dt= partitions in the folder).
        _data.Traffic(Start, minutes: 180, rowsPerMinute: 4, seed: 11);
        _data.Sample(Start.AddMinutes(5), "s-1", "orders", "alice", 503, "upstream.unavailable", "/orders/{id}", 2500, 2000);
        _data.Sample(Start.AddMinutes(65), "s-2", "orders", null, 401, "auth.missing", "/orders/{id}", 300);
        _data.WriteTo(new AnalyticsDatabase(Store));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static async Task<(int Code, string Output, string Errors)> RunAsync(params string[] args)
    {
        using var output = new StringWriter();
        using var errors = new StringWriter();
        var code = await PortcullisCli.RunAsync(args, output, errors);
        return (code, output.ToString(), errors.ToString());
    }

    private static string[] Range => ["--from", Start.ToString("O"), "--to", Start.AddHours(3).ToString("O")];

    [Fact]
    public async Task Top_and_summary_on_a_store_file_as_a_table_and_as_the_apis_json_without_changing_it()
    {
        var before = File.ReadAllBytes(Store);
        var (code, table, errors) = await RunAsync(["analytics", "top", "--path", Store, "--by", "consumer", .. Range]);
        Assert.True(code == 0, errors);
        var lines = table.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("local 2026-12-03T22:00:00Z .. 2026-12-04T01:00:00Z", lines[0], StringComparison.Ordinal);
        Assert.StartsWith("consumer", lines[1], StringComparison.Ordinal);
        var expected = _data.Rollups.GroupBy(r => r.Consumer).Select(g => (Key: g.Key ?? "(none)", Requests: g.Sum(r => r.Requests))).OrderByDescending(g => g.Requests).ToList();
        Assert.Equal(expected.Count, lines.Length - 2);
        for (var i = 0; i < expected.Count; i++)
        {
            var cells = lines[i + 2].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal((expected[i].Key, expected[i].Requests.ToString(System.Globalization.CultureInfo.InvariantCulture)), (cells[0], cells[1]));
        }

        (code, var json, errors) = await RunAsync(["analytics", "summary", "--path", Store, "--json", "--route", "orders", .. Range]);
        Assert.True(code == 0, errors);
        var summary = JsonDocument.Parse(json).RootElement;
        Assert.Equal("local", summary.GetProperty("source").GetString());
        Assert.Equal(_data.Rollups.Where(r => r.Route == "orders").Sum(r => r.Requests), summary.GetProperty("requests").GetInt64());
        Assert.Equal(["p50", "p95", "p99", "mean"], summary.GetProperty("latency").EnumerateObject().Select(p => p.Name));

        (code, table, errors) = await RunAsync(["analytics", "samples", "--path", Store, "--min-status", "500", .. Range]);
        Assert.True(code == 0, errors);
        Assert.Contains("s-1", table, StringComparison.Ordinal);
        Assert.DoesNotContain("s-2", table, StringComparison.Ordinal);

        (code, table, errors) = await RunAsync(["analytics", "timeseries", "--path", Store, "--step", "1h", .. Range]);
        Assert.True(code == 0, errors);
        Assert.Contains("2026-12-04T00:00:00Z", table, StringComparison.Ordinal);

        Assert.Equal(before, File.ReadAllBytes(Store));
    }

    [Fact]
    public async Task A_parquet_folder_answers_like_the_store_it_was_exported_from()
    {
        var fleet = Path.Combine(_dir, "fleet");
        using (var connection = new AnalyticsDatabase(Store).OpenConnection())
        {
            for (var hour = Start; hour < Start.AddHours(3); hour = hour.AddHours(1))
            {
                var folder = Path.Combine(fleet, $"dt={hour:yyyy-MM-dd}", $"hour={hour:HH}", "instance=gw-1");
                Directory.CreateDirectory(folder);
                foreach (var (table, time) in new[] { (AnalyticsSchema.Rollups, "minute"), (AnalyticsSchema.Samples, "ts") })
                {
                    using var copy = connection.CreateCommand();
                    copy.CommandText = $"COPY (SELECT * FROM {table} WHERE {time} >= $from AND {time} < $to) TO '{Path.Combine(folder, table + ".parquet")}' (FORMAT parquet)";
                    copy.Parameters.Add(new DuckDBParameter("from", hour));
                    copy.Parameters.Add(new DuckDBParameter("to", hour.AddHours(1)));
                    copy.ExecuteNonQuery();
                }
            }
        }

        foreach (var query in (string[][])[["top", "--by", "route", "--order-by", "p99"], ["summary"], ["timeseries", "--by", "consumer", "--step", "15m"], ["samples"]])
        {
            var (code, fromStore, errors) = await RunAsync(["analytics", .. query, "--path", Store, "--json", .. Range]);
            Assert.True(code == 0, errors);
            (code, var fromFolder, errors) = await RunAsync(["analytics", .. query, "--path", fleet, "--json", .. Range]);
            Assert.True(code == 0, errors);
            Assert.Equal(fromStore.Replace("\"source\": \"local\"", "\"source\": \"fleet\"", StringComparison.Ordinal), fromFolder);
        }
    }

    [Theory]
    [InlineData("top", "--by", "path")]
    [InlineData("summary", "--from", "yesterday")]
    [InlineData("samples", "--limit", "5000")]
    public async Task A_bad_option_value_exits_2_naming_it(string query, string option, string value)
    {
        var (code, _, errors) = await RunAsync("analytics", query, "--path", Store, option, value);
        Assert.Equal(PortcullisCli.Usage, code);
        Assert.StartsWith("error: '", errors, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_missing_file_exits_1()
    {
        var (code, _, errors) = await RunAsync("analytics", "summary", "--path", Path.Combine(_dir, "nope.duckdb"));
        Assert.Equal(PortcullisCli.Invalid, code);
        Assert.Contains("no such file", errors, StringComparison.Ordinal);
    }
}
