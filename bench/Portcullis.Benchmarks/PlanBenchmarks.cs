using BenchmarkDotNet.Attributes;
using Microsoft.AspNetCore.Http;
using Portcullis.Configuration;
using Portcullis.Identity;
using Portcullis.Pipeline;
using Portcullis.Traffic;

namespace Portcullis.Benchmarks;

/// <summary>
/// Choosing a request's plan (RoutePlans.Select), as the traffic stage does per request on a route plans
/// apply to: by consumer group (a span lookup in the route's frozen plan table) and through a map lookup
/// (${map:tiers(consumerGroup)}), from a snapshot compiled by the real SnapshotBuilder. Issue 19 asks for no
/// allocation here; the limits the plan names then cost what RateLimitBenchmarks measures.
/// </summary>
[MemoryDiagnoser]
public class PlanBenchmarks : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("portcullis-bench-plans-");
    private RoutePlans _byGroup = null!;
    private RoutePlans _byMap = null!;
    private HttpRequest _request = null!;

    private const string Config = """
        listeners: [{ name: public, address: "127.0.0.1:8080" }]
        rateLimits:
          free: { limit: 60, per: 1m }
          pro: { limit: 600, per: 1m }
          enterprise: { limit: 100, per: 1s }
        maps: { tiers: { entries: { premium: enterprise, customers: pro }, default: free } }
        plans:
          free: { rateLimits: [free], routes: [orders] }
          pro: { rateLimits: [pro] }
          enterprise: { rateLimits: [enterprise] }
        routes: [{ name: orders, match: { pathPrefix: /orders }, cluster: api }]
        clusters: { api: { destinations: ["http://127.0.0.1:9"] } }

        """;

    [GlobalSetup]
    public void Setup()
    {
        _byGroup = Compile("plan: { from: consumerGroup, default: free }");
        _byMap = Compile("plan: { from: \"${map:tiers(consumerGroup)}\" }");
        var context = new DefaultHttpContext();
        context.Request.Path = "/orders/42";
        var gateway = new GatewayFeature(new SnapshotBuilder(_ => null).Build(Path.Combine(_dir.FullName, "portcullis.yaml")).Snapshot!)
        {
            RouteName = "orders",
            Caller = new CallerIdentity { Kind = CredentialKind.ApiKey, Source = "apikey", Consumer = "shop", ConsumerGroup = "premium" },
        };
        context.Features.Set(gateway);
        _request = context.Request;
        if (ByGroup() is not null) throw new InvalidOperationException("group 'premium' is no plan: expected the default");
        if (ByMap() != "enterprise") throw new InvalidOperationException("the map should give enterprise");
        gateway.Caller = new CallerIdentity { Kind = CredentialKind.ApiKey, Source = "apikey", Consumer = "shop", ConsumerGroup = "enterprise" };
        if (ByGroup() != "enterprise") throw new InvalidOperationException("the group should give enterprise");
    }

    private RoutePlans Compile(string selection)
    {
        var path = Path.Combine(_dir.FullName, "portcullis.yaml");
        File.WriteAllText(path, Config + selection);
        var snapshot = new SnapshotBuilder(_ => null).Build(path).Snapshot ?? throw new InvalidOperationException("config");
        return snapshot.Routes["orders"].Plans!;
    }

    // The default plan is "free" when the group names no plan; returns null then so Setup can check the branch.
    [Benchmark]
    public string? ByGroup() => _byGroup.Select(_request) is { Name: var name } && name != "free" ? name : null;

    [Benchmark]
    public string? ByMap() => _byMap.Select(_request)?.Name;

    public void Dispose()
    {
        _dir.Delete(recursive: true);
        GC.SuppressFinalize(this);
    }
}
