using Portcullis.Analytics;

namespace Portcullis.Tests.Analytics;

public sealed class AnalyticsDatabaseTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("portcullis-analytics-").FullName;

    [Fact]
    public void OpeningCreatesTheTablesAndListsRoundTrip()
    {
        var database = new AnalyticsDatabase(Path.Combine(_dir, "a.duckdb"));
        using (var connection = database.OpenConnection())
        using (var appender = connection.CreateAppender(AnalyticsSchema.Rollups))
        {
            appender.CreateRow()
                .AppendValue(new DateTime(2026, 12, 4, 12, 0, 0, DateTimeKind.Utc)).AppendValue("orders").AppendValue("orders-v1")
                .AppendValue("alice").AppendValue((string?)null).AppendValue((short)200).AppendValue((string?)null)
                .AppendValue(3L).AppendValue(0L).AppendValue(30L).AppendValue(900L).AppendValue(600L)
                .AppendValue(new List<short> { 5, 9 }).AppendValue(new List<long> { 1, 2 })
                .AppendValue(new List<short>()).AppendValue(new List<long>())
                .EndRow();
        }

        using var reader = database.OpenConnection();
        using var command = reader.CreateCommand();
        command.CommandText = "SELECT sum(requests)::BIGINT, list_sum(flatten(list(latency_counts)))::BIGINT FROM rollups WHERE route = $route";
        command.Parameters.Add(new DuckDB.NET.Data.DuckDBParameter("route", "orders"));
        using var row = command.ExecuteReader();
        Assert.True(row.Read());
        Assert.Equal(3L, row.GetInt64(0));
        Assert.Equal(3L, row.GetInt64(1));
    }

    [Fact]
    public void Appenders_take_part_in_the_connections_transaction()
    {
        var database = new AnalyticsDatabase(Path.Combine(_dir, "t.duckdb"));
        using var connection = database.OpenConnection();
        using (var transaction = connection.BeginTransaction())
        {
            using (var appender = connection.CreateAppender(AnalyticsSchema.Rollups))
            {
                Portcullis.Analytics.AnalyticsRows.AppendRollup(appender, new RollupKey(new DateTime(2026, 12, 4, 12, 0, 0, DateTimeKind.Utc).Ticks, "r", null, null, null, 200, null), new RollupCell());
            }

            transaction.Rollback(); // as when the samples' appender fails after the rollups' one closed
        }

        using var command = connection.CreateCommand();
        command.CommandText = "SELECT count(*) FROM rollups";
        Assert.Equal(0L, Convert.ToInt64(command.ExecuteScalar()));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
