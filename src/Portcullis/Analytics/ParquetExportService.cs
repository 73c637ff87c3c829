using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Portcullis.Analytics;

/// <summary>
/// Runs the export at start (catching up what closed while the gateway was down), then each time an hour
/// closes; while it fails, every retry interval.
/// </summary>
internal sealed class ParquetExportService(ParquetExporter exporter, TimeProvider time) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Off the host's start-up path: a catch-up of many hours must not delay listening.
        await Task.Yield();
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                // The next close is computed from the time the run started: an hour that closed during the run
                // is exported right away rather than an hour later.
                var started = time.GetUtcNow();
                exporter.ExportClosedHours(stoppingToken);
                var wait = exporter.Health.Failing ? exporter.Settings.RetryInterval : exporter.NextClose(started) - time.GetUtcNow();
                if (wait > TimeSpan.Zero) await Task.Delay(wait, time, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }
}

/// <summary>Readiness of the Parquet export: degraded while writing to the export folder (or reading the store) fails.</summary>
internal sealed class ParquetExportHealthCheck(ParquetExporter exporter) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var health = exporter.Health;
        return Task.FromResult(health.Failing
            ? HealthCheckResult.Degraded($"analytics export to {exporter.Settings.Path} failing since {health.Since:O}: {health.Error}")
            : HealthCheckResult.Healthy(health.LastHour is { } hour ? $"exported up to {hour:yyyy-MM-dd HH}:00" : "nothing exported yet"));
    }
}

/// <summary>Registration of the export, called by the analytics wiring when analytics.export is set.</summary>
internal static class ParquetExportServices
{
    /// <summary>
    /// The exporter, its background service and its readiness check ("analyticsExport"); nothing when
    /// <paramref name="settings"/> is null. Needs <see cref="AnalyticsDatabase"/> and TimeProvider registered.
    /// </summary>
    public static IServiceCollection AddParquetExport(IServiceCollection services, ParquetExportSettings? settings)
    {
        if (settings is null) return services;
        services.AddSingleton(sp => new ParquetExporter(sp.GetRequiredService<AnalyticsDatabase>(), settings,
            sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<ParquetExporter>>()));
        services.AddHostedService<ParquetExportService>();
        services.AddHealthChecks().AddCheck<ParquetExportHealthCheck>("analyticsExport", tags: [Admin.AdminEndpoints.ReadyTag]);
        return services;
    }
}
