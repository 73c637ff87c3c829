using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Observability;

/// <summary>
/// One request id and one trace from the client through the gateway to the upstream and back: the
/// upstream echoes what it received, the client reads the response header, the access log ties both.
/// </summary>
[Collection(ActivityListenerCollection.Name)]
public sealed class RequestIdAndTraceTests : IAsyncLifetime
{
    private TestUpstream _upstream = null!;

    public async Task InitializeAsync() => _upstream = await TestUpstream.StartAsync("api");

    public async Task DisposeAsync() => await _upstream.DisposeAsync();

    private Task<TestGateway> StartAsync(string trustedProxies, string trustInbound = "trustedProxies") => TestGateway.StartAsync($$"""
        trustedProxies: [{{trustedProxies}}]
        routes:
          - { name: api, match: { pathPrefix: /api }, cluster: api }
        clusters:
          api: { destinations: ["{{_upstream.Url}}"] }
        observability:
          requestId: { trustInbound: {{trustInbound}} }
          accessLog: { enabled: true, target: file, path: access.log }
        """);

    private static async Task<(string ResponseId, UpstreamAnswer Upstream, JsonElement Line)> SendAsync(TestGateway gateway, string path, params (string Name, string Value)[] headers)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        foreach (var (name, value) in headers) request.Headers.TryAddWithoutValidation(name, value);
        using var response = await gateway.Client.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var id = AccessLogFile.RequestId(response);
        var answer = await UpstreamAnswer.ReadAsync(response);
        var line = await AccessLogFile.LineAsync(Path.Combine(gateway.Directory, "access.log"), id);
        return (id, answer, line);
    }

    [Fact]
    public async Task A_minted_request_id_reaches_the_upstream_the_client_the_log_and_problem_bodies()
    {
        await using var gateway = await StartAsync("10.99.0.0/16");
        var (id, upstream, line) = await SendAsync(gateway, "/api/a");
        Assert.Matches("^[0-9a-f]{32}$", id);
        Assert.Equal(id, upstream.Header("X-Request-Id"));
        Assert.Equal(id, line.GetProperty("requestId").GetString());

        // Gateway answers (here a 404 problem) carry it in the header and the body.
        using var missing = await gateway.Client.GetAsync("/nowhere");
        var problemId = AccessLogFile.RequestId(missing);
        var body = JsonDocument.Parse(await missing.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(problemId, body.GetProperty("requestId").GetString());
        Assert.NotEqual(id, problemId);
        var problemLine = await AccessLogFile.LineAsync(Path.Combine(gateway.Directory, "access.log"), problemId);
        Assert.Equal(404, problemLine.GetProperty("status").GetInt32());
        Assert.Equal("route.unmatched", problemLine.GetProperty("reason").GetString());
        Assert.Equal("unmatched", problemLine.GetProperty("stages").GetProperty("route").GetProperty("result").GetString());
    }

    [Fact]
    public async Task An_inbound_request_id_from_an_untrusted_peer_is_replaced()
    {
        await using var gateway = await StartAsync("10.99.0.0/16");
        var (id, upstream, line) = await SendAsync(gateway, "/api/a", ("X-Request-Id", "client-chosen-id"));
        Assert.NotEqual("client-chosen-id", id);
        Assert.Equal(id, upstream.Header("X-Request-Id"));
        Assert.Equal(id, line.GetProperty("requestId").GetString());
    }

    [Fact]
    public async Task An_inbound_request_id_from_a_trusted_proxy_is_kept_unless_invalid()
    {
        await using var gateway = await StartAsync("127.0.0.1/32");
        var (id, upstream, line) = await SendAsync(gateway, "/api/a", ("X-Request-Id", "edge-lb:4711/a+b=c@d_e.f"));
        Assert.Equal("edge-lb:4711/a+b=c@d_e.f", id);
        Assert.Equal(id, upstream.Header("X-Request-Id"));
        Assert.Equal(id, line.GetProperty("requestId").GetString());

        var (tooLong, upstreamLong, _) = await SendAsync(gateway, "/api/a", ("X-Request-Id", new string('a', 129)));
        Assert.Matches("^[0-9a-f]{32}$", tooLong);
        Assert.Equal(tooLong, upstreamLong.Header("X-Request-Id"));

        var (badChars, _, _) = await SendAsync(gateway, "/api/a", ("X-Request-Id", "has space\"quote"));
        Assert.Matches("^[0-9a-f]{32}$", badChars);
    }

    [Fact]
    public async Task TrustInbound_always_and_never_override_the_peer_check()
    {
        await using (var always = await StartAsync("10.99.0.0/16", "always"))
        {
            var (id, _, _) = await SendAsync(always, "/api/a", ("X-Request-Id", "from-anyone"));
            Assert.Equal("from-anyone", id);
        }

        await using var never = await StartAsync("127.0.0.1/32", "never");
        var (minted, upstream, _) = await SendAsync(never, "/api/a", ("X-Request-Id", "from-a-proxy"));
        Assert.NotEqual("from-a-proxy", minted);
        Assert.Equal(minted, upstream.Header("X-Request-Id")); // the refused one never travels on
    }

    [Fact]
    public async Task An_inbound_traceparent_continues_upstream_with_the_gateway_as_parent()
    {
        await using var gateway = await StartAsync("10.99.0.0/16");
        var traceId = ActivityTraceId.CreateRandom().ToHexString();
        var clientSpan = ActivitySpanId.CreateRandom().ToHexString();
        var (_, upstream, line) = await SendAsync(gateway, "/api/a", ("traceparent", $"00-{traceId}-{clientSpan}-01"), ("tracestate", "vendor=abc"));

        Assert.True(ActivityContext.TryParse(upstream.Header("traceparent"), upstream.Header("tracestate"), out var sent), upstream.Header("traceparent"));
        Assert.Equal(traceId, sent.TraceId.ToHexString());
        Assert.NotEqual(clientSpan, sent.SpanId.ToHexString());
        Assert.Equal(ActivityTraceFlags.Recorded, sent.TraceFlags);
        Assert.Equal("vendor=abc", upstream.Header("tracestate"));
        Assert.Equal(traceId, line.GetProperty("traceId").GetString());
        Assert.Equal(sent.SpanId.ToHexString(), line.GetProperty("spanId").GetString());
    }

    [Fact]
    public async Task Without_a_valid_traceparent_the_gateway_starts_a_trace()
    {
        await using var gateway = await StartAsync("10.99.0.0/16");
        foreach (var inbound in (string?[])[null, "00-not-a-valid-traceparent-01", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"])
        {
            var (_, upstream, line) = inbound is null ? await SendAsync(gateway, "/api/a") : await SendAsync(gateway, "/api/a", ("traceparent", inbound));
            Assert.True(ActivityContext.TryParse(upstream.Header("traceparent"), null, out var sent), upstream.Header("traceparent"));
            Assert.Equal(line.GetProperty("traceId").GetString(), sent.TraceId.ToHexString());
            Assert.Equal(line.GetProperty("spanId").GetString(), sent.SpanId.ToHexString());
            Assert.NotEqual("00000000000000000000000000000000", sent.TraceId.ToHexString());
            Assert.DoesNotContain(",", upstream.Header("traceparent")!, StringComparison.Ordinal); // exactly one traceparent upstream
        }
    }
}
