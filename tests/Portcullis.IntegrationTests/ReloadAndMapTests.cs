using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.RegularExpressions;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests;

/// <summary>
/// Map-driven routing and hot reload, end to end over real sockets: a real gateway in front of real
/// Kestrel upstreams, config and map files rewritten on disk while requests are flowing.
/// </summary>
public sealed class ReloadAndMapTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    private const string OrdersRoute = """
        routes:
          - name: orders
            cluster: "${map:versions(header:Api-Version,segment:1)}"
            requestHeaders:
              set:
                X-Orders-Cluster: "via-${map:versions(header:Api-Version,segment:1)}"

        """;

    // 1. Maps: exact (header, then path segment, then default), prefix (longest wins) and regex (first
    //    matching line wins, case-insensitive), used for the cluster and for request headers.
    [Fact]
    public async Task Maps_ChooseClusterByHeaderOrSegment_AndSetHeadersWithExactPrefixAndRegexMaps()
    {
        await using var v1 = await TestUpstream.StartAsync("v1");
        await using var v2 = await TestUpstream.StartAsync("v2");
        await using var gateway = await TestGateway.StartAsync($$"""
            maps:
              versions:
                file: versions.map
                default: orders-v1
              tiers:
                file: tiers.map
                kind: prefix
                default: basic
              agents:
                file: agents.map
                kind: regex
                ignoreCase: true
            routes:
              - name: orders
                cluster: "${map:versions(header:Api-Version,segment:1)}"
                requestHeaders:
                  set:
                    X-Orders-Cluster: "via-${map:versions(header:Api-Version,segment:1)}"
                    X-Tier: "${map:tiers(path)}"
                    X-Agent-Class: "${map:agents(header:User-Agent)}"
            clusters:
              orders-v1: { destinations: [{{v1.Url}}] }
              orders-v2: { destinations: [{{v2.Url}}] }
            """,
            new Dictionary<string, string>
            {
                ["versions.map"] = "# API version -> cluster\n1   orders-v1\n2   orders-v2\n\nv1  orders-v1\nv2\torders-v2\n",
                // Shorter prefix first: the longest matching prefix must still win.
                ["tiers.map"] = "/v2/orders      gold\n/v2/orders/vip  platinum\n/v1              silver\n",
                // 'curl/8' matches lines 1 and 3: the first matching line wins.
                ["agents.map"] = "^curl/   cli\nbot      crawler\ncurl     curl-like\n",
            });

        // By header (exact map).
        var answer = await GetAsync(gateway, "/orders/1", ("Api-Version", "2"));
        Assert.Equal("v2", answer.Server);
        Assert.Equal("/orders/1", answer.Path);
        Assert.Equal("via-orders-v2", answer.Header("X-Orders-Cluster"));
        Assert.Equal("v1", (await GetAsync(gateway, "/orders/1", ("Api-Version", "1"))).Server);

        // Unknown and absent header: the map's default.
        answer = await GetAsync(gateway, "/orders/1", ("Api-Version", "7"));
        Assert.Equal("v1", answer.Server);
        Assert.Equal("via-orders-v1", answer.Header("X-Orders-Cluster"));
        answer = await GetAsync(gateway, "/orders/1");
        Assert.Equal("v1", answer.Server);
        Assert.Equal("via-orders-v1", answer.Header("X-Orders-Cluster"));

        // By path segment when the header is absent; a present header is looked up first (even if unknown).
        answer = await GetAsync(gateway, "/v2/orders/1");
        Assert.Equal("v2", answer.Server);
        Assert.Equal("/v2/orders/1", answer.Path);
        Assert.Equal("via-orders-v2", answer.Header("X-Orders-Cluster"));
        Assert.Equal("v1", (await GetAsync(gateway, "/v1/orders/1")).Server);
        Assert.Equal("v1", (await GetAsync(gateway, "/v2/orders/1", ("Api-Version", "7"))).Server);
        Assert.Equal("v2", (await GetAsync(gateway, "/v1/orders/1", ("Api-Version", "2"))).Server);

        // Prefix map: longest matching prefix wins regardless of file order; no match gives the default.
        Assert.Equal("gold", (await GetAsync(gateway, "/v2/orders/1")).Header("X-Tier"));
        Assert.Equal("platinum", (await GetAsync(gateway, "/v2/orders/vip/9")).Header("X-Tier"));
        Assert.Equal("silver", (await GetAsync(gateway, "/v1/orders/1")).Header("X-Tier"));
        Assert.Equal("basic", (await GetAsync(gateway, "/orders/1")).Header("X-Tier"));

        // Regex map: first matching line wins, ignoreCase applies, no match and no default leaves the header
        // unset (a client-sent value is not passed through).
        Assert.Equal("cli", (await GetAsync(gateway, "/orders/1", ("User-Agent", "curl/8.4.0"))).Header("X-Agent-Class"));
        Assert.Equal("cli", (await GetAsync(gateway, "/orders/1", ("User-Agent", "CURL/7.1"))).Header("X-Agent-Class"));
        Assert.Equal("crawler", (await GetAsync(gateway, "/orders/1", ("User-Agent", "Googlebot/2.1"))).Header("X-Agent-Class"));
        Assert.Equal("curl-like", (await GetAsync(gateway, "/orders/1", ("User-Agent", "libcurl-agent/1.0"))).Header("X-Agent-Class"));
        answer = await GetAsync(gateway, "/orders/1", ("User-Agent", "Mozilla/5.0"), ("X-Agent-Class", "spoofed"));
        Assert.Null(answer.Header("X-Agent-Class"));
        Assert.Equal("basic", answer.Header("X-Tier"));

        Assert.True(v1.Requests > 0 && v2.Requests > 0);
    }

    // 2. A map file edited while running is picked up by the file watch; an invalid edit is rejected whole.
    [Fact]
    public async Task MapFile_EditedWhileRunning_TakesEffect_AndInvalidEditIsRejectedWithFileLineColumn()
    {
        await using var v1 = await TestUpstream.StartAsync("v1");
        await using var v2 = await TestUpstream.StartAsync("v2");
        await using var gateway = await TestGateway.StartAsync($$"""
            maps:
              versions: { file: versions.map, default: orders-v1 }
            {{OrdersRoute}}
            clusters:
              orders-v1: { destinations: [{{v1.Url}}] }
              orders-v2: { destinations: [{{v2.Url}}] }
            """,
            new Dictionary<string, string> { ["versions.map"] = "1 orders-v1\n2 orders-v2\n" });
        var mapPath = Path.Combine(gateway.Directory, "versions.map");

        Assert.Equal("v1", (await GetAsync(gateway, "/orders/1", ("Api-Version", "3"))).Server);
        Assert.Equal("v2", (await GetAsync(gateway, "/orders/1", ("Api-Version", "2"))).Server);

        // Valid edit: version 3 now goes to orders-v2. No admin call, no restart: only the file watch.
        var generation = gateway.Generation;
        await gateway.WriteFileAsync("versions.map", "1 orders-v1\n2 orders-v2\n3 orders-v2\n");
        await Eventually.TrueAsync(async () => (await GetAsync(gateway, "/orders/1", ("Api-Version", "3"))).Server == "v2", "Api-Version: 3 to reach orders-v2 after the map file edit", context: gateway.LogDump());
        Assert.True(gateway.Generation > generation);
        var last = await GetJsonAsync(gateway.Admin, "/admin/reload");
        Assert.True(last.GetProperty("applied").GetBoolean());
        Assert.Equal("file change", last.GetProperty("trigger").GetString());

        // Invalid edit: line 3 has a key and no value (indented, so the column is 3). Line 2 also changes;
        // nothing of the file may be applied.
        generation = gateway.Generation;
        var before = DateTimeOffset.UtcNow;
        await gateway.WriteFileAsync("versions.map", "1 orders-v1\n2 orders-v1\n  3   \n");
        var rejected = await WaitForReloadResultAsync(gateway, before, applied: false);
        Assert.Equal("file change", rejected.GetProperty("trigger").GetString());
        Assert.Equal(generation, rejected.GetProperty("generation").GetInt64());
        Assert.Equal(generation, gateway.Generation);
        Assert.Equal("v2", (await GetAsync(gateway, "/orders/1", ("Api-Version", "2"))).Server);
        Assert.Equal("v2", (await GetAsync(gateway, "/orders/1", ("Api-Version", "3"))).Server);

        var (status, body) = await gateway.ReloadAsync();
        Assert.Equal(422, status);
        Assert.False(body.GetProperty("applied").GetBoolean());
        Assert.False(body.GetProperty("changed").GetBoolean());
        Assert.Equal(generation, body.GetProperty("generation").GetInt64());
        var errors = Strings(body.GetProperty("errors"));
        var error = Assert.Single(errors);
        Assert.StartsWith($"{mapPath}:3:3: error: ", error);
        Assert.Contains("'3' has no value", error);
        Assert.Equal(generation, gateway.Generation);
        Assert.Equal("v2", (await GetAsync(gateway, "/orders/1", ("Api-Version", "2"))).Server);

        // The rejected file is not rejected again and again: the 2 s stat poll must not see it as a new
        // change (it would replace this result with a "file change" one). A negative check needs a window;
        // a slow machine can only make it pass, never fail spuriously.
        await Task.Delay(TimeSpan.FromSeconds(2.6));
        last = await GetJsonAsync(gateway.Admin, "/admin/reload");
        Assert.Equal("admin API", last.GetProperty("trigger").GetString());

        // Fixing the file is picked up again.
        await gateway.WriteFileAsync("versions.map", "1 orders-v1\n2 orders-v1\n3 orders-v2\n");
        await Eventually.TrueAsync(async () => (await GetAsync(gateway, "/orders/1", ("Api-Version", "2"))).Server == "v1", "Api-Version: 2 to reach orders-v1 after the map file was fixed", context: gateway.LogDump());
        Assert.True(gateway.Generation > generation);
    }

    // 3. Reloads (valid and invalid) under concurrent load: no request fails, invalid versions change nothing.
    [Fact]
    public async Task Reload_UnderConcurrentLoad_NoFailedRequests_InvalidVersionsRejected_ValidVersionsApplied()
    {
        await using var a = await TestUpstream.StartAsync("a");
        await using var b = await TestUpstream.StartAsync("b");

        string Valid(string mainCluster, bool newRoute, bool withA = true) =>
            (newRoute ? "routes:\n  - name: new\n    match: { path: /new }\n    cluster: cb\n" : "routes:\n")
            + $"  - name: main\n    match: {{ pathPrefix: /load }}\n    cluster: {mainCluster}\n"
            + "clusters:\n"
            + (withA ? $"  ca: {{ destinations: [{a.Url}] }}\n" : "")
            + $"  cb: {{ destinations: [{b.Url}] }}\n";

        await using var gateway = await TestGateway.StartAsync(Valid("ca", newRoute: false));

        var failures = new ConcurrentQueue<string>();
        var servers = new ConcurrentDictionary<string, int>();
        var total = 0;
        using var stop = new CancellationTokenSource();
        var clock = Stopwatch.StartNew();
        var clients = Enumerable.Range(0, 4).Select(n => Task.Run(async () =>
        {
            var i = 0;
            while (!stop.IsCancellationRequested)
            {
                var path = $"/load/{n}/{i++}";
                try
                {
                    using var response = await gateway.Client.GetAsync(path);
                    var text = await response.Content.ReadAsStringAsync();
                    var answer = response.StatusCode == HttpStatusCode.OK ? JsonSerializer.Deserialize<UpstreamAnswer>(text) : null;
                    if (answer is null || answer.Server is not ("a" or "b") || answer.Path != path)
                    {
                        failures.Enqueue($"{clock.Elapsed.TotalMilliseconds:F0}ms {path}: {(int)response.StatusCode} {text}");
                    }
                    else
                    {
                        servers.AddOrUpdate(answer.Server, 1, (_, c) => c + 1);
                    }
                }
                catch (Exception ex)
                {
                    failures.Enqueue($"{clock.Elapsed.TotalMilliseconds:F0}ms {path}: {ex.GetType().Name}: {ex.Message}");
                }

                Interlocked.Increment(ref total);
            }
        })).ToArray();

        async Task<string> ServerOf(string path) => (await GetAsync(gateway, path)).Server;

        async Task ApplyValid(string yaml, Func<Task<bool>> effect, string what)
        {
            var step = Stopwatch.StartNew();
            var generation = gateway.Generation;
            await gateway.WriteConfigAsync(yaml);
            await gateway.WaitForGenerationAsync(generation, Deadline);
            await Eventually.TrueAsync(effect, what, context: gateway.LogDump());
            var reload = await GetJsonAsync(gateway.Admin, "/admin/reload");
            Assert.True(reload.GetProperty("applied").GetBoolean(), reload.ToString());
            Assert.Empty(Strings(reload.GetProperty("errors")));
            await DwellAsync(step);
        }

        async Task ApplyInvalid(string yaml, string expectedLocation, string expectedMessage)
        {
            var step = Stopwatch.StartNew();
            var generation = gateway.Generation;
            var serving = await ServerOf("/load/probe");
            var before = DateTimeOffset.UtcNow;
            await gateway.WriteConfigAsync(yaml);
            var result = await WaitForReloadResultAsync(gateway, before, applied: false);
            Assert.False(result.GetProperty("changed").GetBoolean());
            Assert.Equal(generation, result.GetProperty("generation").GetInt64());
            Assert.Equal(generation, gateway.Generation);
            var errors = Strings(result.GetProperty("errors"));
            Assert.Contains(errors, e => e.StartsWith(gateway.ConfigPath + ":" + expectedLocation, StringComparison.Ordinal) && e.Contains(expectedMessage, StringComparison.Ordinal));
            Assert.All(errors, e => Assert.Matches(@"^.+:\d+:\d+: error: ", e));
            Assert.Equal(serving, await ServerOf("/load/probe"));
            await DwellAsync(step);
        }

        // v1: a route /new is added.
        var v1 = Valid("ca", newRoute: true);
        await ApplyValid(v1, async () =>
        {
            using var response = await gateway.Client.GetAsync("/new");
            return response.StatusCode == HttpStatusCode.OK;
        }, "route /new to answer");
        Assert.Equal("b", await ServerOf("/new"));
        Assert.Equal("a", await ServerOf("/load/x"));

        // Unknown key.
        var unknownKey = v1.Replace("    cluster: ca\n", "    cluster: ca\n    timeout: 5s\n", StringComparison.Ordinal);
        await ApplyInvalid(unknownKey, Location(gateway, unknownKey, "timeout: 5s", "timeout"), "unknown key 'timeout'");

        // v2: the main route switches from upstream a to b.
        await ApplyValid(Valid("cb", newRoute: true), async () => await ServerOf("/load/x") == "b", "main route to switch to upstream b");

        // Unknown cluster.
        var unknownCluster = Valid("cx", newRoute: true);
        await ApplyInvalid(unknownCluster, Location(gateway, unknownCluster, "cluster: cx", "cx"), "unknown cluster 'cx'");

        // v3: back to a.
        await ApplyValid(Valid("ca", newRoute: true), async () => await ServerOf("/load/x") == "a", "main route to switch back to upstream a");

        // Malformed YAML (a key indented off the block).
        var malformed = Valid("ca", newRoute: true).Replace("    cluster: ca\n", "   cluster: ca\n", StringComparison.Ordinal);
        await ApplyInvalid(malformed, Location(gateway, malformed, "   cluster: ca", "cluster"), "malformed YAML");

        // v4: switch to b and remove cluster ca (and upstream a with it) while requests flow.
        var v4 = Valid("cb", newRoute: true, withA: false);
        await ApplyValid(v4, async () => await ServerOf("/load/x") == "b", "main route to switch to upstream b with cluster ca removed");
        var clusters = await GetJsonAsync(gateway.Admin, "/admin/clusters");
        Assert.Equal(["cb"], clusters.GetProperty("clusters").EnumerateArray().Select(c => c.GetProperty("name").GetString()!).ToArray());

        // Unknown key inside a cluster.
        var unknownClusterKey = v4.Replace($"  cb: {{ destinations: [{b.Url}] }}", $"  cb: {{ destinations: [{b.Url}], loadBalancer: first }}", StringComparison.Ordinal);
        await ApplyInvalid(unknownClusterKey, Location(gateway, unknownClusterKey, "loadBalancer", "loadBalancer"), "unknown key 'loadBalancer'");

        while (clock.Elapsed < TimeSpan.FromSeconds(6)) await Task.Delay(50);
        stop.Cancel();
        await Task.WhenAll(clients);

        Assert.True(failures.IsEmpty, $"{failures.Count} of {total} requests failed:\n{string.Join("\n", failures.Take(20))}\nlogs:\n{gateway.Logs}");
        Assert.True(total >= 200, $"only {total} requests were sent");
        Assert.True(servers.GetValueOrDefault("a") > 0 && servers.GetValueOrDefault("b") > 0, $"servers: {string.Join(", ", servers)}");
        Assert.Equal("b", await ServerOf("/load/x"));
        Assert.Equal("b", await ServerOf("/new"));
    }

    // 3b. The same for a map-driven route whose map switches to a cluster that the same reload adds (and
    //     removes the old one): between the snapshot swap and YARP applying it, a request must not find
    //     its cluster missing. A race detector: 20 switches under load; it cannot fail spuriously.
    [Fact]
    public async Task Reload_MapDrivenClusterSwitch_UnderLoad_NoFailedRequests()
    {
        await using var a = await TestUpstream.StartAsync("a");
        await using var b = await TestUpstream.StartAsync("b");
        string Config(int n) => $$"""
            maps:
              pick: { entries: { beta: c{{n}}-beta }, default: c{{n}} }
            routes:
              - name: main
                cluster: "${map:pick(header:X-Pick)}"
            clusters:
              c{{n}}: { destinations: [{{(n % 2 == 0 ? a.Url : b.Url)}}] }
              c{{n}}-beta: { destinations: [{{(n % 2 == 0 ? b.Url : a.Url)}}] }
            """;
        await using var gateway = await TestGateway.StartAsync(Config(0));

        var failures = new ConcurrentQueue<string>();
        var total = 0;
        using var stop = new CancellationTokenSource();
        var clients = Enumerable.Range(0, 6).Select(n => Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    using var request = new HttpRequestMessage(HttpMethod.Get, "/m/" + n);
                    if (n % 2 == 1) request.Headers.Add("X-Pick", "beta");
                    using var response = await gateway.Client.SendAsync(request);
                    if (response.StatusCode != HttpStatusCode.OK) failures.Enqueue($"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
                }
                catch (Exception ex)
                {
                    failures.Enqueue($"{ex.GetType().Name}: {ex.Message}");
                }

                Interlocked.Increment(ref total);
            }
        })).ToArray();

        const int switches = 20;
        for (var n = 1; n <= switches; n++)
        {
            var generation = gateway.Generation;
            await gateway.WriteConfigAsync(Config(n));
            await gateway.WaitForGenerationAsync(generation, Deadline);
        }

        stop.Cancel();
        await Task.WhenAll(clients);
        Assert.True(failures.IsEmpty, $"{failures.Count} of {total} requests failed:\n{string.Join("\n", failures.Take(10))}");
        Assert.True(total >= 200, $"only {total} requests were sent");
        Assert.Equal(switches % 2 == 0 ? "a" : "b", (await GetAsync(gateway, "/m/x")).Server);
        Assert.Equal(switches % 2 == 0 ? "b" : "a", (await GetAsync(gateway, "/m/x", ("X-Pick", "beta"))).Server);
    }

    // 4. A request in flight when its route (and cluster) are removed still completes.
    [Fact]
    public async Task Reload_RemovingRouteOfInFlightRequest_LetsItFinish()
    {
        await using var slow = await TestUpstream.StartAsync("slow");
        await using var fast = await TestUpstream.StartAsync("fast");
        slow.Delay = TimeSpan.FromSeconds(2);
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: slow, match: { pathPrefix: /slow }, cluster: slowc }
              - { name: rest, cluster: fastc }
            clusters:
              slowc: { destinations: [{{slow.Url}}] }
              fastc: { destinations: [{{fast.Url}}] }
            """);

        var clock = Stopwatch.StartNew();
        var inFlight = gateway.Client.GetAsync("/slow/1");
        await Eventually.TrueAsync(() => Task.FromResult(slow.Requests == 1), "the slow request to reach the upstream", context: gateway.LogDump());

        var generation = gateway.Generation;
        await gateway.WriteConfigAsync($$"""
            routes:
              - { name: rest, cluster: fastc }
            clusters:
              fastc: { destinations: [{{fast.Url}}] }
            """);
        await gateway.WaitForGenerationAsync(generation, Deadline);
        await Eventually.TrueAsync(async () => (await GetAsync(gateway, "/slow/2")).Server == "fast", "/slow to be served by the remaining route", context: gateway.LogDump());
        Assert.False(inFlight.IsCompleted, $"the slow request finished before the reload took effect ({clock.Elapsed})");

        using var response = await inFlight;
        var answer = await UpstreamAnswer.ReadAsync(response);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("slow", answer.Server);
        Assert.Equal("/slow/1", answer.Path);
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(1.9), clock.Elapsed.ToString());
        Assert.Equal(1, slow.Requests);
    }

    // 5. POST /admin/reload: unchanged file, then a listener change that needs a restart.
    [Fact]
    public async Task AdminReload_UnchangedFileIsNoChange_ListenerChangeReportsRestartRequired()
    {
        await using var up = await TestUpstream.StartAsync("up");
        var extraPort = Ports.GetFree();
        string Config(bool extraListener, bool secondRoute) =>
            "listeners:\n"
            + "  - { name: public, address: \"127.0.0.1:{{PORT}}\" }\n"
            + "  - { name: admin, address: \"127.0.0.1:{{ADMIN_PORT}}\", admin: true }\n"
            + (extraListener ? $"  - {{ name: extra, address: \"127.0.0.1:{extraPort}\" }}\n" : "")
            + "routes:\n"
            + (secondRoute ? "  - { name: second, match: { path: /second }, respond: { body: second } }\n" : "")
            + "  - { name: all, cluster: web }\n"
            + $"clusters:\n  web: {{ destinations: [{up.Url}] }}\n";
        await using var gateway = await TestGateway.StartAsync(Config(extraListener: false, secondRoute: false));
        var generation = gateway.Generation;

        var (status, body) = await gateway.ReloadAsync();
        Assert.Equal(200, status);
        Assert.True(body.GetProperty("applied").GetBoolean());
        Assert.False(body.GetProperty("changed").GetBoolean());
        Assert.Equal(generation, body.GetProperty("generation").GetInt64());
        Assert.Equal("admin API", body.GetProperty("trigger").GetString());
        Assert.Empty(Strings(body.GetProperty("errors")));
        Assert.Empty(Strings(body.GetProperty("restartRequired")));
        Assert.Equal(generation, gateway.Generation);

        // Rewriting the same content (new timestamp) is still no change.
        await gateway.WriteConfigAsync(Config(extraListener: false, secondRoute: false));
        (status, body) = await gateway.ReloadAsync();
        Assert.Equal(200, status);
        Assert.False(body.GetProperty("changed").GetBoolean());
        Assert.Equal(generation, gateway.Generation);

        // A listener is added: applied (generation advances) but needs a restart. Whether the file watch
        // or this call applies it first, the answer says a restart is required.
        await gateway.WriteConfigAsync(Config(extraListener: true, secondRoute: false));
        (status, body) = await gateway.ReloadAsync();
        Assert.Equal(200, status);
        Assert.True(body.GetProperty("applied").GetBoolean());
        Assert.Contains("listeners", Strings(body.GetProperty("restartRequired")));
        Assert.DoesNotContain("limits", Strings(body.GetProperty("restartRequired")));
        Assert.True(gateway.Generation > generation);
        Assert.True(body.GetProperty("generation").GetInt64() > generation);
        Assert.Contains(gateway.Logs.Lines, l => l.Contains("Changes to listeners take effect only after a restart", StringComparison.Ordinal));

        // A reload with nothing changed since still says so (it reuses what the applying reload found).
        (status, body) = await gateway.ReloadAsync();
        Assert.Equal(200, status);
        Assert.False(body.GetProperty("changed").GetBoolean());
        Assert.Contains("listeners", Strings(body.GetProperty("restartRequired")));

        // The new listener is not bound until a restart; the old ones keep working.
        using (var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            await Assert.ThrowsAnyAsync<SocketException>(() => socket.ConnectAsync(IPAddress.Loopback, extraPort));
        }

        Assert.Equal("up", (await GetAsync(gateway, "/x")).Server);

        // Another change while the listener change is still pending: still reported.
        generation = gateway.Generation;
        await gateway.WriteConfigAsync(Config(extraListener: true, secondRoute: true));
        (status, body) = await gateway.ReloadAsync();
        Assert.Equal(200, status);
        Assert.Contains("listeners", Strings(body.GetProperty("restartRequired")));
        await gateway.WaitForGenerationAsync(generation, Deadline);
        Assert.Equal("second", await gateway.Client.GetStringAsync("/second"));

        // Back to the listeners the gateway runs with: nothing needs a restart any more.
        await gateway.WriteConfigAsync(Config(extraListener: false, secondRoute: true));
        (status, body) = await gateway.ReloadAsync();
        Assert.Equal(200, status);
        Assert.Empty(Strings(body.GetProperty("restartRequired")));
    }

    // 6. The effective config never shows a secret that came from the environment.
    [Fact]
    public async Task AdminConfig_RedactsSensitiveHeaderValueFromEnvironment()
    {
        const string secret = "s3cr3t-7f4e9a1c-token";
        await using var up = await TestUpstream.StartAsync("up");
        var yaml = $$"""
            routes:
              - name: api
                cluster: web
                requestHeaders:
                  set:
                    Authorization: "Bearer ${TOKEN}"
                    X-Stage: "${STAGE}"
            clusters:
              web: { destinations: [{{up.Url}}] }
            """;
        await using var gateway = await TestGateway.StartAsync(yaml, environment: name => name switch
        {
            "TOKEN" => secret,
            "STAGE" => "staging",
            _ => null,
        });

        // The secret is really in use: the upstream gets it.
        var answer = await GetAsync(gateway, "/x");
        Assert.Equal("Bearer " + secret, answer.Header("Authorization"));
        Assert.Equal("staging", answer.Header("X-Stage"));

        await AssertRedactedAsync(gateway, secret);

        // Still redacted after a reload (which reads the environment again).
        var generation = gateway.Generation;
        await gateway.WriteConfigAsync(yaml + "\n  other: { destinations: [" + up.Url + "] }\n");
        await gateway.WaitForGenerationAsync(generation, Deadline);
        await AssertRedactedAsync(gateway, secret);
        Assert.Equal("Bearer " + secret, (await GetAsync(gateway, "/x")).Header("Authorization"));

        var reload = await gateway.Admin.GetStringAsync("/admin/reload");
        Assert.DoesNotContain(secret, reload, StringComparison.Ordinal);
        Assert.DoesNotContain(secret, gateway.Logs.ToString(), StringComparison.Ordinal);
    }

    // An input that makes the YAML library throw something other than its parse error (an unclosed flow
    // mapping) must be rejected like any invalid file, by the file watch and by POST /admin/reload.
    [Fact]
    public async Task Reload_InputThatCrashesTheYamlParser_IsRejected_AndLaterReloadsWork()
    {
        await using var a = await TestUpstream.StartAsync("a");
        await using var b = await TestUpstream.StartAsync("b");
        string Config(string upstream, string match) => $$"""
            routes:
              - name: main
                match: {{match}}
                cluster: web
            clusters:
              web: { destinations: [{{upstream}}] }
            """;
        await using var gateway = await TestGateway.StartAsync(Config(a.Url, "{ pathPrefix: / }"));
        var generation = gateway.Generation;

        var before = DateTimeOffset.UtcNow;
        await gateway.WriteConfigAsync(Config(b.Url, "{ pathPrefix: /"));
        var result = await WaitForReloadResultAsync(gateway, before, applied: false);
        Assert.Equal("file change", result.GetProperty("trigger").GetString());
        Assert.Matches($"^{Regex.Escape(gateway.ConfigPath)}:\\d+:\\d+: error: ", Assert.Single(Strings(result.GetProperty("errors"))));
        Assert.Equal(generation, gateway.Generation);
        Assert.Equal("a", (await GetAsync(gateway, "/x")).Server);

        var (status, body) = await gateway.ReloadAsync();
        Assert.Equal(422, status);
        Assert.False(body.GetProperty("applied").GetBoolean());
        Assert.Matches($"^{Regex.Escape(gateway.ConfigPath)}:\\d+:\\d+: error: ", Assert.Single(Strings(body.GetProperty("errors"))));
        Assert.Equal(generation, gateway.Generation);

        await gateway.WriteConfigAsync(Config(b.Url, "{ pathPrefix: / }"));
        await gateway.WaitForGenerationAsync(generation, Deadline);
        await Eventually.TrueAsync(async () => (await GetAsync(gateway, "/x")).Server == "b", "the fixed config to switch to upstream b", context: gateway.LogDump());
    }

    private static async Task AssertRedactedAsync(TestGateway gateway, string secret)
    {
        using var response = await gateway.Admin.GetAsync("/admin/config");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var text = await response.Content.ReadAsStringAsync();
        Assert.DoesNotContain(secret, text, StringComparison.Ordinal);
        Assert.DoesNotContain(secret[..8], text, StringComparison.Ordinal);
        using var document = JsonDocument.Parse(text);
        Assert.Equal(gateway.Generation, document.RootElement.GetProperty("generation").GetInt64());
        var route = document.RootElement.GetProperty("config").GetProperty("routes")[0];
        Assert.Equal("api", route.GetProperty("name").GetString());
        var set = route.GetProperty("requestHeaders").GetProperty("set");
        Assert.Equal("<redacted>", set.GetProperty("Authorization").GetString());
        Assert.Equal("staging", set.GetProperty("X-Stage").GetString());
    }

    private static async Task<UpstreamAnswer> GetAsync(TestGateway gateway, string path, params (string Name, string Value)[] headers)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        foreach (var (name, value) in headers) Assert.True(request.Headers.TryAddWithoutValidation(name, value));
        using var response = await gateway.Client.SendAsync(request);
        return await UpstreamAnswer.ReadAsync(response);
    }

    private static async Task<JsonElement> GetJsonAsync(HttpClient client, string path)
    {
        using var response = await client.GetAsync(path);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
    }

    private static string[] Strings(JsonElement array) => array.EnumerateArray().Select(e => e.GetString()!).ToArray();

    /// <summary>Polls GET /admin/reload until it reports an attempt made after <paramref name="since"/> with the given outcome.</summary>
    private static async Task<JsonElement> WaitForReloadResultAsync(TestGateway gateway, DateTimeOffset since, bool applied)
    {
        JsonElement last = default;
        await Eventually.TrueAsync(async () =>
        {
            last = await GetJsonAsync(gateway.Admin, "/admin/reload");
            return last.GetProperty("at").GetDateTimeOffset() >= since && last.GetProperty("applied").GetBoolean() == applied;
        }, $"a reload with applied={applied} after {since:O}", context: gateway.LogDump());
        return last;
    }

    // Keeps each config version in place for a while so the load runs against every one of them.
    private static async Task DwellAsync(Stopwatch step)
    {
        var remaining = TimeSpan.FromMilliseconds(650) - step.Elapsed;
        if (remaining > TimeSpan.Zero) await Task.Delay(remaining);
    }

    /// <summary>"line:" or "line:column:" of the first line of the written file containing <paramref name="lineMarker"/>.</summary>
    private static string Location(TestGateway gateway, string yaml, string lineMarker, string? columnMarker)
    {
        var lines = TestGateway.Expand(yaml, gateway.Port, gateway.AdminPort).Split('\n');
        var index = Array.FindIndex(lines, l => l.Contains(lineMarker, StringComparison.Ordinal));
        Assert.True(index >= 0, $"marker '{lineMarker}' not in the config");
        var line = (index + 1).ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (columnMarker is null) return line + ":";
        return line + ":" + (lines[index].IndexOf(columnMarker, StringComparison.Ordinal) + 1).ToString(System.Globalization.CultureInfo.InvariantCulture) + ":";
    }
}
