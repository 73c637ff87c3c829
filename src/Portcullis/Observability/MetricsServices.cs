using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Observability;

internal static class MetricsServices
{
    /// <summary>
    /// Metrics (meter "Portcullis" read by the Prometheus exporter, served on the admin listener) and traces
    /// (ActivitySource "Portcullis", exported by OTLP only when an endpoint is configured), as the first
    /// snapshot says: both are set up once, at start.
    /// </summary>
    public static IServiceCollection AddPortcullisTelemetry(this IServiceCollection services, GatewaySnapshot snapshot)
    {
        services.TryAddSingleton<GatewayMetrics>();
        services.TryAddSingleton<GatewayTracing>();
        services.TryAddSingleton<MetricsEndpoint>();

        var options = snapshot.Config.Observability;
        var telemetry = services.AddOpenTelemetry();
        if (options.Metrics.Enabled)
        {
            telemetry.WithMetrics(metrics =>
            {
                metrics.AddMeter(GatewayMetrics.MeterName);
                // Meters are matched by name process-wide: keep only this host's (several gateways can share
                // a process, e.g. tests or an app hosting two), whose meter comes from this container's factory.
                ((IDeferredMeterProviderBuilder)metrics).Configure((sp, builder) =>
                {
                    var factory = sp.GetService<IMeterFactory>();
                    builder.AddView(instrument =>
                        instrument.Meter.Name == GatewayMetrics.MeterName && !ReferenceEquals(instrument.Meter.Scope, factory) ? MetricStreamConfiguration.Drop : null);
                });
                // Scrapes read current values (the exporter caches a scrape for 300 ms by default).
                metrics.AddPrometheusExporter(prometheus => prometheus.ScrapeResponseCacheDurationMilliseconds = 0);
            });
        }

        if (!string.IsNullOrEmpty(options.Tracing.OtlpEndpoint) && Uri.TryCreate(options.Tracing.OtlpEndpoint, UriKind.Absolute, out var endpoint))
        {
            var tracing = options.Tracing;
            var http = endpoint.Port == 4318 || endpoint.AbsolutePath.EndsWith("/v1/traces", StringComparison.Ordinal);
            if (http && !endpoint.AbsolutePath.EndsWith("/v1/traces", StringComparison.Ordinal)) endpoint = new Uri(endpoint, "/v1/traces");
            telemetry.WithTracing(traces => traces
                .ConfigureResource(resource => resource.AddService(tracing.ServiceName))
                .AddSource(GatewayTracing.SourceName)
                .SetSampler(new ParentBasedSampler(new TraceIdRatioBasedSampler(tracing.SampleRatio)))
                .AddOtlpExporter(otlp =>
                {
                    otlp.Endpoint = endpoint;
                    otlp.Protocol = http ? OtlpExportProtocol.HttpProtobuf : OtlpExportProtocol.Grpc;
                }));
        }

        return services;
    }
}
