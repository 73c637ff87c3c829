using DuckDB.NET.Data;
using Microsoft.Extensions.Time.Testing;
using Portcullis.Analytics;

namespace Portcullis.Tests.Analytics;

/// <summary>
/// A fleet: two instances' stores with different data, exported as instance=a and instance=b into one
/// folder (whose name holds a quote, so the SQL quoting is exercised); the fleet source reads the folder
/// and its totals equal the sum of both stores exactly, its merged sketches give the same percentiles as
/// merging both stores' buckets, and the DuckDB example of docs/analytics.md runs and agrees.
/// </summary>
public sealed class FleetSourceTests : IDisposable
{
    private static readonly DateTime Day = new(2026, 12, 4, 0, 0, 0, DateTimeKind.Utc);

    private readonly string _dir = Directory.CreateTempSubdirectory("portcullis-fleet-").FullName;
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(Day.AddHours(12).AddMinutes(30)));

    private string FleetPath => Path.Combine(_dir, "fleet's share");

    [Fact]
    public void TheFleetTotalsEqualTheSumOfBothStores_AndMergedSketchesTheMergedBuckets()
    {
        var (a, b, storeA, storeB) = ExportTwoInstances();

        var fleet = AnalyticsSource.Fleet(FleetPath);
        Assert.Equal("fleet", fleet.Name);
        using var connection = fleet.OpenConnection();
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT sum(requests)::BIGINT, sum(bytes_in)::BIGINT, sum(bytes_out)::BIGINT, count(DISTINCT instance) FROM rollups";
            using var reader = command.ExecuteReader();
            Assert.True(reader.Read());
            Assert.Equal(a.Requests + b.Requests, reader.GetInt64(0));
            Assert.Equal(a.BytesIn + b.BytesIn, reader.GetInt64(1));
            Assert.Equal(a.BytesOut + b.BytesOut, reader.GetInt64(2));
            Assert.Equal(2L, Convert.ToInt64(reader.GetValue(3)));
        }

        // Per instance, each store's own totals (read through the local source).
        foreach (var (instance, store) in new[] { ("a", storeA), ("b", storeB) })
        {
            var local = AnalyticsSource.Local(store);
            Assert.Equal("local", local.Name);
            Assert.Equal(Scalar(local.OpenConnection(), "SELECT sum(requests)::BIGINT FROM rollups"),
                Scalar(fleet.OpenConnection(), $"SELECT sum(requests)::BIGINT FROM rollups WHERE instance = '{instance}'"));
        }

        Assert.Equal(a.Samples + b.Samples, Scalar(connection, "SELECT count(*) FROM samples"));
        Assert.Equal(a.Samples + b.Samples, Scalar(connection, "SELECT count(*) FROM samples WHERE request_id IS NOT NULL AND instance IN ('a', 'b')"));

        // The fleet's buckets merged in SQL equal the generators' buckets merged in memory, bucket for bucket.
        var expected = new long[LatencySketch.BucketCount];
        for (var i = 0; i < expected.Length; i++) expected[i] = a.LatencyBuckets[i] + b.LatencyBuckets[i];
        var merged = new long[LatencySketch.BucketCount];
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT bucket, sum(n)::BIGINT FROM (SELECT unnest(latency_buckets) AS bucket, unnest(latency_counts) AS n FROM rollups) GROUP BY bucket";
            using var reader = command.ExecuteReader();
            while (reader.Read()) merged[Convert.ToInt32(reader.GetValue(0))] = reader.GetInt64(1);
        }

        Assert.Equal(expected, merged);
        Assert.Equal(a.Requests + b.Requests, merged.Sum());
        foreach (var q in (double[])[0.5, 0.95, 0.99])
        {
            Assert.Equal(LatencySketch.Quantile(expected, q), LatencySketch.Quantile(merged, q));
        }
    }

    [Fact]
    public void TheDuckDbExampleOfTheDocsRuns()
    {
        var (_, _, storeA, storeB) = ExportTwoInstances();
        var expected = PerRoute(storeA, storeB);

        var doc = File.ReadAllText(Path.Combine(RepoRoot(), "docs", "analytics.md"));
        const string marker = "<!-- checked: FleetSourceTests.TheDuckDbExampleOfTheDocsRuns -->";
        var start = doc.IndexOf("```sql\n", doc.IndexOf(marker, StringComparison.Ordinal), StringComparison.Ordinal) + "```sql\n".Length;
        var sql = doc[start..doc.IndexOf("```", start, StringComparison.Ordinal)]
            .Replace("/shared/portcullis-analytics", FleetPath.Replace("'", "''", StringComparison.Ordinal), StringComparison.Ordinal);

        using var connection = new DuckDBConnection("DataSource=:memory:");
        connection.Open();
        var statements = sql.Split(";\n", StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal(2, statements.Length);
        using (var macro = connection.CreateCommand())
        {
            macro.CommandText = statements[0];
            macro.ExecuteNonQuery();
        }

        using var command = connection.CreateCommand();
        command.CommandText = statements[1].TrimEnd(';');
        using var reader = command.ExecuteReader();
        var rows = 0;
        while (reader.Read())
        {
            var route = reader.IsDBNull(0) ? null : reader.GetString(0);
            var want = expected[route ?? "(none)"];
            Assert.Equal(want.Requests, reader.GetInt64(1));
            Assert.Equal(want.BytesOut, reader.GetInt64(2));
            Assert.Equal(2L, Convert.ToInt64(reader.GetValue(3)));
            Assert.InRange(Convert.ToDouble(reader.GetValue(4)), want.P50 - 0.0011, want.P50 + 0.0011);
            Assert.InRange(Convert.ToDouble(reader.GetValue(5)), want.P99 - 0.0011, want.P99 + 0.0011);
            rows++;
        }

        Assert.Equal(expected.Count, rows);
    }

    [Fact]
    public void AWindowReadsOnlyTheHoursItOverlaps()
    {
        var (a, b, _, _) = ExportTwoInstances();
        Directory.CreateDirectory(Path.Combine(FleetPath, "dt=garbage", "hour=10", "instance=a"));
        Directory.CreateDirectory(Path.Combine(FleetPath, "notes"));
        var fleet = AnalyticsSource.Fleet(FleetPath);

        // 10:30–11:00 overlaps the hour 10 only: both instances' files of it, nothing of 09 or 11.
        Assert.Equal(2, AnalyticsSource.PartitionFiles(FleetPath, AnalyticsSchema.Rollups, Day.AddHours(10.5), Day.AddHours(11)).Count);
        using (var connection = fleet.OpenConnection(Day.AddHours(10.5), Day.AddHours(11)))
        {
            Assert.Equal(a.RequestsByHour[Day.AddHours(10)] + b.RequestsByHour[Day.AddHours(10)], Scalar(connection, "SELECT sum(requests)::BIGINT FROM rollups"));
            Assert.Equal(2L, Scalar(connection, "SELECT count(DISTINCT instance) FROM samples"));
        }

        // 09:00–11:00: hours 09 (a) and 10 (a, b).
        using (var connection = fleet.OpenConnection(Day.AddHours(9), Day.AddHours(11)))
        {
            Assert.Equal(a.RequestsByHour[Day.AddHours(9)] + a.RequestsByHour[Day.AddHours(10)] + b.RequestsByHour[Day.AddHours(10)],
                Scalar(connection, "SELECT sum(requests)::BIGINT FROM rollups"));
        }

        // No hour exported yet in the window: empty, not an error; without a window: everything.
        using (var connection = fleet.OpenConnection(Day.AddHours(12), Day.AddHours(13)))
        {
            Assert.Equal(0L, Scalar(connection, "SELECT count(*) FROM rollups"));
        }

        Assert.Equal(a.Requests + b.Requests, Scalar(fleet.OpenConnection(), "SELECT sum(requests)::BIGINT FROM rollups"));
        Assert.Equal(5, AnalyticsSource.PartitionFiles(FleetPath, AnalyticsSchema.Samples).Count);
    }

    [Fact]
    public void AFleetFolderWithoutFilesAnswersEmpty()
    {
        foreach (var folder in new[] { Path.Combine(_dir, "missing"), Directory.CreateDirectory(Path.Combine(_dir, "empty", "dt=2026-12-04", "hour=10", "instance=a")).Parent!.Parent!.Parent!.FullName })
        {
            using var connection = AnalyticsSource.Fleet(folder).OpenConnection();
            Assert.Equal(0L, Scalar(connection, "SELECT count(*) FROM rollups"));
            Assert.Equal(0L, Scalar(connection, "SELECT count(*) FROM samples WHERE instance IS NOT NULL"));
            Assert.Equal(-1L, Scalar(connection, "SELECT coalesce(sum(requests)::BIGINT, -1) FROM rollups WHERE route = 'orders'"));
        }

        Assert.Empty(AnalyticsSource.PartitionFiles(Path.Combine(_dir, "missing"), AnalyticsSchema.Rollups));
    }

    [Fact]
    public void TheRelationQuotesThePath_AndRefusesGlobCharacters()
    {
        Assert.Equal("read_parquet('/data/it''s/*/*/*/rollups.parquet', hive_partitioning = true, union_by_name = true, hive_types = {'dt': DATE, 'hour': INTEGER, 'instance': VARCHAR})",
            AnalyticsSource.ParquetRelation("/data/it's", AnalyticsSchema.Rollups));
        Assert.Throws<ArgumentException>(() => AnalyticsSource.ParquetRelation("/data/*", AnalyticsSchema.Rollups));
        Assert.Throws<ArgumentException>(() => AnalyticsSource.Fleet("/data/dt=x"));
        Assert.Throws<ArgumentException>(() => AnalyticsSource.Fleet("relative/folder"));
        Assert.Throws<ArgumentException>(() => AnalyticsSource.ParquetRelation("/data", "analytics_meta; DROP TABLE x"));
    }

    private (ExportTestData A, ExportTestData B, AnalyticsDatabase StoreA, AnalyticsDatabase StoreB) ExportTwoInstances()
    {
        var storeA = new AnalyticsDatabase(Path.Combine(_dir, "a.duckdb"));
        var storeB = new AnalyticsDatabase(Path.Combine(_dir, "b.duckdb"));
        var a = new ExportTestData(seed: 21);
        var b = new ExportTestData(seed: 22);
        foreach (var h in (int[])[9, 10, 11]) a.WriteHour(storeA, Day.AddHours(h), rows: 60);
        foreach (var h in (int[])[10, 11]) b.WriteHour(storeB, Day.AddHours(h), rows: 80);
        Assert.Equal(3, Exporter(storeA, "a").ExportClosedHours());
        Assert.Equal(2, Exporter(storeB, "b").ExportClosedHours());
        Assert.Equal(2, Directory.GetDirectories(Path.Combine(FleetPath, "dt=2026-12-04", "hour=10")).Length);
        return (a, b, storeA, storeB);
    }

    private ParquetExporter Exporter(AnalyticsDatabase store, string instance) =>
        new(store, new ParquetExportSettings(FleetPath, instance, TimeSpan.FromSeconds(5), TimeSpan.FromDays(30)), _time, new ListLogger<ParquetExporter>());

    // Per route (null as "(none)"): requests, bytes out, p50 and p99 in ms from both stores' buckets merged in memory.
    private static Dictionary<string, (long Requests, long BytesOut, double P50, double P99)> PerRoute(params AnalyticsDatabase[] stores)
    {
        var totals = new Dictionary<string, (long Requests, long BytesOut, long[] Buckets)>();
        foreach (var store in stores)
        {
            using var connection = store.OpenConnection();
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT route, requests, bytes_out, latency_buckets, latency_counts FROM rollups";
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                var key = reader.IsDBNull(0) ? "(none)" : reader.GetString(0);
                var current = totals.TryGetValue(key, out var t) ? t : (0L, 0L, new long[LatencySketch.BucketCount]);
                LatencySketch.Merge(current.Item3, reader.GetFieldValue<List<short>>(3).ToArray(), reader.GetFieldValue<List<long>>(4).ToArray());
                totals[key] = (current.Item1 + reader.GetInt64(1), current.Item2 + reader.GetInt64(2), current.Item3);
            }
        }

        return totals.ToDictionary(t => t.Key, t => (t.Value.Requests, t.Value.BytesOut,
            Math.Round(LatencySketch.Quantile(t.Value.Buckets, 0.5)!.Value / 1000, 3, MidpointRounding.AwayFromZero),
            Math.Round(LatencySketch.Quantile(t.Value.Buckets, 0.99)!.Value / 1000, 3, MidpointRounding.AwayFromZero)));
    }

    private static long Scalar(DuckDBConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return Convert.ToInt64(command.ExecuteScalar());
    }

    private static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Portcullis.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("repository root not found");
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
