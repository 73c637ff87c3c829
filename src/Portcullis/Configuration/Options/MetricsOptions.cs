using System.ComponentModel;

namespace Portcullis.Configuration;

internal sealed record MetricsOptions
{
    [Description("Record the gateway's metrics (meter `Portcullis`) and serve them on the admin listener. Read at start. Default true.")]
    public bool Enabled { get; init; } = true;

    [Description("Path of the Prometheus scrape endpoint on the admin listener. Default /metrics.")]
    public string Path { get; init; } = "/metrics";
}
