using System.ComponentModel;

namespace Portcullis.Configuration;

internal enum RequestIdTrust
{
    /// <summary>Keep a valid inbound request id from any client.</summary>
    Always,

    /// <summary>Keep a valid inbound request id only from a peer listed in `trustedProxies` (the default).</summary>
    TrustedProxies,

    /// <summary>Always mint a new request id.</summary>
    Never,
}

internal enum AccessLogTarget
{
    /// <summary>One JSON line per request on standard output.</summary>
    Stdout,

    /// <summary>One JSON line per request appended to `path`, rotated by size.</summary>
    File,
}

internal sealed record ObservabilityOptions
{
    [Description("Request ids: which inbound X-Request-Id values are kept.")]
    public RequestIdOptions RequestId { get; init; } = new();

    [Description("The JSON access log: one line per request, written off the request path.")]
    public AccessLogOptions AccessLog { get; init; } = new();

    [Description("OpenTelemetry metrics, scraped in the Prometheus format from the admin listener.")]
    public MetricsOptions Metrics { get; init; } = new();

    [Description("OpenTelemetry traces: spans for the request and its stages, exported by OTLP.")]
    public TracingOptions Tracing { get; init; } = new();

    [Description("The tamper-evident audit log: denials, admin actions and config changes as hash-chained JSON lines. Off unless `path` is set.")]
    public AuditOptions Audit { get; init; } = new();
}

internal sealed record RequestIdOptions
{
    [Description("Whose X-Request-Id is kept (when valid: 1-128 characters of A-Z a-z 0-9 - _ . : / + = @): always, trustedProxies (default; peers in `trustedProxies`) or never (always mint one).")]
    public RequestIdTrust TrustInbound { get; init; } = RequestIdTrust.TrustedProxies;
}

internal sealed record AccessLogOptions
{
    [Description("Write the access log. Default false (the `portcullis run` quickstart turns it on).")]
    public bool Enabled { get; init; }

    [Description("stdout (default) or file (`path`, rotated by `maxSize`).")]
    public AccessLogTarget Target { get; init; } = AccessLogTarget.Stdout;

    [Description("target: file: the log file, relative to the config file. Rotated files get .1, .2, ... suffixes.")]
    [FilePath]
    public string? Path { get; init; }

    [Description("target: file: rotate when the file would grow beyond this size. Default 100MiB.")]
    public ByteSize MaxSize { get; init; } = ByteSize.FromMiB(100);

    [Description("target: file: rotated files kept besides the current one. Default 5.")]
    public int MaxFiles { get; init; } = 5;

    [Description("Fields written, in the documented order; empty (default) writes every field.")]
    public IReadOnlyList<string> Fields { get; init; } = [];

    [Description("Fields left out (applied after `fields`).")]
    public IReadOnlyList<string> Exclude { get; init; } = [];

    [Description("Share of successful (1xx-3xx) requests logged, 0 to 1. Errors and other statuses are always logged. Default 1.")]
    public double SampleSuccesses { get; init; } = 1.0;

    [Description("Replace query parameter values with `*` (names are kept). Credentials-like parameters are always redacted. Default true.")]
    public bool RedactQuery { get; init; } = true;

    [Description("Lines queued for the background writer; beyond it lines are dropped and counted, requests never wait. Default 10000.")]
    public int QueueSize { get; init; } = 10_000;

    [Description("How long lines gather before the writer writes them in one batch (sooner once the queue is half full). 0 writes as soon as a line is queued. Default 20ms.")]
    public TimeSpan FlushInterval { get; init; } = TimeSpan.FromMilliseconds(20);
}
