using System.Globalization;
using System.Text;
using Microsoft.AspNetCore.Http;
using Portcullis.Identity;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Advice.Evaluation;

/// <summary>What an upstream does now, changed by the incidents while traffic runs.</summary>
internal sealed class UpstreamBehaviour
{
    /// <summary>Share of ordinary requests answered 503 (the failing-upstream incident).</summary>
    public volatile float FailShare;

    /// <summary>Added to every answer's delay (the creeping-latency incident).</summary>
    public volatile float ExtraDelayMs;
}

/// <summary>
/// The gateway under evaluation (the in-process host the integration tests use, analytics and the advisor on) and
/// its real upstreams on 127.0.0.1: one per cluster (two for orders, three for inventory, one of which flaps), each
/// answering after a log-normal delay, 404 for `missing-` ids and 500 for `boom-` ids.
/// </summary>
internal sealed class EvaluationGateway : IAsyncDisposable
{
    public const string ScannerClient = "203.0.113.50";
    public const string StuffingClient = "198.51.100.23";

    private readonly List<TestUpstream> _upstreams = [];

    private EvaluationGateway(TestGateway gateway, Dictionary<string, string> keys, string expiredKey)
    {
        Gateway = gateway;
        Keys = keys;
        ExpiredKey = expiredKey;
    }

    public TestGateway Gateway { get; }

    /// <summary>API key per consumer name.</summary>
    public Dictionary<string, string> Keys { get; }

    public string ExpiredKey { get; }

    public Dictionary<string, UpstreamBehaviour> Behaviour { get; } = [];

    /// <summary>The flapping destination (inventory's second) and its URL.</summary>
    public TestUpstream Flapper { get; private set; } = null!;

    public string Yaml { get; private set; } = "";

    public static async Task<EvaluationGateway> StartAsync(TrafficModel model, string storePath, TimeSpan interval)
    {
        var now = DateTimeOffset.UtcNow;
        var keys = new Dictionary<string, string>();
        var file = new StringBuilder("consumers:\n");
        string expiredKey = "";
        foreach (var consumer in model.Consumers)
        {
            var expired = consumer.Name == "c-expired";
            var (key, record) = expired ? ApiKeyGenerator.Create(now.AddDays(-30), expires: now.AddDays(-1)) : ApiKeyGenerator.Create(now.AddDays(-30));
            if (expired) expiredKey = key;
            else keys[consumer.Name] = key;
            file.Append(CultureInfo.InvariantCulture, $"  {consumer.Name}:\n    group: {consumer.Group}\n    keys:\n    - id: {record.Id}\n      sha256: {record.Sha256}\n      created: {record.Created:yyyy-MM-ddTHH:mm:ssZ}\n");
            if (record.Expires is { } e) file.Append(CultureInfo.InvariantCulture, $"      expires: {e:yyyy-MM-ddTHH:mm:ssZ}\n");
        }

        var clusters = new StringBuilder();
        var evaluation = new List<TestUpstream>();
        var behaviours = new Dictionary<string, UpstreamBehaviour>();
        TestUpstream? flapper = null;
        foreach (var route in TrafficModel.Routes)
        {
            var behaviour = behaviours[route.Cluster] = new UpstreamBehaviour();
            var count = route.Cluster switch { "orders" => 2, "inventory" => 3, _ => 1 };
            var destinations = new List<string>();
            for (var i = 0; i < count; i++)
            {
                var upstream = await TestUpstream.StartAsync($"{route.Cluster}-{(char)('a' + i)}");
                upstream.Handler = Handler(route, behaviour);
                evaluation.Add(upstream);
                destinations.Add($"{{ name: {upstream.Name}, address: \"{upstream.Url}\" }}");
                if (route.Cluster == "inventory" && i == 1) flapper = upstream;
            }

            var health = route.Cluster == "inventory"
                ? "active: { path: /healthz, interval: 1s, timeout: 1s, unhealthyThreshold: 1, healthyThreshold: 1 }"
                : "active: { path: /healthz, interval: 5s, timeout: 2s }";
            var timeouts = route.Cluster == "catalog" ? "\n    timeouts: { request: 2s }" : "";
            clusters.Append(CultureInfo.InvariantCulture, $"  {route.Cluster}:\n    destinations: [{string.Join(", ", destinations)}]\n    healthCheck: {{ {health} }}{timeouts}\n");
        }

        var yaml = Config(storePath, interval, clusters.ToString(), tightReports: false);
        var gateway = await TestGateway.StartAsync(yaml, new Dictionary<string, string> { ["keys.yaml"] = file.ToString() });
        var result = new EvaluationGateway(gateway, keys, expiredKey) { Flapper = flapper!, Yaml = yaml };
        result._upstreams.AddRange(evaluation);
        foreach (var (name, behaviour) in behaviours) result.Behaviour[name] = behaviour;
        result._clusters = clusters.ToString();
        result._storePath = storePath;
        result._interval = interval;
        return result;
    }

