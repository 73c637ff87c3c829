using System.ComponentModel;

namespace Portcullis.Configuration;

internal sealed record TracingOptions
{
    [Description("OTLP collector address, e.g. http://otel-collector:4317 (gRPC) or http://otel-collector:4318 (HTTP/protobuf: port 4318 or a /v1/traces path). Empty (default): no exporter. Read at start.")]
    public string? OtlpEndpoint { get; init; }

    [Description("Share of new traces recorded, 0 to 1; an inbound traceparent's sampled flag is followed. Read at start. Default 1.")]
    public double SampleRatio { get; init; } = 1.0;

    [Description("service.name of the exported spans. Read at start. Default portcullis.")]
    public string ServiceName { get; init; } = "portcullis";
}
