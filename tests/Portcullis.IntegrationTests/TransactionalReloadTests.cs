using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Portcullis.Configuration;
using Portcullis.Hosting;
using Portcullis.Identity;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.Pipeline;

namespace Portcullis.IntegrationTests;

/// <summary>
/// Reloads are transactions over the snapshot participants: prepared all, committed all or rejected whole;
/// each participant's result is in the reload answer; a request runs on one generation end to end.
/// </summary>
public sealed class TransactionalReloadTests
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task A_participant_that_fails_to_prepare_rejects_the_reload_whole_and_nothing_is_applied()
    {
        await using var up = await TestUpstream.StartAsync("up");
        var tokens = new TokenFactory("https://idp.example", "api");
        var probe = new ProbeParticipant { Fail = true };
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: all, match: { pathPrefix: / }, cluster: web }
            clusters:
              web: { destinations: [{{up.Url}}] }
            """,
            new Dictionary<string, string> { ["jwks.json"] = tokens.JwksJson() },
            configureServices: services => AddProbe(services, probe));
        var generation = gateway.Generation;
        var issuers = gateway.Services.GetRequiredService<IssuerRegistry>();

        // The new file adds an issuer (its key cache is made while preparing) and a route using it.
        await gateway.WriteConfigAsync($$"""
            identity:
              issuers:
                - { name: corp, jwksFile: jwks.json, issuer: "https://idp.example", audiences: [api] }
            routes:
              - { name: fixed, match: { path: /added }, respond: { body: added } }
              - { name: all, match: { pathPrefix: / }, cluster: web, auth: { issuers: [corp] } }
            clusters:
              web: { destinations: [{{up.Url}}] }
            """);
        var (status, body) = await gateway.ReloadAsync();

        Assert.Equal(422, status);
        Assert.False(body.GetProperty("applied").GetBoolean());
        Assert.Equal(generation, body.GetProperty("generation").GetInt64());
        Assert.Contains(Strings(body.GetProperty("errors")), e => e.Contains("the reload could not be prepared: probe: InvalidOperationException: probe refuses", StringComparison.Ordinal));
        var participants = Participants(body);
        Assert.Equal("failed", participants["probe"].Result);
        Assert.Equal("InvalidOperationException: probe refuses", participants["probe"].Reason);
        // Every participant prepared before it was released again.
        foreach (var name in new[] { "sessions", "issuers", "traffic", "upstream-tls", "upstream-credentials" })
        {
            Assert.Equal("aborted", participants[name].Result);
        }

        Assert.Contains(gateway.Logs.Lines, l => l.Contains("probe could not prepare it: InvalidOperationException: probe refuses; nothing was applied", StringComparison.Ordinal));

        // Nothing applied: same generation, no issuer cache, the old routes (the public route still needs no token).
        Assert.Equal(generation, gateway.Generation);
        Assert.Null(issuers.Get("corp"));
        Assert.Equal(0, probe.Commits);
        using (var response = await gateway.Client.GetAsync("/added"))
        {
            Assert.Equal("up", (await UpstreamAnswer.ReadAsync(response)).Server);
        }

        // Once the participant prepares again, the same file applies whole.
        probe.Fail = false;
        (status, body) = await gateway.ReloadAsync();
        Assert.Equal(200, status);
        await gateway.WaitForGenerationAsync(generation, Deadline);
        Assert.NotNull(issuers.Get("corp"));
        Assert.Equal("added", await gateway.Client.GetStringAsync("/added"));
        using (var response = await gateway.Client.GetAsync("/other"))
        {
            Assert.Equal(System.Net.HttpStatusCode.Unauthorized, response.StatusCode);
        }

        Assert.True(probe.Commits >= 1);
    }

    [Fact]
    public async Task A_participant_that_needs_a_restart_is_reported_as_such_in_the_reload_answer()
    {
        await using var up = await TestUpstream.StartAsync("up");
        var probe = new ProbeParticipant { Restart = "probe settings are read at start-up" };
        string Config(string body) => $$"""
            routes:
              - { name: fixed, match: { path: /fixed }, respond: { body: {{body}} } }
              - { name: all, cluster: web }
            clusters:
              web: { destinations: [{{up.Url}}] }
            observability:
              audit: { path: audit.log }
            """;
        await using var gateway = await TestGateway.StartAsync(Config("one"), configureServices: services => AddProbe(services, probe));
        var generation = gateway.Generation;

        // The file watch may apply a written file before POST /admin/reload does (its answer is then
        // "unchanged"); on a busy machine that can happen more than once, so write until the POST applies.
        JsonElement body = default;
        var written = "";
        for (var attempt = 1; attempt <= 6; attempt++)
        {
            written = "v" + attempt;
            await gateway.WriteConfigAsync(Config(written));
            var (status, answer) = await gateway.ReloadAsync();
            Assert.Equal(200, status);
            await gateway.WaitForGenerationAsync(generation, Deadline);
            generation = gateway.Generation;
            body = answer;
            if (answer.GetProperty("changed").GetBoolean()) break;
        }

        Assert.True(body.GetProperty("changed").GetBoolean(), "the file watch applied every write before POST /admin/reload");
        Assert.Equal(written, await gateway.Client.GetStringAsync("/fixed"));
        var participants = Participants(body);
        Assert.Equal("restart-required", participants["probe"].Result);
        Assert.Equal("probe settings are read at start-up", participants["probe"].Reason);
        Assert.Equal("unchanged", participants["issuers"].Result);
        Assert.Equal("unchanged", participants["sessions"].Result);
        Assert.Contains(gateway.Logs.Lines, l => l.Contains("Reload: probe needs a restart to apply its change (probe settings are read at start-up)", StringComparison.Ordinal));
        Assert.Contains(gateway.Logs.Lines, l => l.Contains("Configuration reloaded (", StringComparison.Ordinal)
            && l.Contains("sessions unchanged, issuers unchanged, traffic unchanged, upstream-tls unchanged, upstream-credentials unchanged, probe restart-required", StringComparison.Ordinal));

        // The audit record of the config change carries the same results.
        JsonElement change = default;
        await Eventually.TrueAsync(async () =>
        {
            var path = Path.Combine(gateway.Directory, "audit.log");
            if (!File.Exists(path)) return false;
            foreach (var text in await File.ReadAllLinesAsync(path))
            {
                using var document = JsonDocument.Parse(text);
                if (document.RootElement.GetProperty("type").GetString() == "config.change")
                {
                    change = document.RootElement.Clone();
                    return true;
                }
            }

            return false;
        }, "the config.change audit record", context: gateway.LogDump());
        var audited = Participants(change);
        Assert.Equal(("restart-required", "probe settings are read at start-up"), audited["probe"]);
        Assert.Equal("unchanged", audited["issuers"].Result);
        Assert.Empty(Strings(change.GetProperty("restartRequired")));
    }

    [Fact]
    public async Task Settings_documented_as_read_at_start_report_restart_required_when_they_change()
    {
        await using var up = await TestUpstream.StartAsync("up");
        string Config(string identity, string observability, string limits) => $$"""
            {{limits}}
            identity:
              tokenCacheSize: {{identity}}
            observability:
              accessLog: { enabled: true, queueSize: {{observability}} }
              metrics: { enabled: {{(observability == "1000" ? "true" : "false")}} }
              tracing: { sampleRatio: {{(observability == "1000" ? "1" : "0.5")}} }
            routes:
              - { name: fixed, match: { path: /fixed }, respond: { body: "{{identity}}" } }
              - { name: all, cluster: web }
            clusters:
              web: { destinations: [{{up.Url}}] }
            """;
        await using var gateway = await TestGateway.StartAsync(Config("1000", "1000", ""));
        var generation = gateway.Generation;

        // Only applied settings change: nothing waits for a restart.
        await gateway.WriteConfigAsync(Config("1000", "1000", "limits: { maxRequestHeaderCount: 100 }"));
        var (status, body) = await gateway.ReloadAsync();
        Assert.Equal(200, status);
        Assert.Empty(Strings(body.GetProperty("restartRequired")));

        await gateway.WriteConfigAsync(Config("2000", "2000", "limits: { keepAliveTimeout: 60s }"));
        (status, body) = await gateway.ReloadAsync();
        Assert.Equal(200, status);
        await gateway.WaitForGenerationAsync(generation, Deadline);
        Assert.Equal("2000", await gateway.Client.GetStringAsync("/fixed"));
        Assert.Equal(
            ["limits", "identity.tokenCacheSize", "observability.accessLog.queueSize", "observability.metrics.enabled", "observability.tracing"],
            Strings(body.GetProperty("restartRequired")));
        Assert.Contains(gateway.Logs.Lines, l => l.Contains("Changes to identity.tokenCacheSize take effect only after a restart (the token caches are sized at start-up)", StringComparison.Ordinal));

        // Back to what the gateway started with: nothing pending any more.
        await gateway.WriteConfigAsync(Config("1000", "1000", ""));
        (status, body) = await gateway.ReloadAsync();
        Assert.Equal(200, status);
        Assert.Empty(Strings(body.GetProperty("restartRequired")));
    }

    [Fact]
    public async Task A_request_in_flight_across_a_reload_that_renames_its_route_and_cluster_runs_on_its_own_generation()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var old = await TestUpstream.StartAsync("old");
        old.Handler = async context =>
        {
            await release.Task.WaitAsync(context.RequestAborted);
            await context.Response.WriteAsync("old:" + context.Request.Path);
        };
        await using var fresh = await TestUpstream.StartAsync("new");
        // A map-driven route with a one-slot concurrency limit: the second request waits in the queue, past
        // routing, while the reload lands.
        await using var gateway = await TestGateway.StartAsync($$"""
            maps:
              pick: { entries: { x: old-cluster }, default: old-cluster }
            routes:
              - name: old-route
                match: { pathPrefix: /slow }
                cluster: "${map:pick(header:X-Pick)}"
                concurrency: { max: 1, queue: 5, queueTimeout: 60s }
            clusters:
              old-cluster: { destinations: [{{old.Url}}] }
            observability:
              accessLog: { enabled: true, target: file, path: access.log, flushInterval: 0s }
            """);
        var store = gateway.Services.GetRequiredService<SnapshotStore>();
        var gate = store.Current.Routes["old-route"].Concurrency!;

        var first = gateway.Client.GetAsync("/slow/first");
        await Eventually.TrueAsync(() => old.Requests == 1, "the first request at the upstream", context: gateway.LogDump());
        var second = gateway.Client.GetAsync("/slow/second");
        await Eventually.TrueAsync(() => gate.Limiter.GetStatistics()?.CurrentQueuedCount == 1, "the second request queued", context: gateway.LogDump());

        var generation = gateway.Generation;
        await gateway.WriteConfigAsync($$"""
            maps:
              pick: { entries: { x: new-cluster }, default: new-cluster }
            routes:
              - name: new-route
                match: { pathPrefix: /slow }
                cluster: "${map:pick(header:X-Pick)}"
            clusters:
              new-cluster: { destinations: [{{fresh.Url}}] }
            observability:
              accessLog: { enabled: true, target: file, path: access.log, flushInterval: 0s }
            """);
        var (status, _) = await gateway.ReloadAsync();
        Assert.Equal(200, status);
        await gateway.WaitForGenerationAsync(generation, Deadline);
        await Eventually.TrueAsync(async () => (await gateway.Client.GetAsync("/slow/probe")).IsSuccessStatusCode && fresh.Requests > 0,
            "new requests on the new route", context: gateway.LogDump());

        // Both requests of the old generation complete there: old route, old (now removed) cluster.
        release.SetResult();
        using (var response = await first)
        {
            Assert.Equal("old:/slow/first", await response.Content.ReadAsStringAsync());
        }

        using (var response = await second)
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("old:/slow/second", await response.Content.ReadAsStringAsync());
        }

        JsonElement line = default;
        await Eventually.TrueAsync(async () =>
        {
            var path = Path.Combine(gateway.Directory, "access.log");
            if (!File.Exists(path)) return false;
            foreach (var text in await File.ReadAllLinesAsync(path))
            {
                using var document = JsonDocument.Parse(text);
                if (document.RootElement.GetProperty("path").GetString() == "/slow/second")
                {
                    line = document.RootElement.Clone();
                    return true;
                }
            }

            return false;
        }, "the access-log line of the second request", context: gateway.LogDump());
        Assert.Equal("old-route", line.GetProperty("route").GetString());
        Assert.Equal("old-cluster", line.GetProperty("cluster").GetString());
        Assert.Equal(200, line.GetProperty("status").GetInt32());
    }

    private static void AddProbe(IServiceCollection services, ProbeParticipant probe)
    {
        services.AddSingleton(probe);
        services.TryAddEnumerable(ServiceDescriptor.Singleton<ISnapshotParticipant, ProbeParticipant>(sp => sp.GetRequiredService<ProbeParticipant>()));
    }

    private static Dictionary<string, (string Result, string? Reason)> Participants(JsonElement body) =>
        body.GetProperty("participants").EnumerateArray().ToDictionary(
            p => p.GetProperty("name").GetString()!,
            p => (p.GetProperty("result").GetString()!, p.TryGetProperty("reason", out var reason) ? reason.GetString() : null));

    private static string[] Strings(JsonElement array) => array.EnumerateArray().Select(e => e.GetString()!).ToArray();

    private static async Task<JsonElement> GetJsonAsync(HttpClient client, string path)
    {
        using var response = await client.GetAsync(path);
        return await response.Content.ReadFromJsonAsync<JsonElement>();
    }

    /// <summary>A participant the test steers: fails its Prepare (throws), or reports a restart.</summary>
    private sealed class ProbeParticipant : ISnapshotParticipant
    {
        private int _commits;

        public volatile bool Fail;

        public string? Restart { get; init; }

        public int Commits => Volatile.Read(ref _commits);

        public string Name => "probe";

        public PreparedChange Prepare(GatewaySnapshot next, GatewaySnapshot current)
        {
            if (Fail) throw new InvalidOperationException("probe refuses");
            void Commit() => Interlocked.Increment(ref _commits);
            return Restart is { } reason ? PreparedChange.RestartRequired(reason, Commit) : PreparedChange.Applied(Commit);
        }
    }
}
