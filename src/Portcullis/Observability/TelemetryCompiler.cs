using System.Globalization;
using Portcullis.Configuration;

namespace Portcullis.Observability;

/// <summary>Validation of observability.metrics and observability.tracing (both read at start).</summary>
internal static class TelemetryCompiler
{
    private static readonly string[] AdminPaths = ["/healthz", "/readyz"];

    internal static void Validate(CompileContext context, MetricsOptions metrics, TracingOptions tracing)
    {
        const string metricsPath = "observability.metrics.path";
        if (string.IsNullOrWhiteSpace(metrics.Path) || metrics.Path[0] != '/' || metrics.Path.Contains('?') || metrics.Path.Contains('#'))
        {
            context.Error(metricsPath, $"path must be an absolute path such as /metrics (it is '{metrics.Path}')", "e.g. path: /metrics");
        }
        else if (metrics.Path.StartsWith("/admin/", StringComparison.Ordinal) || Array.IndexOf(AdminPaths, metrics.Path) >= 0)
        {
            context.Error(metricsPath, $"'{metrics.Path}' is taken by the admin API", "e.g. path: /metrics");
        }

        const string tracingPath = "observability.tracing";
        if (!string.IsNullOrEmpty(tracing.OtlpEndpoint)
            && (!Uri.TryCreate(tracing.OtlpEndpoint, UriKind.Absolute, out var endpoint) || endpoint.Scheme is not ("http" or "https")))
        {
            context.Error(tracingPath + ".otlpEndpoint", $"otlpEndpoint must be an http:// or https:// address (it is '{tracing.OtlpEndpoint}')", "e.g. otlpEndpoint: http://otel-collector:4317");
        }

        if (double.IsNaN(tracing.SampleRatio) || tracing.SampleRatio is < 0 or > 1)
        {
            context.Error(tracingPath + ".sampleRatio", $"sampleRatio must be between 0 and 1 (it is {tracing.SampleRatio.ToString(CultureInfo.InvariantCulture)})", "1 records every trace, 0.1 one in ten");
        }

        if (string.IsNullOrWhiteSpace(tracing.ServiceName)) context.Error(tracingPath + ".serviceName", "serviceName cannot be empty", "e.g. serviceName: portcullis");
    }
}
