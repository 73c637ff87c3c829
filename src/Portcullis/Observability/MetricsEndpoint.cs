using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Metrics;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Observability;

/// <summary>
/// The Prometheus scrape endpoint on the admin listener (observability.metrics.path). The path follows
/// reloads, so the admin listener's catch-all endpoint asks <see cref="Matches"/> rather than mapping it; the
/// exporter's own middleware (OpenTelemetry.Exporter.Prometheus.AspNetCore) runs in a one-middleware
/// pipeline built here and invoked for that path; the exposition format is
/// entirely the exporter's. Like every admin path it is reached only after admin.auth let the scrape in
/// (read scope, or the path listed in admin.auth.open).
/// </summary>
internal sealed class MetricsEndpoint
{
    private readonly SnapshotStore _store;
    private readonly RequestDelegate? _exporter;

    public MetricsEndpoint(SnapshotStore store, IServiceProvider services)
    {
        _store = store;
        // Metrics are set up at start; without them (metrics.enabled: false) the path answers 404 like any unknown one.
        if (store.Current.Config.Observability.Metrics.Enabled && services.GetService<MeterProvider>() is { } provider)
        {
            var pipeline = new ApplicationBuilder(services);
            pipeline.UseOpenTelemetryPrometheusScrapingEndpoint(provider, static _ => true, path: null, configureBranchedPipeline: null, optionsName: null);
            _exporter = pipeline.Build();
        }
    }

    /// <summary>True when the request is a scrape this endpoint answers.</summary>
    public bool Matches(HttpContext context) =>
        _exporter is not null
        && (HttpMethods.IsGet(context.Request.Method) || HttpMethods.IsHead(context.Request.Method))
        && string.Equals(context.Request.Path.Value, _store.Current.Config.Observability.Metrics.Path, StringComparison.Ordinal);

    public Task HandleAsync(HttpContext context)
    {
        context.Response.Headers.CacheControl = "no-store";
        return _exporter!(context);
    }
}
