using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Portcullis.Observability;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Analytics;

internal static class AnalyticsServices
{
    /// <summary>
    /// The analytics store, when the first snapshot sets analytics.path: the recorder on the request's
    /// completion, the background writer, the "analytics" readiness check and its metrics. Without a path
    /// nothing is registered (no completion hook, no thread, no file).
    /// </summary>
    public static IServiceCollection AddPortcullisAnalytics(this IServiceCollection services, GatewaySnapshot snapshot)
    {
        if (snapshot.Analytics is not { } analytics) return services;
        services.AddSingleton(new AnalyticsDatabase(analytics.Path));
        services.AddSingleton(new AnalyticsRecorder(analytics));
        services.AddSingleton<IRequestCompletionObserver>(sp => sp.GetRequiredService<AnalyticsRecorder>());
        services.AddSingleton<AnalyticsWriter>();
        services.AddHostedService(sp =>
        {
            var writer = sp.GetRequiredService<AnalyticsWriter>();
            AnalyticsMetrics.Register(sp.GetRequiredService<GatewayMetrics>().Meter, sp.GetRequiredService<AnalyticsRecorder>(), writer);
            return writer;
        });
        services.AddHealthChecks().AddCheck<AnalyticsHealthCheck>("analytics", tags: [Admin.AdminEndpoints.ReadyTag]);
        ParquetExportServices.AddParquetExport(services, analytics.ExportPath is { } exportPath ? new ParquetExportSettings(exportPath, analytics.ExportInstance!, analytics.FlushInterval, analytics.Retention) : null);
        return services;
    }
}

/// <summary>
/// Readiness detail of the store: degraded (the gateway stays ready and keeps proxying) while the store
/// cannot be written, with why; the description starts with "unhealthy" so the state is plain in /readyz.
/// </summary>
internal sealed class AnalyticsHealthCheck(AnalyticsWriter writer) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var health = writer.Health;
        if (!health.IsDown) return Task.FromResult(HealthCheckResult.Healthy(health.Opened ? null : "not opened yet"));
        return Task.FromResult(HealthCheckResult.Degraded($"unhealthy: the analytics store cannot be written since {health.Since:O}: {health.LastError} (requests are still proxied; retrying)"));
    }
}

/// <summary>The store's own instruments on the gateway's meter ("Portcullis"), observed when a reader collects.</summary>
internal static class AnalyticsMetrics
{
    public static void Register(Meter meter, AnalyticsRecorder recorder, AnalyticsWriter writer)
    {
        var flush = meter.CreateHistogram("portcullis.analytics.flush.duration", "s", "Time one successful flush of rollups and samples into the analytics store took.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] });
        writer.FlushTimed = seconds => flush.Record(seconds);
        meter.CreateObservableCounter("portcullis.analytics.rows_flushed", () => (IEnumerable<Measurement<long>>)
        [
            new(writer.RollupRowsFlushed, new KeyValuePair<string, object?>("table", AnalyticsSchema.Rollups)),
            new(writer.SampleRowsFlushed, new KeyValuePair<string, object?>("table", AnalyticsSchema.Samples)),
            new(writer.ArrivalRowsFlushed, new KeyValuePair<string, object?>("table", AnalyticsSchema.Arrivals)),
        ], "{row}", "Rows written to the analytics store, by table.");
        meter.CreateObservableCounter("portcullis.analytics.dropped", () => (IEnumerable<Measurement<long>>)
        [
            new(recorder.SamplesDropped + writer.PendingSamplesDropped, new KeyValuePair<string, object?>("kind", "samples")),
            new(writer.RollupsDropped, new KeyValuePair<string, object?>("kind", "rollups")),
            new(recorder.Rollups.Overflowed, new KeyValuePair<string, object?>("kind", "overflow")),
            new(recorder.Arrivals.Dropped + writer.ArrivalsDropped, new KeyValuePair<string, object?>("kind", "arrivals")),
        ], "{item}", "What analytics did not keep: samples (queue full, or the store failing for long), rollups (rows lost while the store failed for long), overflow (requests counted in their minute's overflow row: too many distinct rows), arrivals (per-second arrivals the advisor did not get: too many distinct rows, or the store failing for long).");
        meter.CreateObservableGauge("portcullis.analytics.file.size", () => writer.FileSize, "By", "Size of the analytics store file and its WAL, as of the last flush.");
        meter.CreateObservableGauge("portcullis.analytics.up", () => writer.Health.IsDown ? 0 : 1, "{store}", "1 while the analytics store is written normally, 0 while it cannot be written.");
    }
}
