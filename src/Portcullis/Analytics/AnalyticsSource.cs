using System.Globalization;
using DuckDB.NET.Data;

namespace Portcullis.Analytics;

/// <summary>
/// Where the analytics readers (query API, dashboard, CLI) read: this instance's store, or the Parquet folder a
/// fleet exports to (analytics.fleetPath). Either way the connection it opens has relations named `rollups` and
/// `samples` with the <see cref="AnalyticsSchema"/> columns, so the same parameterized SQL runs on both; the
/// fleet's relations have one more column, `instance`.
/// </summary>
internal sealed class AnalyticsSource
{
    private const string MemoryConnection = "DataSource=:memory:";

    // The partition columns are typed, not guessed: an instance named "01" stays a string.
    private const string HiveTypes = "hive_types = {'dt': DATE, 'hour': INTEGER, 'instance': VARCHAR}";

    private readonly AnalyticsDatabase? _database;
    private readonly string? _fleetPath;
    private readonly string? _readOnlyFile;

    private AnalyticsSource(AnalyticsDatabase? database, string? fleetPath, string? readOnlyFile = null)
    {
        _database = database;
        _fleetPath = fleetPath;
        _readOnlyFile = readOnlyFile;
    }

    /// <summary>
    /// A store file opened read-only (offline readers such as `portcullis advise`): never changed, and DuckDB refuses
    /// (rather than waits) while a gateway writes it. Its tables must exist.
    /// </summary>
    public static AnalyticsSource ReadOnlyFile(string path) => new(null, null, Path.GetFullPath(path));

    /// <summary>This instance's store.</summary>
    public static AnalyticsSource Local(AnalyticsDatabase database) => new(database, null);

    /// <summary>A fleet's export folder (absolute; validated by <see cref="ParquetExportCompiler.CompileFleetPath"/>).</summary>
    public static AnalyticsSource Fleet(string fleetPath)
    {
        CheckFleetPath(fleetPath);
        return new(null, fleetPath);
    }

    /// <summary>"local" or "fleet": the `source` of every query answer.</summary>
    public string Name => IsFleet ? "fleet" : "local";

    public bool IsFleet => _fleetPath is not null;

    /// <summary>What the source reads (the database, the file or the folder): equal for two sources over the same data, so a reader may keep what it read between runs.</summary>
    public object Identity => (object?)_database ?? _readOnlyFile ?? _fleetPath!;

    /// <summary>
    /// An open connection in which `rollups` and `samples` are what to query: the store's tables (local), or
    /// (fleet) an in-memory database with views over the folder's files — empty tables while the folder has
    /// none yet, so a new fleet answers with zeros rather than an error. Dispose it after the query.
    /// </summary>
    /// <param name="from">With <paramref name="to"/> (UTC): the fleet's views read only the hours that overlap
    /// [from, to), so a dashboard's last hour opens a few files rather than the whole month. The query must
    /// still filter on minute/ts; the local store ignores both.</param>
    /// <param name="to">End of the window, exclusive.</param>
    public DuckDBConnection OpenConnection(DateTime? from = null, DateTime? to = null)
    {
        if (_readOnlyFile is not null)
        {
            var readOnly = new DuckDBConnection(new DuckDBConnectionStringBuilder { DataSource = _readOnlyFile, ["access_mode"] = "READ_ONLY" }.ConnectionString);
            try
            {
                readOnly.Open();
                return readOnly;
            }
            catch
            {
                readOnly.Dispose();
                throw;
            }
        }

        if (_fleetPath is null) return _database!.OpenConnection();
        var connection = new DuckDBConnection(MemoryConnection);
        try
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = string.Join(";\n", RelationDdl(_fleetPath, AnalyticsSchema.Rollups, AnalyticsSchema.CreateRollups, from, to),
                RelationDdl(_fleetPath, AnalyticsSchema.Samples, AnalyticsSchema.CreateSamples, from, to));
            command.ExecuteNonQuery();
            return connection;
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The relation text of a table over a fleet folder:
    /// read_parquet('{fleetPath}/*/*/*/{table}.parquet', hive_partitioning = true, union_by_name = true, hive_types = …),
    /// the path quoted as a SQL literal: every file of the folder, for engines and scripts (the connection above
    /// lists the files itself). Its columns: the table's, then dt, hour, instance. DuckDB fails on it while no
    /// file matches.
    /// </summary>
    public static string ParquetRelation(string fleetPath, string table)
    {
        CheckFleetPath(fleetPath);
        if (table is not (AnalyticsSchema.Rollups or AnalyticsSchema.Samples)) throw new ArgumentException($"unknown analytics table '{table}'", nameof(table));
        var glob = Path.Combine(fleetPath, "*", "*", "*", table + ".parquet");
        return $"read_parquet({ParquetExporter.Quote(glob)}, hive_partitioning = true, union_by_name = true, {HiveTypes})";
    }

    /// <summary>
    /// The folder's {table}.parquet files in dt=YYYY-MM-DD/hour=HH/instance=ID/ folders whose hour overlaps
    /// [from, to) (every hour when either is null), in path order. Other folders are not analytics exports.
    /// </summary>
    public static List<string> PartitionFiles(string fleetPath, string table, DateTime? from = null, DateTime? to = null)
    {
        var files = new List<string>();
        if (!Directory.Exists(fleetPath)) return files;
        var name = table + ".parquet";
        foreach (var day in Directory.EnumerateDirectories(fleetPath, "dt=*"))
        {
            if (!DateTime.TryParseExact(Path.GetFileName(day)[3..], "yyyy-MM-dd", CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out var date)) continue;
            foreach (var hourFolder in Directory.EnumerateDirectories(day, "hour=*"))
            {
                var hourText = Path.GetFileName(hourFolder)[5..];
                if (hourText.Length != 2 || !int.TryParse(hourText, NumberStyles.None, CultureInfo.InvariantCulture, out var hour) || hour > 23) continue;
                var start = date.AddHours(hour);
                if (from is { } f && to is { } t && (start >= t || start.AddHours(1) <= f)) continue;
                foreach (var instance in Directory.EnumerateDirectories(hourFolder, "instance=*"))
                {
                    var file = Path.Combine(instance, name);
                    if (File.Exists(file)) files.Add(file);
                }
            }
        }

        files.Sort(StringComparer.Ordinal);
        return files;
    }

    // A view over the files, or (no files) an empty table with the same columns.
    private static string RelationDdl(string fleetPath, string table, string createTable, DateTime? from, DateTime? to)
    {
        var all = PartitionFiles(fleetPath, table);
        var files = from is null || to is null ? all : PartitionFiles(fleetPath, table, from, to);
        if (files.Count == 0) return $"{createTable};\nALTER TABLE {table} ADD COLUMN instance VARCHAR";

        // Every file: the glob (a long list of paths measured about twice as slow); some: exactly those.
        var relation = files.Count == all.Count ? ParquetRelation(fleetPath, table)
            : $"read_parquet([{string.Join(", ", files.Select(ParquetExporter.Quote))}], hive_partitioning = true, union_by_name = true, {HiveTypes})";
        return $"CREATE VIEW {table} AS SELECT * EXCLUDE (dt, hour) FROM {relation}";
    }

    private static void CheckFleetPath(string fleetPath)
    {
        if (!Path.IsPathFullyQualified(fleetPath)) throw new ArgumentException("the fleet path must be absolute", nameof(fleetPath));
        if (fleetPath.AsSpan().IndexOfAny(ParquetExportCompiler.FleetPathRefused) >= 0) throw new ArgumentException("the fleet path cannot hold glob characters or '='", nameof(fleetPath));
    }
}
