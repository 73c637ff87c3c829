using Portcullis.Analytics;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.Testing;
using static Portcullis.IntegrationTests.Analytics.AnalyticsTestSupport;

namespace Portcullis.IntegrationTests.Analytics;

/// <summary>analytics.export wired into the gateway: an hour closed before start is exported by the service, and /readyz shows the export's check.</summary>
public sealed class AnalyticsExportWiringTests
{
    [Fact]
    public async Task A_closed_hour_in_the_store_is_exported_at_start_and_readyz_shows_the_export()
    {
        var dir = Directory.CreateTempSubdirectory("scratch-export-").FullName;
        await using var upstream = await TestUpstream.StartAsync("orders");
        var db = Path.Combine(dir, "analytics.duckdb");
        var hour = DateTime.UtcNow.AddHours(-3);
        hour = new DateTime(hour.Year, hour.Month, hour.Day, hour.Hour, 0, 0, DateTimeKind.Utc);
        using (var c = new AnalyticsDatabase(db).OpenConnection())
        using (var a = c.CreateAppender(AnalyticsSchema.Rollups))
        {
            a.CreateRow().AppendValue(hour.AddMinutes(5)).AppendValue("orders").AppendValue("orders").AppendValue((string?)null).AppendValue((string?)null)
                .AppendValue((short)200).AppendValue((string?)null).AppendValue(7L).AppendValue(1L).AppendValue(2L).AppendValue(3L).AppendValue(0L)
                .AppendValue(new List<short> { 100 }).AppendValue(new List<long> { 7 }).AppendValue(new List<short>()).AppendValue(new List<long>()).EndRow();
        }
        var exports = Path.Combine(dir, "exports");
        var config = ConfigFor(db, upstream.Url).Replace("  samples: { successRate: 1 }\n", $"  samples: {{ successRate: 1 }}\n  export: {{ path: \"{exports}\", instance: it-1 }}\n", StringComparison.Ordinal);
        Assert.Contains("export:", config, StringComparison.Ordinal);
        await using var gateway = await TestGateway.StartAsync(config, new Dictionary<string, string> { ["keys.yaml"] = "consumers: {}\n" });
        var file = Path.Combine(exports, $"dt={hour:yyyy-MM-dd}", $"hour={hour:HH}", "instance=it-1", "rollups.parquet");
        await Eventually.TrueAsync(() => File.Exists(file), "exported");
        // The file is renamed into place before the exporter records its progress: wait for the status too.
        var ready = "";
        await Eventually.TrueAsync(async () => (ready = await gateway.Admin.GetStringAsync("/readyz")).Contains("exported up to", StringComparison.Ordinal),
            "/readyz reports the export", context: () => Task.FromResult(ready));
        Assert.Contains("analyticsExport", ready, StringComparison.Ordinal);
        await gateway.DisposeAsync();
        Directory.Delete(dir, recursive: true);
    }
}
