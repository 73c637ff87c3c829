using System.Diagnostics;
using BenchmarkDotNet.Attributes;
using Microsoft.AspNetCore.Http;
using Portcullis.Analytics;
using Portcullis.Configuration;
using Portcullis.Identity;
using Portcullis.Pipeline;

namespace Portcullis.Benchmarks;

/// <summary>
/// The analytics record step on the request's completion (AnalyticsRecorder.Completed): the request added
/// to its minute's rollup row (striped per core, Interlocked counters, sketch bucket), no sample (a success
/// at successRate 0). Target: 0 B allocated per request for a row that exists. The second benchmark adds the
/// advisor's arrivals step for an anonymous caller (keyed by its address) that reached the traffic stage.
/// </summary>
[MemoryDiagnoser]
public class AnalyticsRecordBenchmarks : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("portcullis-bench-analytics-");
    private AnalyticsRecorder _recorder = null!;
    private HttpContext _context = null!;
    private GatewayFeature _gateway = null!;
    private HttpContext _anonymousContext = null!;
    private GatewayFeature _anonymousGateway = null!;

    [GlobalSetup]
    public void Setup()
    {
        var path = Path.Combine(_dir.FullName, "portcullis.yaml");
        File.WriteAllText(path, """
            listeners: [{ name: public, address: "127.0.0.1:8080" }]
            analytics: { path: a.duckdb, samples: { successRate: 0 } }
            routes: [{ name: orders, match: { path: "/orders/{id}" }, cluster: api }]
            clusters: { api: { destinations: ["http://127.0.0.1:9"] } }
            """);
        var snapshot = new SnapshotBuilder(_ => null).Build(path).Snapshot ?? throw new InvalidOperationException("config");
        _recorder = new AnalyticsRecorder(snapshot.Analytics!);
        var context = new DefaultHttpContext();
        context.Request.Method = "GET";
        context.Request.Path = "/orders/42";
        context.Response.StatusCode = 200;
        context.Response.ContentLength = 1834;
        _gateway = new GatewayFeature(snapshot)
        {
            RouteName = "orders",
            ClusterName = "api",
            StartedAt = DateTimeOffset.UtcNow,
            Caller = new CallerIdentity { Kind = CredentialKind.ApiKey, Source = "apikey", Consumer = "shop", ConsumerGroup = "premium" },
        };
        _gateway.Times.Start = 1;
        _gateway.Times.UpstreamStart = 1 + (Stopwatch.Frequency / 10_000);
        _gateway.Times.UpstreamEnd = 1 + (Stopwatch.Frequency / 1000);
        _gateway.Times.End = 1 + (Stopwatch.Frequency * 18 / 10_000);
        context.Features.Set(_gateway);
        _context = context;
        for (var i = 0; i < 1000; i++) _recorder.Completed(_context, _gateway); // the row exists

        var anonymous = new DefaultHttpContext();
        anonymous.Request.Method = "GET";
        anonymous.Request.Path = "/orders/42";
        anonymous.Response.StatusCode = 200;
        anonymous.Response.ContentLength = 1834;
        anonymous.Connection.RemoteIpAddress = System.Net.IPAddress.Parse("203.0.113.7");
        var gateway = new GatewayFeature(snapshot) { RouteName = "orders", ClusterName = "api", StartedAt = _gateway.StartedAt, TrafficReached = true };
        gateway.Times.Start = _gateway.Times.Start;
        gateway.Times.End = _gateway.Times.End;
        anonymous.Features.Set(gateway);
        _anonymousContext = anonymous;
        _anonymousGateway = gateway;
        for (var i = 0; i < 1000; i++) _recorder.Completed(_anonymousContext, gateway);
    }

    [Benchmark]
    public void RecordExistingRow() => _recorder.Completed(_context, _gateway);

    [Benchmark]
    public void RecordExistingRowWithAnonymousArrival() => _recorder.Completed(_anonymousContext, _anonymousGateway);

    [GlobalCleanup]
    public void Dispose()
    {
        _dir.Delete(recursive: true);
        GC.SuppressFinalize(this);
    }
}
