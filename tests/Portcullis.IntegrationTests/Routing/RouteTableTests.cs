using System.Diagnostics.Metrics;
using System.Net;
using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.Routing;
using Portcullis.Testing;

namespace Portcullis.IntegrationTests.Routing;

/// <summary>
/// Issue 20: the gateway's own route table (<see cref="RouteTable"/>) decides as ASP.NET Core's DFA matcher did,
/// shown side by side on generated configs (literal, prefix, template and catch-all paths, hosts and wildcards,
/// methods, header and query conditions, explicit orders) and generated requests against two real gateways, one
/// matching with the table and one with the DFA (PORTCULLIS_ROUTE_TABLE=off). Where the DFA strays from the
/// documented precedence (an exact host listed after a wildcard one), the table keeps to it.
/// </summary>
public sealed class RouteTableTests : IAsyncLifetime
{
    private readonly List<IAsyncDisposable> _disposables = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        for (var i = _disposables.Count - 1; i >= 0; i--) await _disposables[i].DisposeAsync();
    }

    private async Task<TestGateway> StartAsync(string yaml, bool routeTable)
    {
        var gateway = await TestGateway.StartAsync(yaml, configureServices: routeTable ? null
            : services => services.Replace(ServiceDescriptor.Singleton(new RouteMatcherSettings(UseRouteTable: false))));
        _disposables.Add(gateway);
        return gateway;
    }

    private static readonly string[] Vocabulary = ["a", "b", "api", "v1", "Orders", "x.y", "items"];
    private static readonly string[] Templates = ["/{0}/{{id:int}}", "/{0}/{{name}}.{{ext}}", "/{0}/{{id}}/items/{{**rest}}", "/{0}/{{id?}}", "/{{tenant}}/{0}", "/{0}/{{id:int:min(10)}}/x"];

    private static string GenerateConfig(Random random, int routes)
    {
        var yaml = new StringBuilder("routes:\n");
        for (var i = 0; i < routes; i++)
        {
            string Word() => Vocabulary[random.Next(Vocabulary.Length)];
            var match = new List<string>();
            var kind = random.Next(100);
            if (kind < 45) match.Add($"pathPrefix: \"/{Word()}{(random.Next(2) == 0 ? "/" + Word() : "")}\"");
            else if (kind < 70) match.Add($"path: \"/{string.Join('/', Enumerable.Range(0, 1 + random.Next(3)).Select(_ => Word()))}\"");
            else if (kind < 92) match.Add($"path: \"{string.Format(Templates[random.Next(Templates.Length)], Word())}\"");
            // else: no path, every path

            var hosts = random.Next(100);
            if (hosts < 12) match.Add("hosts: [a.test]");
            else if (hosts < 20) match.Add("hosts: [b.test, a.test]");
            else if (hosts < 28) match.Add("hosts: [\"*.w.test\"]");
            if (random.Next(100) < 30) match.Add($"methods: [{string.Join(", ", new[] { "GET", "POST", "PUT", "DELETE" }.Where(_ => random.Next(2) == 0).DefaultIfEmpty("GET"))}]");
            var header = random.Next(100);
            if (header < 6) match.Add("headers: [{ name: X-Tier, values: [gold], mode: exact }]");
            else if (header < 10) match.Add("headers: [{ name: X-Tier, values: [gol], mode: prefix }]");
            else if (header < 14) match.Add("headers: [{ name: X-Tier, mode: present }]");
            else if (header < 17) match.Add("headers: [{ name: X-Tier, mode: absent }]");
            if (random.Next(100) < 10) match.Add("query: [{ name: v, values: [\"2\"] }]");
            var order = random.Next(100) < 20 ? $", order: {random.Next(-3, 4)}" : "";
            yaml.Append($"  - {{ name: r{i}, match: {{ {string.Join(", ", match)} }}, respond: {{ status: 200, body: r{i} }}{order} }}\n");
        }

        return yaml.ToString();
    }

    private sealed record GeneratedRequest(string Method, string PathAndQuery, string? Host, string? Tier)
    {
        public HttpRequestMessage For(TestGateway gateway)
        {
            // Absolute: a relative "//x" would name a host.
            var request = new HttpRequestMessage(new HttpMethod(Method), new Uri(gateway.Url + PathAndQuery));
            if (Host is not null) request.Headers.Host = Host;
            if (Tier is not null) request.Headers.Add("X-Tier", Tier);
            return request;
        }

        public override string ToString() => $"{Method} {Host ?? "127.0.0.1"} {PathAndQuery} X-Tier={Tier}";
    }

    private static GeneratedRequest GenerateRequest(Random random)
    {
        string[] methods = ["GET", "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"];
        string[] extra = ["123", "7", "abc", "file.txt", "", "items"];
        var segments = Enumerable.Range(0, random.Next(5)).Select(_ => random.Next(3) == 0 ? extra[random.Next(extra.Length)] : Vocabulary[random.Next(Vocabulary.Length)]);
        var path = "/" + string.Join('/', segments);
        if (random.Next(4) == 0) path = path.ToUpperInvariant();
        if (random.Next(5) == 0) path += "/";
        var query = random.Next(4) switch { 0 => "?v=2", 1 => "?v=3", _ => "" };
        string?[] hosts = [null, "a.test", "A.Test", "b.test", "q.w.test", "r.s.w.test", "w.test", "c.test"];
        string?[] tiers = [null, "gold", "golden", "silver", "Gold"];
        return new GeneratedRequest(methods[random.Next(methods.Length)], path + query, hosts[random.Next(hosts.Length)], tiers[random.Next(tiers.Length)]);
    }

    private static async Task<string> AnswerAsync(HttpClient client, HttpRequestMessage request)
    {
        using (request)
        {
            using var response = await client.SendAsync(request);
            var body = await response.Content.ReadAsStringAsync();
            // A route's answer is its name; anything else is told apart by status (404: no route).
            return response.StatusCode == HttpStatusCode.OK ? $"200 {body}" : ((int)response.StatusCode).ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task The_route_table_chooses_the_route_the_DFA_matcher_chooses(int seed)
    {
        var random = new Random(seed);
        var yaml = GenerateConfig(random, routes: 120);
        var table = await StartAsync(yaml, routeTable: true);
        var dfa = await StartAsync(yaml, routeTable: false);
        var differences = new List<string>();
        var matched = 0;
        for (var i = 0; i < 500; i++)
        {
            var request = GenerateRequest(random);
            var (fromTable, fromDfa) = (await AnswerAsync(table.Client, request.For(table)), await AnswerAsync(dfa.Client, request.For(dfa)));
            if (fromTable.StartsWith("200", StringComparison.Ordinal)) matched++;
            if (fromTable != fromDfa) differences.Add($"{request}: table {fromTable}, DFA {fromDfa}");
        }

        Assert.True(differences.Count == 0, $"seed {seed}, config:\n{yaml}\n{string.Join('\n', differences)}");
        Assert.True(matched > 150, $"only {matched} of 500 requests matched a route: the generator no longer exercises the table");
    }

    [Fact]
    public async Task Routes_keep_their_order_where_an_exact_host_follows_a_wildcard()
    {
        // ASP.NET Core's matcher prefers an exact host to a wildcard whatever their order; the documented
        // precedence (first route whose conditions hold) takes the wildcard route listed first.
        const string yaml = """
            routes:
              - { name: tenants, match: { hosts: ["*.example.test"], pathPrefix: / }, respond: { body: tenants } }
              - { name: api, match: { hosts: [api.example.test], pathPrefix: / }, respond: { body: api } }
              - { name: ported, match: { hosts: ["other.test:8443"], pathPrefix: / }, respond: { body: ported } }
              - { name: other, match: { hosts: [other.test] }, respond: { body: other } }
            """;
        var gateway = await StartAsync(yaml, routeTable: true);
        async Task<string> BodyAsync(string host)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/x");
            request.Headers.Host = host;
            return await AnswerAsync(gateway.Client, request);
        }

        Assert.Equal("200 tenants", await BodyAsync("api.example.test"));
        Assert.Equal("200 tenants", await BodyAsync("API.example.test"));
        Assert.Equal("404", await BodyAsync("example.test"));
        Assert.Equal("200 other", await BodyAsync("other.test"));
        Assert.Equal("200 ported", await BodyAsync("other.test:8443"));
        Assert.Equal("200 other", await BodyAsync("other.test:8444"));
    }

    [Fact]
    public async Task A_reload_rebuilds_the_table_and_ASP_NET_Core_routing_never_matches()
    {
        // Routing's match counter (aspnetcore.routing.match_attempts) counts each request its own matcher
        // handled; with the table none reaches it. The routes' names are unique to this test, so other gateways
        // of the test run do not count here.
        var attempts = 0;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == "Microsoft.AspNetCore.Routing" && instrument.Name == "aspnetcore.routing.match_attempts") l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((_, _, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag.Key == "http.route" && tag.Value is string route && route.Contains("rt-probe", StringComparison.Ordinal)) Interlocked.Increment(ref attempts);
            }
        });
        listener.Start();

        var gateway = await StartAsync("""
            routes:
              - { name: one, match: { pathPrefix: /rt-probe/one }, respond: { body: one } }
              - { name: two, match: { pathPrefix: /rt-probe/two }, respond: { body: two } }
            """, routeTable: true);
        Assert.Equal("200 one", await AnswerAsync(gateway.Client, new HttpRequestMessage(HttpMethod.Get, "/rt-probe/one/x")));
        Assert.Equal("404", await AnswerAsync(gateway.Client, new HttpRequestMessage(HttpMethod.Get, "/rt-probe/three")));

        // A reload with nothing changed keeps serving; a one-route change applies at once.
        Assert.Equal(200, (await gateway.ReloadAsync()).Status);
        Assert.Equal("200 two", await AnswerAsync(gateway.Client, new HttpRequestMessage(HttpMethod.Get, "/rt-probe/two")));
        await gateway.WriteConfigAsync("""
            routes:
              - { name: one, match: { pathPrefix: /rt-probe/one }, respond: { body: one } }
              - { name: two, match: { pathPrefix: /rt-probe/three }, respond: { body: three } }
            """);
        Assert.Equal(200, (await gateway.ReloadAsync()).Status);
        Assert.Equal("200 three", await AnswerAsync(gateway.Client, new HttpRequestMessage(HttpMethod.Get, "/rt-probe/three/y")));
        Assert.Equal("404", await AnswerAsync(gateway.Client, new HttpRequestMessage(HttpMethod.Get, "/rt-probe/two")));
        Assert.Equal("200 one", await AnswerAsync(gateway.Client, new HttpRequestMessage(HttpMethod.Get, "/rt-probe/one")));
        Assert.Equal(0, Volatile.Read(ref attempts));

        // The same requests through ASP.NET Core's matcher are counted: the probe sees them when they happen.
        var dfa = await StartAsync("""
            routes:
              - { name: one, match: { pathPrefix: /rt-probe/one }, respond: { body: one } }
            """, routeTable: false);
        Assert.Equal("200 one", await AnswerAsync(dfa.Client, new HttpRequestMessage(HttpMethod.Get, "/rt-probe/one/x")));
        await Eventually.TrueAsync(() => Volatile.Read(ref attempts) > 0, "the DFA's match is counted");
    }
}
