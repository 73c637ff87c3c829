using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.IntegrationTests.Observability;
using Xunit.Abstractions;

namespace Portcullis.IntegrationTests;

/// <summary>
/// Load balancing policies, active and passive health, retries, draining and the all-unhealthy answer,
/// against real Kestrel upstreams over loopback sockets. Timing-dependent checks poll with deadlines.
/// </summary>
public sealed class LoadBalancingAndHealthTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    // ---------------------------------------------------------------- 1. load balancing

    [Fact]
    public async Task RoundRobin_AlternatesExactlyOverThreeUpstreams()
    {
        await using var a = await TestUpstream.StartAsync("a");
        await using var b = await TestUpstream.StartAsync("b");
        await using var c = await TestUpstream.StartAsync("c");
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                loadBalancing: roundRobin
                destinations: {{Destinations(a, b, c)}}
            """);

        var servers = new List<string>();
        for (var i = 0; i < 12; i++) servers.Add(await ServerAsync(gateway.Client, "/rr"));

        Assert.Equal(["a", "b", "c"], servers.Take(3).Order());
        for (var i = 3; i < servers.Count; i++)
        {
            Assert.True(servers[i] == servers[i - 3], $"not an exact rotation: {string.Join(",", servers)}");
        }

        Assert.Equal(4, a.Requests);
        Assert.Equal(4, b.Requests);
        Assert.Equal(4, c.Requests);
    }

    [Fact]
    public async Task First_PicksAlphabeticallyFirstDestination_AndTheNextWhenUnhealthyOrDrained()
    {
        // Listed out of alphabetical order on purpose: `first` orders by destination name.
        await using var alpha = await TestUpstream.StartAsync("alpha");
        await using var bravo = await TestUpstream.StartAsync("bravo");
        await using var charlie = await TestUpstream.StartAsync("charlie");
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                loadBalancing: first
                destinations: {{Destinations(charlie, bravo, alpha)}}
                healthCheck:
                  active: { interval: 200ms, timeout: 200ms, unhealthyThreshold: 2, healthyThreshold: 1 }
            """);

        await AssertAllGoToAsync(gateway, "alpha", 10);

        // Unhealthy by active probes → the next name.
        alpha.Healthy = false;
        await WaitForDestinationAsync(gateway, "web", "alpha", d => d.GetProperty("active").GetString() == "unhealthy", "alpha active unhealthy");
        await AssertAllGoToAsync(gateway, "bravo", 10);

        alpha.Healthy = true;
        await WaitForDestinationAsync(gateway, "web", "alpha", d => d.GetProperty("available").GetBoolean(), "alpha available again");
        await AssertAllGoToAsync(gateway, "alpha", 5);

        // Drained → the next name; both drained → the one after.
        await DrainAsync(gateway, "web", "alpha", drain: true);
        await AssertAllGoToAsync(gateway, "bravo", 5);
        await DrainAsync(gateway, "web", "bravo", drain: true);
        await AssertAllGoToAsync(gateway, "charlie", 5);
        await DrainAsync(gateway, "web", "alpha", drain: false);
        await DrainAsync(gateway, "web", "bravo", drain: false);
        await AssertAllGoToAsync(gateway, "alpha", 5);
    }

    [Theory]
    [InlineData("random")]
    [InlineData("powerOfTwoChoices")]
    public async Task RandomPolicies_SpreadRequestsOverAllUpstreams(string policy)
    {
        await using var a = await TestUpstream.StartAsync("a");
        await using var b = await TestUpstream.StartAsync("b");
        await using var c = await TestUpstream.StartAsync("c");
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                loadBalancing: {{policy}}
                destinations: {{Destinations(a, b, c)}}
            """);

        var expectedPolicy = policy == "random" ? "Random" : "PowerOfTwoChoices";
        Assert.Equal(expectedPolicy, (await ClusterAsync(gateway, "web")).GetProperty("loadBalancing").GetString());

        var counts = new Dictionary<string, int> { ["a"] = 0, ["b"] = 0, ["c"] = 0 };
        for (var i = 0; i < 300; i++) counts[await ServerAsync(gateway.Client, "/spread")]++;

        output.WriteLine($"{policy}: a={counts["a"]} b={counts["b"]} c={counts["c"]}");
        Assert.Equal(300, counts.Values.Sum());
        Assert.All(counts, kv => Assert.True(kv.Value >= 50, $"{policy}: {kv.Key} got only {kv.Value} of 300"));
        Assert.Equal((counts["a"], counts["b"], counts["c"]), (a.Requests, b.Requests, c.Requests));
    }

    [Fact]
    public async Task LeastRequests_SendsNewRequestsAwayFromTheBusyUpstream()
    {
        await using var a = await TestUpstream.StartAsync("a");
        await using var b = await TestUpstream.StartAsync("b");
        var gates = new Dictionary<string, TaskCompletionSource>
        {
            ["a"] = new(TaskCreationOptions.RunContinuationsAsynchronously),
            ["b"] = new(TaskCreationOptions.RunContinuationsAsynchronously),
        };
        a.Handler = GatedHandler("a", gates["a"].Task);
        b.Handler = GatedHandler("b", gates["b"].Task);
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                loadBalancing: leastRequests
                destinations: {{Destinations(a, b)}}
            """);

        var slow = new List<Task<HttpResponseMessage>>();
        try
        {
            // One at a time, each landing before the next: least-requests fills both evenly (3 + 3).
            for (var i = 0; i < 6; i++)
            {
                slow.Add(gateway.Client.GetAsync("/slow"));
                var expected = i + 1;
                await Eventually.TrueAsync(() => Task.FromResult(a.Requests + b.Requests == expected), $"slow request {expected} to arrive", context: gateway.ClustersAndLogDump());
            }

            Assert.Equal(3, a.Requests);
            Assert.Equal(3, b.Requests);

            // b finishes its work; a still has 3 in flight → everything new goes to b.
            gates["b"].SetResult();
            await WaitForDestinationAsync(gateway, "web", "b", d => d.GetProperty("inFlight").GetInt32() == 0, "b to have nothing in flight");
            Assert.Equal(3, (await DestinationAsync(gateway, "web", "a")).GetProperty("inFlight").GetInt32());

            await AssertAllGoToAsync(gateway, "b", 20);

            // Concurrent new requests too: 3 at once never see b with more in flight than a's 3.
            var burst = await Task.WhenAll(Enumerable.Range(0, 3).Select(_ => ServerAsync(gateway.Client, "/fast")));
            Assert.All(burst, s => Assert.Equal("b", s));
        }
        finally
        {
            gates["a"].TrySetResult();
            gates["b"].TrySetResult();
        }

        var answers = await Task.WhenAll(slow);
        foreach (var response in answers) Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(3, (await Task.WhenAll(answers.Select(r => ServerAsync(r)))).Count(s => s == "a"));
    }

    // ---------------------------------------------------------------- 2. active health

    [Fact]
    public async Task ActiveHealth_EjectsAfterUnhealthyThreshold_AndRestoresAfterHealthyThreshold()
    {
        await using var a = await TestUpstream.StartAsync("a");
        await using var b = await TestUpstream.StartAsync("b");
        var probesA = new ProbeState("a");
        var probesB = new ProbeState("b");
        a.Handler = probesA.HandleAsync;
        b.Handler = probesB.HandleAsync;
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                destinations: {{Destinations(a, b)}}
                healthCheck:
                  active: { path: /probe, interval: 200ms, timeout: 200ms, unhealthyThreshold: 2, healthyThreshold: 2 }
            """);

        await WaitForDestinationAsync(gateway, "web", "b", d => d.GetProperty("active").GetString() == "healthy", "b probed healthy");
        var before = await TrafficAsync(gateway, 10);
        Assert.Equal(5, before.GetValueOrDefault("b"));

        // Failing probes: out only after unhealthyThreshold (2) of them.
        probesB.SetHealthy(false);
        await WaitForDestinationAsync(gateway, "web", "b", d => d.GetProperty("active").GetString() == "unhealthy", "b active unhealthy");
        Assert.True(probesB.ProbesSinceChange >= 2, $"b ejected after {probesB.ProbesSinceChange} failed probe(s); unhealthyThreshold is 2");
        var cluster = await ClusterAsync(gateway, "web");
        Assert.Equal(1, cluster.GetProperty("availableDestinations").GetInt32());
        var bState = Destination(cluster, "b");
        Assert.False(bState.GetProperty("available").GetBoolean());
        Assert.True(Destination(cluster, "a").GetProperty("available").GetBoolean());

        var during = await TrafficAsync(gateway, 20);
        Assert.Equal(20, during.GetValueOrDefault("a"));
        Assert.Equal(0, during.GetValueOrDefault("b"));

        // Good probes again: back only after healthyThreshold (2) of them.
        probesB.SetHealthy(true);
        await WaitForDestinationAsync(gateway, "web", "b", d => d.GetProperty("active").GetString() == "healthy", "b active healthy again");
        Assert.True(probesB.ProbesSinceChange >= 2, $"b restored after {probesB.ProbesSinceChange} good probe(s); healthyThreshold is 2");
        Assert.True((await DestinationAsync(gateway, "web", "b")).GetProperty("available").GetBoolean());
        Assert.Equal(2, (await ClusterAsync(gateway, "web")).GetProperty("availableDestinations").GetInt32());

        var after = await TrafficAsync(gateway, 10);
        Assert.Equal(5, after.GetValueOrDefault("b"));
        Assert.Equal(0, probesA.FailedProbes);
    }

    // ---------------------------------------------------------------- 3. passive health

    [Fact]
    public async Task PassiveHealth_EjectsRefusingUpstreamAfterFailures_AndReactivatesItAfterRestart()
    {
        await using var a = await TestUpstream.StartAsync("a");
        await using var b = await TestUpstream.StartAsync("b");
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                retries: 0
                destinations: {{Destinations(a, b)}}
                healthCheck:
                  passive: { failures: 3, reactivation: 1s }
            """);

        Assert.Equal(5, (await TrafficAsync(gateway, 10)).GetValueOrDefault("b"));

        // Fewer requests than fit in the 1s reactivation period even on a slow machine.
        await b.StopAsync();
        var failures = 0;
        Stopwatch? ejectedAt = null;
        for (var i = 0; i < 10; i++)
        {
            using var response = await gateway.Client.GetAsync("/p");
            if (response.StatusCode == HttpStatusCode.BadGateway)
            {
                if (++failures == 3) ejectedAt = Stopwatch.StartNew();
                await AssertProblemAsync(response, 502, "upstream.error");
            }
            else
            {
                Assert.Equal("a", await ServerAsync(response));
            }
        }

        Assert.Equal(3, failures);
        Assert.NotNull(ejectedAt);
        var state = await DestinationAsync(gateway, "web", "b");
        Assert.Equal("unhealthy", state.GetProperty("passive").GetString());
        Assert.False(state.GetProperty("available").GetBoolean());

        // Back on its port; it gets traffic again once the reactivation period is over.
        await b.StartAsync();
        await Eventually.TrueAsync(async () => await ServerAsync(gateway.Client, "/p") == "b", "b to get traffic again", context: gateway.ClustersAndLogDump());
        output.WriteLine($"b back after {ejectedAt.ElapsedMilliseconds} ms");
        Assert.True(ejectedAt.Elapsed >= TimeSpan.FromMilliseconds(500), $"b got traffic {ejectedAt.ElapsedMilliseconds} ms after ejection; reactivation is 1s");
        Assert.NotEqual("unhealthy", (await DestinationAsync(gateway, "web", "b")).GetProperty("passive").GetString());
        Assert.Equal(5, (await TrafficAsync(gateway, 10)).GetValueOrDefault("b"));
    }

    [Fact]
    public async Task PassiveHealth_CountsOnlyConfiguredStatusCodes()
    {
        await using var a = await TestUpstream.StartAsync("a");
        await using var b = await TestUpstream.StartAsync("b");
        var status = 500;
        b.Handler = context =>
        {
            context.Response.StatusCode = Volatile.Read(ref status);
            return status == 200 ? WriteServerAsync(context, "b") : Task.CompletedTask;
        };
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                destinations: {{Destinations(a, b)}}
                healthCheck:
                  passive: { failures: 2, reactivation: 1s, statusCodes: [503] }
            """);

        // 500 is not in statusCodes: passed through, never ejects.
        var statuses = await StatusesAsync(gateway, 10);
        Assert.Equal(5, statuses.Count(s => s == 500));
        Assert.True((await DestinationAsync(gateway, "web", "b")).GetProperty("available").GetBoolean());

        // 503 is: ejected after exactly 2 of them.
        Volatile.Write(ref status, 503);
        statuses = await StatusesAsync(gateway, 8);
        Assert.Equal(2, statuses.Count(s => s == 503));
        Assert.Equal(6, statuses.Count(s => s == 200));
        Assert.Equal("unhealthy", (await DestinationAsync(gateway, "web", "b")).GetProperty("passive").GetString());

        Volatile.Write(ref status, 200);
        await Eventually.TrueAsync(async () => await ServerAsync(gateway.Client, "/p") == "b", "b to get traffic again after reactivation", context: gateway.ClustersAndLogDump());
    }

    [Fact]
    public async Task PassiveHealth_ClientAbortsDoNotEjectTheUpstream()
    {
        await using var a = await TestUpstream.StartAsync("a");
        var aborted = 0;
        a.Handler = async context =>
        {
            if (context.Request.Path.StartsWithSegments("/slow"))
            {
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(20), context.RequestAborted);
                }
                catch (OperationCanceledException)
                {
                    Interlocked.Increment(ref aborted);
                    throw;
                }
            }

            await WriteServerAsync(context, "a");
        };
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                destinations: {{Destinations(a)}}
                healthCheck:
                  passive: { failures: 2, reactivation: 30s }
            """);

        // Clients giving up is not the upstream failing.
        for (var i = 1; i <= 3; i++)
        {
            using var cts = new CancellationTokenSource();
            var request = gateway.Client.GetAsync("/slow", cts.Token);
            var expected = i;
            await Eventually.TrueAsync(() => Task.FromResult(a.Requests == expected), "slow request to arrive", context: gateway.ClustersAndLogDump());
            await cts.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => request);
            await Eventually.TrueAsync(() => Task.FromResult(Volatile.Read(ref aborted) == expected), "upstream to see the abort", context: gateway.ClustersAndLogDump());
            await WaitForDestinationAsync(gateway, "web", "a", d => d.GetProperty("inFlight").GetInt32() == 0, "a to have nothing in flight");
            await Task.Delay(100); // the passive check runs just after the in-flight count drops

            var state = await DestinationAsync(gateway, "web", "a");
            Assert.True(state.GetProperty("passive").GetString() != "unhealthy", $"a ejected after {i} client abort(s); failures is 2");
        }

        Assert.Equal("a", await ServerAsync(gateway.Client, "/after"));
    }

    // ---------------------------------------------------------------- 4. retries

    [Fact]
    public async Task Retry_IdempotentRequestsSucceedDespiteRefusedDestination_ButPostIsNotRetried()
    {
        await using var a = await TestUpstream.StartAsync("a");
        await using var b = await TestUpstream.StartAsync("b");
        await using var dead = await TestUpstream.StartAsync("dead");
        await dead.StopAsync(); // nothing listens: connections are refused
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                destinations: {{Destinations(a, b, dead)}}
            """);

        var clientErrors = 0;
        for (var i = 0; i < 50; i++)
        {
            using var response = await gateway.Client.GetAsync("/get");
            if (!response.IsSuccessStatusCode) clientErrors++;
            else Assert.NotEqual("dead", await ServerAsync(response));
        }

        Assert.Equal(0, clientErrors);
        Assert.Equal(50, a.Requests + b.Requests);
        var retryLines = RetryLines(gateway);
        Assert.NotEmpty(retryLines);
        Assert.All(retryLines, line => Assert.Contains("dead", line));

        // PUT (idempotent, with a body): retried with the body intact.
        for (var i = 0; i < 6; i++)
        {
            using var response = await gateway.Client.PutAsync("/put", new ByteArrayContent(new byte[1000]));
            var answer = await UpstreamAnswer.ReadAsync(response);
            Assert.Equal("PUT", answer.Method);
            Assert.Equal(1000, answer.BodyBytes);
        }

        // POST is not retried: round robin sends 1 in 3 to the dead destination → 502.
        var retriesBefore = RetryLines(gateway).Count;
        var postStatuses = new List<int>();
        for (var i = 0; i < 6; i++)
        {
            using var response = await gateway.Client.PostAsync("/post", new StringContent("{}", Encoding.UTF8, "application/json"));
            postStatuses.Add((int)response.StatusCode);
            if (response.StatusCode == HttpStatusCode.BadGateway) await AssertProblemAsync(response, 502, "upstream.error");
            else Assert.Equal("POST", (await UpstreamAnswer.ReadAsync(response)).Method);
        }

        Assert.Equal(2, postStatuses.Count(s => s == 502));
        Assert.Equal(4, postStatuses.Count(s => s == 200));
        Assert.Equal(retriesBefore, RetryLines(gateway).Count);

        // Each retry is counted on /metrics as a connect failure, one per warning line.
        var samples = await PrometheusText.ScrapeAsync(gateway.Admin);
        Assert.Equal(retriesBefore, samples.Sum("portcullis_upstream_retries_total", ("route", "all"), ("cluster", "web"), ("reason", "connect-failure")));
        Assert.Equal(0, samples.Sum("portcullis_upstream_retries_total", ("reason", "reset-before-response")));
    }

    [Fact]
    public async Task Retry_ZeroDisablesRetries()
    {
        await using var a = await TestUpstream.StartAsync("a");
        await using var dead = await TestUpstream.StartAsync("dead");
        await dead.StopAsync();
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                retries: 0
                destinations: {{Destinations(a, dead)}}
            """);

        var statuses = new List<int>();
        for (var i = 0; i < 10; i++)
        {
            using var response = await gateway.Client.GetAsync("/get");
            statuses.Add((int)response.StatusCode);
            if (response.StatusCode == HttpStatusCode.BadGateway) await AssertProblemAsync(response, 502, "upstream.error");
        }

        Assert.Equal(5, statuses.Count(s => s == 502));
        Assert.Equal(5, statuses.Count(s => s == 200));
        Assert.Empty(RetryLines(gateway));
    }

    [Fact]
    public async Task Retry_ConnectTimeoutIsRetriedOnAnotherDestination()
    {
        await using var a = await TestUpstream.StartAsync("a");
        using var blackhole = await Blackhole.StartAsync();
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                timeouts: { connect: 300ms }
                destinations: [{ name: a, address: "{{a.Url}}" }, { name: hole, address: "{{blackhole.Url}}" }]
            """);

        for (var i = 0; i < 4; i++)
        {
            using var response = await gateway.Client.GetAsync("/get");
            Assert.Equal("a", await ServerAsync(response));
        }

        Assert.Contains(RetryLines(gateway), line => line.Contains("hole", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Retry_UpstreamTimeoutIsNotRetried()
    {
        // The request reached the destination: a request (activity) timeout is not a connect failure.
        await using var slow = await TestUpstream.StartAsync("a-slow"); // `first` always picks it
        await using var b = await TestUpstream.StartAsync("b");
        slow.Delay = TimeSpan.FromSeconds(3);
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                loadBalancing: first
                timeouts: { request: 300ms }
                destinations: {{Destinations(slow, b)}}
            """);

        using var response = await gateway.Client.GetAsync("/get");
        await AssertProblemAsync(response, 504, "upstream.timeout");
        Assert.Equal(1, slow.Requests);
        Assert.Equal(0, b.Requests);
        Assert.Empty(RetryLines(gateway));
    }

    // ---------------------------------------------------------------- 5. drain

    [Fact]
    public async Task Drain_StopsNewRequests_LetsInFlightFinish_AndUndrainRestores()
    {
        await using var a = await TestUpstream.StartAsync("a");
        await using var b = await TestUpstream.StartAsync("b");
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        a.Handler = GatedHandler("a", gate.Task);
        b.Handler = GatedHandler("b", gate.Task);
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                destinations: {{Destinations(a, b)}}
            """);

        Task<HttpResponseMessage> slow;
        string drained;
        try
        {
            slow = gateway.Client.GetAsync("/slow");
            await Eventually.TrueAsync(() => Task.FromResult(a.Requests + b.Requests == 1), "slow request to arrive", context: gateway.ClustersAndLogDump());
            drained = a.Requests == 1 ? "a" : "b";
            var other = drained == "a" ? "b" : "a";

            using (var response = await gateway.Admin.PostAsync($"/admin/clusters/web/destinations/{drained}/drain", null))
            {
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
                Assert.True(body.RootElement.GetProperty("drained").GetBoolean());
                Assert.Equal(1, body.RootElement.GetProperty("inFlight").GetInt32());
            }

            var state = await DestinationAsync(gateway, "web", drained);
            Assert.True(state.GetProperty("drained").GetBoolean());
            Assert.False(state.GetProperty("available").GetBoolean());
            Assert.Equal(1, state.GetProperty("inFlight").GetInt32());

            await AssertAllGoToAsync(gateway, other, 20);
            Assert.False(slow.IsCompleted);
        }
        finally
        {
            gate.TrySetResult();
        }

        using (var response = await slow)
        {
            Assert.Equal(drained, await ServerAsync(response));
        }

        await DrainAsync(gateway, "web", drained, drain: false);
        var state2 = await DestinationAsync(gateway, "web", drained);
        Assert.False(state2.GetProperty("drained").GetBoolean());
        Assert.True(state2.GetProperty("available").GetBoolean());
        Assert.Equal(5, (await TrafficAsync(gateway, 10)).GetValueOrDefault(drained));

        // Unknown names → 404 problem+json.
        using (var response = await gateway.Admin.PostAsync("/admin/clusters/nope/destinations/a/drain", null))
        {
            await AssertProblemAsync(response, 404, "admin.unknown-cluster");
        }

        using (var response = await gateway.Admin.PostAsync("/admin/clusters/web/destinations/nope/drain", null))
        {
            await AssertProblemAsync(response, 404, "admin.unknown-destination");
        }

        using (var response = await gateway.Admin.PostAsync("/admin/clusters/web/destinations/nope/undrain", null))
        {
            await AssertProblemAsync(response, 404, "admin.unknown-destination");
        }

        Assert.Equal(5, (await TrafficAsync(gateway, 10)).GetValueOrDefault(drained));
    }

    // ---------------------------------------------------------------- 6. nothing available

    [Fact]
    public async Task AllDestinationsUnhealthy_Answers503ProblemJson()
    {
        await using var a = await TestUpstream.StartAsync("a");
        await using var b = await TestUpstream.StartAsync("b");
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                destinations: {{Destinations(a, b)}}
                healthCheck:
                  active: { interval: 200ms, timeout: 200ms, unhealthyThreshold: 2 }
            """);

        Assert.Equal(2, (await TrafficAsync(gateway, 2)).Count);

        a.Healthy = false;
        b.Healthy = false;
        await Eventually.TrueAsync(async () => (await ClusterAsync(gateway, "web")).GetProperty("availableDestinations").GetInt32() == 0, "no available destinations", context: gateway.ClustersAndLogDump());
        var requestsBefore = a.Requests + b.Requests;
        for (var i = 0; i < 3; i++)
        {
            using var response = await gateway.Client.GetAsync("/x");
            await AssertProblemAsync(response, 503, "upstream.unavailable");
        }

        Assert.Equal(requestsBefore, a.Requests + b.Requests);

        // One healthy again → served again.
        a.Healthy = true;
        await Eventually.TrueAsync(async () => (await gateway.Client.GetAsync("/x")).IsSuccessStatusCode, "a to serve again", context: gateway.ClustersAndLogDump());
        Assert.Equal("a", await ServerAsync(gateway.Client, "/x"));
    }

    [Fact]
    public async Task AllDestinationsDrained_Answers503ProblemJson()
    {
        await using var a = await TestUpstream.StartAsync("a");
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                destinations: {{Destinations(a)}}
            """);

        await DrainAsync(gateway, "web", "a", drain: true);
        using (var response = await gateway.Client.GetAsync("/x"))
        {
            await AssertProblemAsync(response, 503, "upstream.unavailable");
        }

        Assert.Equal(0, a.Requests);
        await DrainAsync(gateway, "web", "a", drain: false);
        Assert.Equal("a", await ServerAsync(gateway.Client, "/x"));
    }

    // ---------------------------------------------------------------- helpers

    private static string Destinations(params TestUpstream[] upstreams) =>
        "[" + string.Join(", ", upstreams.Select(u => $"{{ name: {u.Name}, address: \"{u.Url}\" }}")) + "]";

    private static Func<HttpContext, Task> GatedHandler(string name, Task gate) => async context =>
    {
        if (context.Request.Path.StartsWithSegments("/slow")) await gate.WaitAsync(context.RequestAborted);
        await WriteServerAsync(context, name);
    };

    private static Task WriteServerAsync(HttpContext context, string name)
    {
        context.Response.ContentType = "application/json";
        return context.Response.WriteAsync(JsonSerializer.Serialize(new { Server = name }));
    }

    private static async Task<string> ServerAsync(HttpClient client, string path)
    {
        using var response = await client.GetAsync(path);
        return await ServerAsync(response);
    }

    private static async Task<string> ServerAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"expected an upstream answer, got {(int)response.StatusCode}: {text}");
        using var json = JsonDocument.Parse(text);
        return json.RootElement.GetProperty("Server").GetString()!;
    }

    private static async Task<Dictionary<string, int>> TrafficAsync(TestGateway gateway, int requests)
    {
        var counts = new Dictionary<string, int>();
        for (var i = 0; i < requests; i++)
        {
            var server = await ServerAsync(gateway.Client, "/t");
            counts[server] = counts.GetValueOrDefault(server) + 1;
        }

        return counts;
    }

    private static async Task<List<int>> StatusesAsync(TestGateway gateway, int requests)
    {
        var statuses = new List<int>();
        for (var i = 0; i < requests; i++)
        {
            using var response = await gateway.Client.GetAsync("/s");
            statuses.Add((int)response.StatusCode);
        }

        return statuses;
    }

    private static async Task AssertAllGoToAsync(TestGateway gateway, string expected, int requests)
    {
        var traffic = await TrafficAsync(gateway, requests);
        Assert.True(traffic.Count == 1 && traffic.ContainsKey(expected),
            $"expected all {requests} requests on {expected}, got {string.Join(", ", traffic.Select(kv => $"{kv.Key}={kv.Value}"))}");
    }

    private static async Task AssertProblemAsync(HttpResponseMessage response, int status, string reason)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True((int)response.StatusCode == status, $"expected {status}, got {(int)response.StatusCode}: {text}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        using var json = JsonDocument.Parse(text);
        Assert.Equal(status, json.RootElement.GetProperty("status").GetInt32());
        Assert.Equal(reason, json.RootElement.GetProperty("reason").GetString());
    }

    private static async Task DrainAsync(TestGateway gateway, string cluster, string destination, bool drain)
    {
        using var response = await gateway.Admin.PostAsync($"/admin/clusters/{cluster}/destinations/{destination}/{(drain ? "drain" : "undrain")}", null);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal(drain, json.RootElement.GetProperty("drained").GetBoolean());
    }

    private static async Task<JsonElement> ClusterAsync(TestGateway gateway, string cluster)
    {
        using var json = JsonDocument.Parse(await gateway.Admin.GetStringAsync("/admin/clusters"));
        return json.RootElement.GetProperty("clusters").EnumerateArray().Single(c => c.GetProperty("name").GetString() == cluster).Clone();
    }

    private static JsonElement Destination(JsonElement cluster, string destination) =>
        cluster.GetProperty("destinations").EnumerateArray().Single(d => d.GetProperty("name").GetString() == destination);

    private static async Task<JsonElement> DestinationAsync(TestGateway gateway, string cluster, string destination) =>
        Destination(await ClusterAsync(gateway, cluster), destination);

    private static Task WaitForDestinationAsync(TestGateway gateway, string cluster, string destination, Func<JsonElement, bool> condition, string what) =>
        Eventually.TrueAsync(async () => condition(await DestinationAsync(gateway, cluster, destination)), what, context: gateway.ClustersAndLogDump());

    private static List<string> RetryLines(TestGateway gateway) =>
        gateway.Logs.Lines.Where(l => l.Contains("RetryMiddleware", StringComparison.Ordinal) && l.Contains("retrying", StringComparison.Ordinal)).ToList();

    /// <summary>
    /// A loopback port whose accept queue is full and never drained: new connections get no answer to
    /// their SYN, so connecting times out (unlike a closed port, which refuses at once).
    /// </summary>
    private sealed class Blackhole : IDisposable
    {
        private readonly System.Net.Sockets.Socket _listener;
        private readonly List<System.Net.Sockets.Socket> _fillers = [];

        private Blackhole(System.Net.Sockets.Socket listener) => _listener = listener;

        public string Url => $"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndPoint!).Port}";

        public static async Task<Blackhole> StartAsync()
        {
            var listener = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
            listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            listener.Listen(0);
            var hole = new Blackhole(listener);
            for (var i = 0; i < 16; i++)
            {
                var socket = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
                hole._fillers.Add(socket);
                using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(250));
                try
                {
                    await socket.ConnectAsync(listener.LocalEndPoint!, cts.Token);
                }
                catch (OperationCanceledException)
                {
                    return hole; // the queue is full
                }
            }

            hole.Dispose();
            throw new InvalidOperationException("could not fill the accept queue of a loopback listener");
        }

        public void Dispose()
        {
            foreach (var socket in _fillers) socket.Dispose();
            _listener.Dispose();
        }
    }

    /// <summary>Answers health probes on /probe as told and counts them since the last change.</summary>
    private sealed class ProbeState(string name)
    {
        private volatile bool _healthy = true;
        private int _sinceChange;
        private int _failed;

        public int ProbesSinceChange => Volatile.Read(ref _sinceChange);

        public int FailedProbes => Volatile.Read(ref _failed);

        public void SetHealthy(bool healthy)
        {
            lock (this)
            {
                _healthy = healthy;
                _sinceChange = 0;
            }
        }

        public Task HandleAsync(HttpContext context)
        {
            if (context.Request.Path == "/probe")
            {
                bool healthy;
                lock (this)
                {
                    healthy = _healthy;
                    _sinceChange++;
                    if (!healthy) _failed++;
                }

                context.Response.StatusCode = healthy ? 200 : 503;
                return Task.CompletedTask;
            }

            return WriteServerAsync(context, name);
        }
    }
}
