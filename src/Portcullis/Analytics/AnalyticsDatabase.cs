using DuckDB.NET.Data;

namespace Portcullis.Analytics;

/// <summary>
/// The analytics store's DuckDB file. Every reader and writer in the process opens its connections here,
/// so they share one database instance (DuckDB allows one writing process per file).
/// </summary>
internal sealed class AnalyticsDatabase
{
    private readonly string _connectionString;
    private int _schemaReady;

    public AnalyticsDatabase(string path)
    {
        Path = path;
        _connectionString = new DuckDBConnectionStringBuilder { DataSource = path, ["threads"] = Threads.ToString(System.Globalization.CultureInfo.InvariantCulture) }.ConnectionString;
    }

    /// <summary>
    /// DuckDB's worker threads (the calling thread included): half the cores, at least one. DuckDB otherwise runs a
    /// query on every core at normal priority — an advisor cycle or a dashboard query would then take the cores the
    /// request path needs. With one thread (2 cores) a query runs on the thread that asked, so the advisor's
    /// lowered priority (<see cref="Advice.BackgroundPriority"/>) applies to its queries as well.
    /// </summary>
    public static int Threads => Math.Max(1, Environment.ProcessorCount / 2);

    /// <summary>The DuckDB file (absolute).</summary>
    public string Path { get; }

    /// <summary>Creates the tables again on the next open (after a failure: the file may have been replaced).</summary>
    internal void ResetSchema() => Volatile.Write(ref _schemaReady, 0);

    /// <summary>An open connection; the tables exist (created on first use).</summary>
    private readonly Lock _schemaLock = new();

    public DuckDBConnection OpenConnection()
    {
        var connection = new DuckDBConnection(_connectionString);
        try
        {
            connection.Open();
            if (Volatile.Read(ref _schemaReady) == 0)
            {
                // Once, by one caller: two connections creating the tables at the same moment (the writer's first
                // flush and a reader such as the advisor) fail in DuckDB with a catalog write-write conflict.
                lock (_schemaLock)
                {
                    if (Volatile.Read(ref _schemaReady) == 0)
                    {
                        using var command = connection.CreateCommand();
                        command.CommandText = $"{AnalyticsSchema.CreateMeta};\n{AnalyticsSchema.CreateRollups};\n{AnalyticsSchema.CreateRollupDays};\n{AnalyticsSchema.CreateConsumerDays};\n{AnalyticsSchema.CreateSamples};\n{AnalyticsSchema.CreateArrivals};";
                        command.ExecuteNonQuery();
                        Volatile.Write(ref _schemaReady, 1);
                    }
                }
            }

            return connection;
        }
        catch
        {
            connection.Dispose();
            throw;
        }
    }
}