    private string _clusters = "";
    private string _storePath = "";
    private TimeSpan _interval;

    /// <summary>The too-tight-limit incident: an operator deploys 2 per minute per consumer on route reports (a reload).</summary>
    public async Task TightenReportsAsync()
    {
        var generation = Gateway.Generation;
        await Gateway.WriteConfigAsync(Config(_storePath, _interval, _clusters, tightReports: true));
        await Gateway.WaitForGenerationAsync(generation, TimeSpan.FromSeconds(30));
    }

    private static string Config(string storePath, TimeSpan interval, string clusters, bool tightReports)
    {
        var routes = new StringBuilder();
        foreach (var route in TrafficModel.Routes)
        {
            var auth = route.Auth ? "\n    auth: { apiKey: true }" : "";
            // Anonymous catalog has no consumer-keyed limit (its key part would always be absent).
            var limits = !route.Auth ? "" : route.Name == "reports" && tightReports ? "\n    rateLimits: [reports-tight]" : "\n    rateLimits: [per-consumer]";
            routes.Append(CultureInfo.InvariantCulture, $"  - name: {route.Name}\n    match: {{ pathPrefix: {route.Prefix} }}{auth}\n    cluster: {route.Cluster}{limits}\n");
        }

        var tight = tightReports ? "\n  reports-tight: { key: [consumer], limit: 2, per: 1m }" : "";
        return $$"""
            trustedProxies: [127.0.0.1]
            identity:
              apiKeys: { file: keys.yaml }
            analytics:
              path: "{{storePath}}"
            advice:
              interval: {{(int)interval.TotalSeconds}}s
            rateLimits:
              per-consumer: { key: [consumer], limit: 50, per: 1s, burst: 100 }{{tight}}
            routes:
            {{routes.ToString().TrimEnd()}}
            clusters:
            {{clusters.TrimEnd()}}
            """;
    }

    private static Func<HttpContext, Task> Handler(EvalRoute route, UpstreamBehaviour behaviour) => async context =>
    {
        var random = Random.Shared;
        var delay = TrafficModel.LatencyMs(route, random) + behaviour.ExtraDelayMs;
        await Task.Delay(TimeSpan.FromMilliseconds(delay), context.RequestAborted);
        var path = context.Request.Path.Value ?? "";
        if (behaviour.FailShare > 0 && random.NextDouble() < behaviour.FailShare) context.Response.StatusCode = 503;
        else if (path.Contains("/missing-", StringComparison.Ordinal)) context.Response.StatusCode = 404;
        else if (path.Contains("/boom-", StringComparison.Ordinal)) context.Response.StatusCode = 500;
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync("{\"ok\":true}");
    };

    public async ValueTask DisposeAsync()
    {
        await Gateway.DisposeAsync();
        foreach (var upstream in _upstreams) await upstream.DisposeAsync();
    }
}
