using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Observability;

/// <summary>Spans of the "Portcullis" source seen by an in-process listener: request → identity, traffic, upstream.</summary>
[Collection(ActivityListenerCollection.Name)]
public sealed class TracingSpansTests : IAsyncLifetime
{
    private const string Issuer = "https://issuer.test/";
    private readonly TokenFactory _tokens = new(Issuer, "orders-api");
    private readonly ConcurrentBag<Activity> _stopped = [];
    private ActivityListener _listener = null!;
    private TestUpstream _upstream = null!;
    private TestGateway _gateway = null!;

    public async Task InitializeAsync()
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == "Portcullis",
            Sample = static (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = _stopped.Add,
        };
        ActivitySource.AddActivityListener(_listener);
        _upstream = await TestUpstream.StartAsync("t7-api");
        _gateway = await TestGateway.StartAsync($$"""
            identity:
              issuers:
                - { name: t7corp, jwksFile: jwks.json, issuer: "{{Issuer}}", audiences: [orders-api] }
            rateLimits:
              t7-many: { key: ip, limit: 1000, per: 1m }
            routes:
              - { name: t7-route, match: { pathPrefix: /t7 }, auth: { issuers: [t7corp] }, rateLimits: [t7-many], cluster: t7-api }
            clusters:
              t7-api: { destinations: ["{{_upstream.Url}}"] }
            """, new Dictionary<string, string> { ["jwks.json"] = _tokens.JwksJson() });
    }

    public async Task DisposeAsync()
    {
        _listener.Dispose();
        await _gateway.DisposeAsync();
        await _upstream.DisposeAsync();
        _tokens.Dispose();
    }

    [Fact]
    public async Task StageSpans_AreChildrenOfTheRequestSpan_AndTheUpstreamsParentIsTheUpstreamSpan()
    {
        var traceId = ActivityTraceId.CreateRandom();
        var clientSpan = ActivitySpanId.CreateRandom();
        using var request = new HttpRequestMessage(HttpMethod.Get, "/t7/x");
        request.Headers.TryAddWithoutValidation("traceparent", $"00-{traceId}-{clientSpan}-01");
        request.Headers.Authorization = new("Bearer", _tokens.Create());
        using var response = await _gateway.Client.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var answer = (await response.Content.ReadFromJsonAsync<UpstreamAnswer>())!;

        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        List<Activity> spans;
        while (true)
        {
            spans = _stopped.Where(a => a.TraceId == traceId).ToList();
            if (spans.Any(a => a.OperationName == "portcullis.request") || DateTime.UtcNow > deadline) break;
            await Task.Delay(20);
        }

        var root = Assert.Single(spans, a => a.OperationName == "portcullis.request");
        Assert.Equal(clientSpan, root.ParentSpanId); // continues the client's trace
        Assert.Equal(ActivityKind.Server, root.Kind);
        Assert.Equal("GET t7-route", root.DisplayName);
        Assert.Equal(200, root.GetTagItem("http.response.status_code"));

        var identity = Assert.Single(spans, a => a.OperationName == "portcullis.identity");
        var traffic = Assert.Single(spans, a => a.OperationName == "portcullis.traffic");
        var upstream = Assert.Single(spans, a => a.OperationName == "portcullis.upstream");
        foreach (var child in new[] { identity, traffic, upstream }) Assert.Equal(root.SpanId, child.ParentSpanId);
        Assert.Equal(ActivityKind.Client, upstream.Kind);
        Assert.Equal("t7-api", upstream.GetTagItem("portcullis.cluster"));
        Assert.Equal(200, upstream.GetTagItem("http.response.status_code"));
        Assert.Equal("admitted", traffic.GetTagItem("portcullis.result"));
        Assert.Equal("jwt.valid", identity.GetTagItem("portcullis.result"));

        // Stages sit inside the request span, in order.
        Assert.True(identity.StartTimeUtc >= root.StartTimeUtc);
        Assert.True(traffic.StartTimeUtc >= identity.StartTimeUtc);
        Assert.True(upstream.StartTimeUtc + upstream.Duration <= root.StartTimeUtc + root.Duration);

        // What the upstream received: same trace, parent = the upstream span, sampled.
        Assert.Equal($"00-{traceId}-{upstream.SpanId}-01", answer.Headers["traceparent"]);
    }

    [Fact]
    public async Task WithoutSampling_NoSpanIsMade_AndTheUpstreamParentIsStillTheGatewaySpan()
    {
        // A trace the listener refuses: the parent says not sampled and the listener follows it.
        _listener.Sample = static (ref ActivityCreationOptions<ActivityContext> options) =>
            (options.Parent.TraceFlags & ActivityTraceFlags.Recorded) != 0 ? ActivitySamplingResult.AllDataAndRecorded : ActivitySamplingResult.None;
        var traceId = ActivityTraceId.CreateRandom();
        using var request = new HttpRequestMessage(HttpMethod.Get, "/t7/y");
        request.Headers.TryAddWithoutValidation("traceparent", $"00-{traceId}-{ActivitySpanId.CreateRandom()}-00");
        request.Headers.Authorization = new("Bearer", _tokens.Create());
        using var response = await _gateway.Client.SendAsync(request);
        var answer = (await response.Content.ReadFromJsonAsync<UpstreamAnswer>())!;
        Assert.StartsWith($"00-{traceId}-", answer.Headers["traceparent"]);
        Assert.EndsWith("-00", answer.Headers["traceparent"]);
        await Task.Delay(200);
        Assert.DoesNotContain(_stopped, a => a.TraceId == traceId);
    }
}
