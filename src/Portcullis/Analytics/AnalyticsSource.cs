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

    private AnalyticsSource(AnalyticsDatabase? database, string? fleetPath)
    {
        _database = database;
        _fleetPath = fleetPath;
    }

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

    /// <summary>
    /// An open connection in which `rollups` and `samples` are what to query: the store's tables (local), or
    /// (fleet) an in-memory database with views over the folder's files — empty tables while the folder has
    /// none yet, so a new fleet answers with zeros rather than an error. Dispose it after the query.
    /// </summary>
    public DuckDBConnection OpenConnection()
    {
        if (_fleetPath is null) return _database!.OpenConnection();
        var connection = new DuckDBConnection(MemoryConnection);
        try
        {
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = string.Join(";\n", RelationDdl(_fleetPath, AnalyticsSchema.Rollups, AnalyticsSchema.CreateRollups),
                RelationDdl(_fleetPath, AnalyticsSchema.Samples, AnalyticsSchema.CreateSamples));
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
    /// the path quoted as a SQL literal. Its columns: the table's, then dt, hour, instance. DuckDB fails on it
    /// while no file matches (see <see cref="HasFiles"/>).
    /// </summary>
    public static string ParquetRelation(string fleetPath, string table)
    {
        CheckFleetPath(fleetPath);
        if (table is not (AnalyticsSchema.Rollups or AnalyticsSchema.Samples)) throw new ArgumentException($"unknown analytics table '{table}'", nameof(table));
        var glob = Path.Combine(fleetPath, "*", "*", "*", table + ".parquet");
        return $"read_parquet({ParquetExporter.Quote(glob)}, hive_partitioning = true, union_by_name = true, {HiveTypes})";
    }

    /// <summary>Whether the folder holds at least one {table}.parquet at the partition depth (dt=/hour=/instance=/).</summary>
    public static bool HasFiles(string fleetPath, string table)
    {
        if (!Directory.Exists(fleetPath)) return false;
        var name = table + ".parquet";
        foreach (var day in Directory.EnumerateDirectories(fleetPath))
        {
            foreach (var hour in Directory.EnumerateDirectories(day))
            {
                foreach (var instance in Directory.EnumerateDirectories(hour))
                {
                    if (File.Exists(Path.Combine(instance, name))) return true;
                }
            }
        }

        return false;
    }

    // A view over the files, or (no files yet) an empty table with the same columns.
    private static string RelationDdl(string fleetPath, string table, string createTable) => HasFiles(fleetPath, table)
        ? $"CREATE VIEW {table} AS SELECT * EXCLUDE (dt, hour) FROM {ParquetRelation(fleetPath, table)}"
        : $"{createTable};\nALTER TABLE {table} ADD COLUMN instance VARCHAR";

    private static void CheckFleetPath(string fleetPath)
    {
        if (!Path.IsPathFullyQualified(fleetPath)) throw new ArgumentException("the fleet path must be absolute", nameof(fleetPath));
        if (fleetPath.AsSpan().IndexOfAny(ParquetExportCompiler.FleetPathRefused) >= 0) throw new ArgumentException("the fleet path cannot hold glob characters or '='", nameof(fleetPath));
    }
}
