using System.Collections.Frozen;
using Portcullis.Configuration;

namespace Portcullis.Observability;

/// <summary>Access-log fields, in the order they are written.</summary>
[Flags]
internal enum AccessLogFields : long
{
    None = 0,
    Time = 1L << 0,
    RequestId = 1L << 1,
    TraceId = 1L << 2,
    SpanId = 1L << 3,
    Listener = 1L << 4,
    Method = 1L << 5,
    Scheme = 1L << 6,
    Host = 1L << 7,
    Path = 1L << 8,
    Query = 1L << 9,
    Protocol = 1L << 10,
    Status = 1L << 11,
    Route = 1L << 12,
    Cluster = 1L << 13,
    Destination = 1L << 14,
    Attempts = 1L << 15,
    BytesIn = 1L << 16,
    BytesOut = 1L << 17,
    TotalMs = 1L << 18,
    IdentityMs = 1L << 19,
    TrafficMs = 1L << 20,
    UpstreamMs = 1L << 21,
    ClientIp = 1L << 22,
    UserAgent = 1L << 23,
    TlsVersion = 1L << 24,
    Sni = 1L << 25,
    Consumer = 1L << 26,
    Auth = 1L << 27,
    AuthReason = 1L << 28,
    RateLimit = 1L << 29,
    Reason = 1L << 30,
    Stages = 1L << 31,
    All = (1L << 32) - 1,
}

internal static class AccessLogFieldNames
{
    /// <summary>Config name of every field, in output order.</summary>
    public static readonly (string Name, AccessLogFields Field)[] All =
    [
        ("time", AccessLogFields.Time),
        ("requestId", AccessLogFields.RequestId),
        ("traceId", AccessLogFields.TraceId),
        ("spanId", AccessLogFields.SpanId),
        ("listener", AccessLogFields.Listener),
        ("method", AccessLogFields.Method),
        ("scheme", AccessLogFields.Scheme),
        ("host", AccessLogFields.Host),
        ("path", AccessLogFields.Path),
        ("query", AccessLogFields.Query),
        ("protocol", AccessLogFields.Protocol),
        ("status", AccessLogFields.Status),
        ("route", AccessLogFields.Route),
        ("cluster", AccessLogFields.Cluster),
        ("destination", AccessLogFields.Destination),
        ("attempts", AccessLogFields.Attempts),
        ("bytesIn", AccessLogFields.BytesIn),
        ("bytesOut", AccessLogFields.BytesOut),
        ("totalMs", AccessLogFields.TotalMs),
        ("identityMs", AccessLogFields.IdentityMs),
        ("trafficMs", AccessLogFields.TrafficMs),
        ("upstreamMs", AccessLogFields.UpstreamMs),
        ("clientIp", AccessLogFields.ClientIp),
        ("userAgent", AccessLogFields.UserAgent),
        ("tlsVersion", AccessLogFields.TlsVersion),
        ("sni", AccessLogFields.Sni),
        ("consumer", AccessLogFields.Consumer),
        ("auth", AccessLogFields.Auth),
        ("authReason", AccessLogFields.AuthReason),
        ("rateLimit", AccessLogFields.RateLimit),
        ("reason", AccessLogFields.Reason),
        ("stages", AccessLogFields.Stages),
    ];

    public static readonly FrozenDictionary<string, AccessLogFields> ByName =
        All.ToFrozenDictionary(f => f.Name, f => f.Field, StringComparer.Ordinal);
}

/// <summary>The observability section of one snapshot, validated and compiled.</summary>
internal sealed class CompiledObservability
{
    public static readonly CompiledObservability Default = new() { RequestIdTrust = RequestIdTrust.TrustedProxies, AccessLog = null };

    public required RequestIdTrust RequestIdTrust { get; init; }

    /// <summary>Null when the access log is off.</summary>
    public required CompiledAccessLog? AccessLog { get; init; }

    /// <summary>Null when the audit log is off (no `observability.audit.path`).</summary>
    public CompiledAudit? Audit { get; init; }
}

internal sealed class CompiledAccessLog
{
    /// <summary>Query parameters whose values are never written, whatever `redactQuery` says.</summary>
    public static readonly string[] SecretParameters =
        ["access_token", "id_token", "refresh_token", "token", "api_key", "apikey", "api-key", "key", "password", "passwd", "secret", "client_secret", "code", "signature", "sig", "x-api-key"];

    public required AccessLogTarget Target { get; init; }

    /// <summary>Full path of the log file (target: file).</summary>
    public string? Path { get; init; }

    public long MaxSize { get; init; } = 100L << 20;

    public int MaxFiles { get; init; } = 5;

    public AccessLogFields Fields { get; init; } = AccessLogFields.All;

    /// <summary>1.0 logs every success; 0 none.</summary>
    public double SampleSuccesses { get; init; } = 1.0;

    public bool RedactQuery { get; init; } = true;

    public int QueueSize { get; init; } = 10_000;

    public TimeSpan FlushInterval { get; init; } = TimeSpan.FromMilliseconds(20);

    /// <summary>Parameters redacted even with redactQuery: false (the secret list plus the API-key query parameter).</summary>
    public FrozenSet<string> AlwaysRedacted
    {
        get;
        init
        {
            field = value;
            _lookup = value.GetAlternateLookup<ReadOnlySpan<char>>();
        }
    } = DefaultRedacted;

    private static readonly FrozenSet<string> DefaultRedacted = SecretParameters.ToFrozenSet(StringComparer.OrdinalIgnoreCase);

    private FrozenSet<string>.AlternateLookup<ReadOnlySpan<char>> _lookup = DefaultRedacted.GetAlternateLookup<ReadOnlySpan<char>>();

    /// <summary>A parameter name (as written in the query, percent-encoded or not) whose value is never logged.</summary>
    public bool IsSecretParameter(ReadOnlySpan<char> name)
    {
        if (_lookup.Contains(name)) return true;
        // Rare: an encoded name (api%5Fkey, api+key) is compared decoded.
        return (name.Contains('%') || name.Contains('+')) && AlwaysRedacted.Contains(Uri.UnescapeDataString(name.ToString().Replace('+', ' ')));
    }

    /// <summary>True when both write to the same place the same way (the writer keeps its sink across reloads).</summary>
    public bool SameSink(CompiledAccessLog other) =>
        Target == other.Target && string.Equals(Path, other.Path, StringComparison.Ordinal) && MaxSize == other.MaxSize && MaxFiles == other.MaxFiles;
}
