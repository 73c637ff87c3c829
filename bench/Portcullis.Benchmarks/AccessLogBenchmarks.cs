using System.Diagnostics;
using System.Security.Authentication;
using BenchmarkDotNet.Attributes;
using Portcullis.Configuration;
using Portcullis.Observability;
using Portcullis.Pipeline;

namespace Portcullis.Benchmarks;

/// <summary>
/// Formatting one access-log line (every field, the stages object, a redacted query) into the writer's
/// reused buffer, as the background writer does for each queued entry. Target: 0 B allocated per line.
/// Runs off the request path; the request thread only copies the entry into the bounded channel.
/// </summary>
[MemoryDiagnoser]
public class AccessLogBenchmarks : IDisposable
{
    private readonly AccessLogFormatter _formatter = new();
    private AccessLogEntry _entry;
    private AccessLogEntry _minimal;

    [GlobalCleanup]
    public void Dispose()
    {
        _formatter.Dispose();
        GC.SuppressFinalize(this);
    }

    [GlobalSetup]
    public void Setup()
    {
        var all = new CompiledAccessLog { Target = AccessLogTarget.Stdout };
        _entry = new AccessLogEntry
        {
            Options = all,
            Time = DateTimeOffset.UtcNow,
            RequestId = ActivityTraceId.CreateRandom().ToHexString(),
            TraceId = ActivityTraceId.CreateRandom(),
            SpanId = ActivitySpanId.CreateRandom(),
            Listener = "public",
            Method = "GET",
            Scheme = "https",
            Host = "api.example.com",
            Path = "/orders/42/items",
            Query = "?page=2&limit=50&access_token=secret",
            Protocol = "HTTP/2",
            Status = 200,
            Route = "orders",
            Cluster = "orders-v1",
            Destination = "http://10.0.0.5:8080/",
            Attempts = 1,
            BytesIn = 0,
            BytesOut = 1834,
            Total = TimeSpan.FromMicroseconds(1834),
            Identity = TimeSpan.FromMicroseconds(21),
            Traffic = TimeSpan.FromMicroseconds(3),
            Upstream = TimeSpan.FromMicroseconds(1650),
            ClientIp = "203.0.113.7",
            UserAgent = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
            Tls = SslProtocols.Tls13,
            Sni = "api.example.com",
            Consumer = "acme",
            Auth = AuthOutcome.Allowed,
            AuthReason = "jwt.valid",
            RouteHasTraffic = true,
            TrafficDecision = "admitted",
            UpstreamStatus = 200,
        };
        _minimal = _entry;
        _minimal.Options = new CompiledAccessLog { Target = AccessLogTarget.Stdout, Fields = AccessLogFields.Time | AccessLogFields.RequestId | AccessLogFields.Status | AccessLogFields.Path | AccessLogFields.TotalMs };
        _formatter.Append(_entry);
        _formatter.Clear();
    }

    [Benchmark(Baseline = true)]
    public int FormatEveryField()
    {
        _formatter.Append(_entry);
        var length = _formatter.Length;
        _formatter.Clear();
        return length;
    }

    [Benchmark]
    public int FormatFiveFields()
    {
        _formatter.Append(_minimal);
        var length = _formatter.Length;
        _formatter.Clear();
        return length;
    }
}
