using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Portcullis.Configuration;
using Portcullis.Observability;
using Portcullis.Pipeline;

namespace Portcullis.Tests.Observability;

public sealed class MetricsInstrumentsTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("portcullis-metrics-tests-");
    private readonly ServiceProvider _services = new ServiceCollection().BuildServiceProvider();

    public void Dispose()
    {
        _services.Dispose();
        _dir.Delete(recursive: true);
    }

    private GatewaySnapshot Snapshot()
    {
        var path = Path.Combine(_dir.FullName, "portcullis.yaml");
        File.WriteAllText(path, """
            listeners:
              - { name: public, address: "127.0.0.1:8080" }
            routes:
              - { name: orders, match: { pathPrefix: /orders }, cluster: api }
            clusters:
              api: { destinations: ["http://127.0.0.1:9"] }
            """);
        var result = new SnapshotBuilder(_ => null).Build(path);
        Assert.True(result.Succeeded, string.Join("\n", result.Diagnostics));
        return result.Snapshot!;
    }

    // The stages' typed decisions, as the identity and traffic stages record them.
    private static (DefaultHttpContext Context, GatewayFeature Gateway) Request(GatewaySnapshot snapshot, int status, string? authReason = null, string? traffic = null)
    {
        var context = new DefaultHttpContext();
        context.Connection.LocalPort = 8080;
        context.Response.StatusCode = status;
        var gateway = new GatewayFeature(snapshot) { RouteName = "orders" };
        if (ReasonCodes.Find(authReason) is { } auth) gateway.Auth = new AuthDecision(AuthResult.Unauthenticated, AuthMethod.Jwt, auth);
        if (ReasonCodes.Find(traffic) is { } decision)
        {
            var result = decision.Status == 0 ? TrafficResult.FailOpen : TrafficResult.Refused;
            gateway.Traffic = new TrafficDecision(result, decision, "per-consumer");
        }

        gateway.Times.Start = Stopwatch.GetTimestamp() - Stopwatch.Frequency / 100; // 10 ms ago
        gateway.Times.End = Stopwatch.GetTimestamp();
        context.Features.Set(gateway);
        return (context, gateway);
    }

    [Fact]
    public void WithoutListener_NothingIsEnabled_AndRecordingAllocatesNothing()
    {
        using var metrics = new GatewayMetrics(_services);
        Assert.False(metrics.AnyRequestInstrumentEnabled);
        var (context, gateway) = Request(Snapshot(), 401, "auth.missing", "ratelimit.exceeded");

        metrics.RequestCompleted(context, gateway); // warm up
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 1000; i++) metrics.RequestCompleted(context, gateway);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void WithListener_RequestsAreRecordedOnce_WithBoundedTags()
    {
        using var metrics = new GatewayMetrics(_services);
        var measurements = new List<(string Name, double Value, Dictionary<string, object?> Tags)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (ReferenceEquals(instrument.Meter, metrics.Meter)) l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => measurements.Add((instrument.Name, value, ToDictionary(tags))));
        listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => measurements.Add((instrument.Name, value, ToDictionary(tags))));
        listener.Start();
        Assert.True(metrics.AnyRequestInstrumentEnabled);

        var snapshot = Snapshot();
        var (ok, okGateway) = Request(snapshot, 200);
        metrics.RequestCompleted(ok, okGateway);
        var (denied, deniedGateway) = Request(snapshot, 401, "jwt.expired");
        metrics.RequestCompleted(denied, deniedGateway);
        var (limited, limitedGateway) = Request(snapshot, 429, traffic: "ratelimit.exceeded");
        metrics.RequestCompleted(limited, limitedGateway);
        var (open, openGateway) = Request(snapshot, 200, traffic: "ratelimit.store-unavailable.open");
        metrics.RequestCompleted(open, openGateway);

        var requests = measurements.Where(m => m.Name == "portcullis.requests").ToList();
        Assert.Equal(4, requests.Count);
        Assert.All(requests, r => Assert.Equal(["listener", "route", "status_class"], r.Tags.Keys.Order()));
        Assert.Equal(["2xx", "4xx", "4xx", "2xx"], requests.Select(r => (string)r.Tags["status_class"]!));
        Assert.All(requests, r => Assert.Equal("public", r.Tags["listener"]));
        var durations = measurements.Where(m => m.Name == "portcullis.request.duration").ToList();
        Assert.Equal(4, durations.Count);
        Assert.All(durations, d => Assert.InRange(d.Value, 0.005, 5));

        var auth = Assert.Single(measurements, m => m.Name == "portcullis.auth.failures");
        Assert.Equal("jwt.expired", auth.Tags["reason"]);
        var rejection = Assert.Single(measurements, m => m.Name == "portcullis.traffic.rejections");
        Assert.Equal("ratelimit.exceeded", rejection.Tags["decision"]);
        Assert.DoesNotContain(measurements, m => m.Name == "portcullis.upstream.duration");
    }

    /// <summary>Store-failure decisions are told apart by the traffic stage's typed result, not by the code's spelling.</summary>
    [Fact]
    public void StoreFailureDecisions_AreCountedByTheirTypedResult()
    {
        using var metrics = new GatewayMetrics(_services);
        var counted = new List<(string Name, string? Decision)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (ReferenceEquals(instrument.Meter, metrics.Meter) && instrument.Name.StartsWith("portcullis.traffic.", StringComparison.Ordinal)) l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((instrument, _, tags, _) => counted.Add((instrument.Name, (string?)ToDictionary(tags)["decision"])));
        listener.Start();

        var snapshot = Snapshot();
        foreach (var (result, code) in new[]
        {
            (TrafficResult.Admitted, ReasonCodes.Admitted),
            (TrafficResult.FailOpen, ReasonCodes.QuotaStoreUnavailableOpen),
            (TrafficResult.FallbackAdmitted, ReasonCodes.RateLimitStoreUnavailableLocal),
            (TrafficResult.FallbackRefused, ReasonCodes.RateLimitStoreUnavailableLocalExceeded),
            (TrafficResult.StoreUnavailableRefused, ReasonCodes.QuotaStoreUnavailable),
            (TrafficResult.Refused, ReasonCodes.ConcurrencyLimit),
        })
        {
            var (context, gateway) = Request(snapshot, code.Status == 0 ? 200 : code.Status);
            gateway.Traffic = new TrafficDecision(result, code, "p");
            metrics.RequestCompleted(context, gateway);
        }

        Assert.Equal(
            ["quota.store-unavailable.open", "ratelimit.store-unavailable.local", "ratelimit.store-unavailable.local-exceeded", "quota.store-unavailable"],
            counted.Where(c => c.Name == "portcullis.traffic.store_unavailable").Select(c => c.Decision));
        Assert.Equal(
            ["ratelimit.store-unavailable.local-exceeded", "quota.store-unavailable", "concurrency.limit"],
            counted.Where(c => c.Name == "portcullis.traffic.rejections").Select(c => c.Decision));
    }

    [Fact]
    public void SessionStoreRefusals_AndUpstreamRetries_AreCountedWithRouteAndDecision()
    {
        using var metrics = new GatewayMetrics(_services);
        var measurements = new List<(string Name, long Value, Dictionary<string, object?> Tags)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (ReferenceEquals(instrument.Meter, metrics.Meter) && instrument.Name is "portcullis.session.store_unavailable" or "portcullis.upstream.retries") l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => measurements.Add((instrument.Name, value, ToDictionary(tags))));
        listener.Start();
        Assert.True(metrics.AnyRequestInstrumentEnabled);

        var snapshot = Snapshot();
        var (refused, refusedGateway) = Request(snapshot, 503, "session.store-unavailable");
        refusedGateway.SessionStoreDecision = "session-check.refused";
        metrics.RequestCompleted(refused, refusedGateway);
        var (ok, okGateway) = Request(snapshot, 200);
        metrics.RequestCompleted(ok, okGateway);
        metrics.UpstreamRetried("orders", "api", "reset-before-response");

        var session = Assert.Single(measurements, m => m.Name == "portcullis.session.store_unavailable");
        Assert.Equal(1, session.Value);
        Assert.Equal(["decision", "route"], session.Tags.Keys.Order());
        Assert.Equal("orders", session.Tags["route"]);
        Assert.Equal("session-check.refused", session.Tags["decision"]);
        var retry = Assert.Single(measurements, m => m.Name == "portcullis.upstream.retries");
        Assert.Equal(["cluster", "reason", "route"], retry.Tags.Keys.Order());
        Assert.Equal("reset-before-response", retry.Tags["reason"]);
    }

    [Fact]
    public void LatencyBuckets_AreAdvisedToTheHistograms()
    {
        using var metrics = new GatewayMetrics(_services);
        Histogram<double>? histogram = null;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, _) =>
        {
            if (ReferenceEquals(instrument.Meter, metrics.Meter) && instrument.Name == "portcullis.request.duration") histogram = (Histogram<double>)instrument;
        };
        listener.Start();
        Assert.NotNull(histogram);
        Assert.Equal(GatewayMetrics.LatencyBuckets, histogram.Advice!.HistogramBucketBoundaries);
        Assert.Equal("s", histogram.Unit);
    }

    private static Dictionary<string, object?> ToDictionary(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var result = new Dictionary<string, object?>();
        foreach (var tag in tags) result[tag.Key] = tag.Value;
        return result;
    }
}
