using System.Net;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Portcullis.Advice;
using Portcullis.Analytics;
using Portcullis.Cli;
using Portcullis.Configuration;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.Testing;
using Xunit.Abstractions;

namespace Portcullis.IntegrationTests.Advice;

/// <summary>
/// Rate-limit suggestions end to end: a real gateway with analytics records real traffic (six consumers at a
/// steady pace, one hammering the route), the advisor reads the gateway's store and suggests a limit, and the
/// patch, written to the config and reloaded, makes the gateway refuse the hammering consumer and not the others.
/// </summary>
public sealed class RateLimitAdviceTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string Config = """
        advice: { interval: 5s }
        analytics:
          path: analytics.duckdb
          flushInterval: 200ms
        identity:
          apiKeys: { file: keys.yaml }
        routes:
          - name: reports
            match: { pathPrefix: /reports }
            auth: { apiKey: true }
            cluster: reports
        clusters:
          reports:
            destinations: [{{UPSTREAM}}]
        """;

    private readonly string _keysDirectory = Directory.CreateTempSubdirectory("portcullis-advice-keys-").FullName;
    private TestUpstream _upstream = null!;

    public async Task InitializeAsync() => _upstream = await TestUpstream.StartAsync("reports");

    public async Task DisposeAsync()
    {
        await _upstream.DisposeAsync();
        Directory.Delete(_keysDirectory, recursive: true);
    }

    [Fact]
    public async Task Real_traffic_gives_a_suggestion_whose_patch_refuses_the_hammering_consumer_and_not_the_others()
    {
        var keysFile = Path.Combine(_keysDirectory, "keys.yaml");
        await File.WriteAllTextAsync(keysFile, "consumers: {}\n");
        var keys = new Dictionary<string, string>();
        foreach (var consumer in new[] { "c0", "c1", "c2", "c3", "c4", "c5", "mallory" }) keys[consumer] = await CreateKeyAsync(keysFile, consumer);
        var config = Config.Replace("{{UPSTREAM}}", _upstream.Url, StringComparison.Ordinal);
        await using var gateway = await TestGateway.StartAsync(config, new Dictionary<string, string> { ["keys.yaml"] = await File.ReadAllTextAsync(keysFile) });

        // Six consumers at one to three requests a second for 20 s; mallory sends 400 as fast as it can.
        var steady = Enumerable.Range(0, 6).Select(async c =>
        {
            var random = new Random(c);
            for (var s = 0; s < 20; s++)
            {
                var paced = Task.Delay(1000);
                for (var i = random.Next(1, 4); i > 0; i--) Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway, keys["c" + c]));
                await paced;
            }
        }).ToList();
        var hammer = Task.Run(async () =>
        {
            await Task.Delay(5000);
            await Parallel.ForAsync(0, 400, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (_, _) =>
                Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway, keys["mallory"])));
        });
        await Task.WhenAll([.. steady, hammer]);

        // Every request's arrival is in the store (the rollups count the same requests).
        var database = gateway.Services.GetRequiredService<AnalyticsDatabase>();
        await Eventually.TrueAsync(() =>
        {
            using var connection = database.OpenConnection();
            return Scalar(connection, "SELECT coalesce(sum(requests), 0)::BIGINT FROM arrivals") == Scalar(connection, "SELECT coalesce(sum(requests), 0)::BIGINT FROM rollups WHERE route = 'reports'")
                && Scalar(connection, "SELECT coalesce(sum(requests), 0)::BIGINT FROM arrivals WHERE rate_key = 'mallory'") == 400;
        }, "the arrivals flushed", context: () => Task.FromResult(gateway.Logs.ToString()));

        // The engine, running in the background, reports it at GET /admin/advice (a run that started after the flush).
        var findings = await WaitForFindingsAsync(gateway, DateTime.UtcNow, FindingKinds.RateLimitSuggested);
        var finding = Assert.Single(findings, f => f.GetProperty("kind").GetString() == FindingKinds.RateLimitSuggested);
        var patch = finding.GetProperty("patch").GetProperty("yaml").GetString()!;
        output.WriteLine(finding.GetProperty("explanation").GetString() + "\n" + patch);
        Assert.Equal("reports", finding.GetProperty("subject").GetProperty("name").GetString());
        Assert.Equal("low", finding.GetProperty("confidence").GetString()); // under a minute of history
        Assert.Equal(1, Value(finding, "abusive callers (set aside)"));
        Assert.Equal(0, Value(finding, "legitimate requests refused by the suggestion (replay)"));

        // Apply the patch to the running gateway: write the config, reload.
        var generation = gateway.Generation;
        await gateway.WriteConfigAsync(ConfigPatcher.Apply(await File.ReadAllTextAsync(gateway.ConfigPath), patch));
        var (status, body) = await gateway.ReloadAsync();
        Assert.True(status == 200, body.ToString());
        await gateway.WaitForGenerationAsync(generation);
        Assert.Equal("suggested-reports", Assert.Single(gateway.Services.GetRequiredService<SnapshotStore>().Current.Routes["reports"].RateLimits).Name);

        var normal = new List<HttpStatusCode>();
        for (var i = 0; i < 5; i++)
        {
            var paced = Task.Delay(1000);
            normal.Add(await SendAsync(gateway, keys["c0"]));
            await paced;
        }

        var hammered = new HttpStatusCode[200];
        await Parallel.ForAsync(0, hammered.Length, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (i, _) => hammered[i] = await SendAsync(gateway, keys["mallory"]));
        var refused = hammered.Count(s => s == HttpStatusCode.TooManyRequests);
        output.WriteLine($"after the patch: c0 {string.Join(",", normal.Select(s => (int)s))}; mallory {refused}/200 refused");
        Assert.All(normal, s => Assert.Equal(HttpStatusCode.OK, s));
        Assert.True(refused >= 100, $"mallory had only {refused} of 200 refused");
        Assert.All(hammered, s => Assert.True(s is HttpStatusCode.OK or HttpStatusCode.TooManyRequests, s.ToString()));
    }

    private const string ExistingLimits = """
        advice: { interval: 5s }
        analytics:
          path: analytics.duckdb
          flushInterval: 200ms
        identity:
          apiKeys: { file: keys.yaml }
        rateLimits:
          generous: { key: [consumer], limit: 1000, per: 1s }
          tight: { key: [consumer], limit: 1, per: 1s, burst: 1 }
          per-tenant: { key: [header:X-Tenant], limit: 1000, per: 1s }
        routes:
          - name: orders
            match: { pathPrefix: /orders }
            auth: { apiKey: true }
            rateLimits: [generous]
            cluster: reports
          - name: search
            match: { pathPrefix: /search }
            auth: { apiKey: true }
            rateLimits: tight
            cluster: reports
          - name: tenants
            match: { pathPrefix: /tenants }
            rateLimits: [per-tenant]
            cluster: reports
        clusters:
          reports:
            destinations: [{{UPSTREAM}}]
        """;

    [Fact]
    public async Task Real_traffic_shows_a_loose_limit_a_tight_limit_and_a_key_part_requests_never_carry()
    {
        var keysFile = Path.Combine(_keysDirectory, "keys.yaml");
        await File.WriteAllTextAsync(keysFile, "consumers: {}\n");
        var keys = new List<string>();
        for (var c = 0; c < 5; c++) keys.Add(await CreateKeyAsync(keysFile, "c" + c));
        await using var gateway = await TestGateway.StartAsync(ExistingLimits.Replace("{{UPSTREAM}}", _upstream.Url, StringComparison.Ordinal),
            new Dictionary<string, string> { ["keys.yaml"] = await File.ReadAllTextAsync(keysFile) });

        // Five consumers, three requests a second each for 12 s on orders and on search; anonymous calls to tenants without X-Tenant.
        var statuses = new System.Collections.Concurrent.ConcurrentBag<(string Route, HttpStatusCode Status)>();
        await Task.WhenAll(Enumerable.Range(0, 5).Select(async c =>
        {
            for (var s = 0; s < 12; s++)
            {
                var paced = Task.Delay(1000);
                foreach (var route in (string[])["orders", "search", "tenants"])
                {
                    for (var i = 0; i < 3; i++) statuses.Add((route, await SendAsync(gateway, route == "tenants" ? null : keys[c], "/" + route + "/1")));
                }

                await paced;
            }
        }));
        Assert.All(statuses.Where(s => s.Route != "search"), s => Assert.Equal(HttpStatusCode.OK, s.Status));
        var searchRefused = statuses.Count(s => s is ("search", HttpStatusCode.TooManyRequests));
        Assert.True(searchRefused >= 60, $"search refused only {searchRefused} of 180");

        var database = gateway.Services.GetRequiredService<AnalyticsDatabase>();
        await Eventually.TrueAsync(() =>
        {
            using var connection = database.OpenConnection();
            return Scalar(connection, "SELECT coalesce(sum(requests), 0)::BIGINT FROM arrivals") == statuses.Count;
        }, "the arrivals flushed", context: () => Task.FromResult(gateway.Logs.ToString()));
        using (var connection = database.OpenConnection())
        {
            Assert.Equal(searchRefused, Scalar(connection, "SELECT coalesce(sum(requests), 0)::BIGINT FROM arrivals WHERE route = 'search' AND limited"));
            Assert.Equal(180, Scalar(connection, "SELECT coalesce(sum(requests), 0)::BIGINT FROM arrivals WHERE route = 'tenants' AND key_missing = 'per-tenant header:X-Tenant'"));
        }

        var findings = await WaitForFindingsAsync(gateway, DateTime.UtcNow, FindingKinds.RateLimitTooLoose, FindingKinds.RateLimitTooTight, FindingKinds.RateLimitKeyAbsent);
        foreach (var f in findings) output.WriteLine($"{f.GetProperty("kind")} {f.GetProperty("subject")}: {f.GetProperty("title")}\n{f.GetProperty("patch")}");
        var loose = Assert.Single(findings, f => f.GetProperty("kind").GetString() == FindingKinds.RateLimitTooLoose);
        Assert.Equal(("rateLimit", "generous", "orders"), Subject(loose));
        var tight = Assert.Single(findings, f => f.GetProperty("kind").GetString() == FindingKinds.RateLimitTooTight);
        Assert.Equal(("rateLimit", "tight", "search"), Subject(tight));
        var absent = Assert.Single(findings, f => f.GetProperty("kind").GetString() == FindingKinds.RateLimitKeyAbsent);
        Assert.Equal(("rateLimit", "per-tenant", "tenants"), Subject(absent));

        // All three patches together validate and load into the running gateway; the raised limit stops refusing.
        var yaml = await File.ReadAllTextAsync(gateway.ConfigPath);
        foreach (var f in (JsonElement[])[loose, tight, absent]) yaml = ConfigPatcher.Apply(yaml, f.GetProperty("patch").GetProperty("yaml").GetString()!);
        var generation = gateway.Generation;
        await gateway.WriteConfigAsync(yaml);
        var (status, body) = await gateway.ReloadAsync();
        Assert.True(status == 200, body.ToString());
        await gateway.WaitForGenerationAsync(generation);
        var current = gateway.Services.GetRequiredService<SnapshotStore>().Current;
        Assert.True(current.RateLimits["generous"].Limit < 1000);
        Assert.True(current.RateLimits["tight"].Capacity >= 3, current.RateLimits["tight"].Identity);
        Assert.Equal("ip", current.RateLimits["per-tenant"].Key.ToString());
        for (var s = 0; s < 3; s++)
        {
            var paced = Task.Delay(1000);
            for (var i = 0; i < 3; i++) Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway, keys[0], "/search/1"));
            await paced;
        }
    }

    /// <summary>
    /// Polls GET /admin/advice until a run of the engine that started after <paramref name="after"/> has reported
    /// every kind in <paramref name="kinds"/>; returns the findings of those kinds.
    /// </summary>
    private static async Task<List<JsonElement>> WaitForFindingsAsync(TestGateway gateway, DateTime after, params string[] kinds)
    {
        var found = new List<JsonElement>();
        await Eventually.TrueAsync(async () =>
        {
            using var response = await gateway.Admin.GetAsync("/admin/advice");
            var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
            if (body.GetProperty("lastRun").ValueKind != JsonValueKind.Object || body.GetProperty("lastRun").GetProperty("at").GetDateTime().ToUniversalTime() <= after) return false;
            found = [.. body.GetProperty("findings").EnumerateArray().Where(f => kinds.Contains(f.GetProperty("kind").GetString()))];
            return kinds.All(k => found.Any(f => f.GetProperty("kind").GetString() == k));
        }, "the engine reports " + string.Join(", ", kinds), TimeSpan.FromSeconds(60), () => Task.FromResult(gateway.Logs.ToString()));
        return found;
    }

    private static double Value(JsonElement finding, string name) =>
        finding.GetProperty("evidence").GetProperty("values").EnumerateArray().Single(v => v.GetProperty("name").GetString() == name).GetProperty("value").GetDouble();

    private static (string?, string?, string?) Subject(JsonElement finding)
    {
        var subject = finding.GetProperty("subject");
        return (subject.GetProperty("kind").GetString(), subject.GetProperty("name").GetString(), subject.GetProperty("route").GetString());
    }

    private static async Task<HttpStatusCode> SendAsync(TestGateway gateway, string? key, string path = "/reports/1")
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (key is not null) request.Headers.TryAddWithoutValidation("X-Api-Key", key);
        using var response = await gateway.Client.SendAsync(request);
        await response.Content.ReadAsByteArrayAsync();
        return response.StatusCode;
    }

    private static async Task<string> CreateKeyAsync(string file, string consumer)
    {
        using var output = new StringWriter();
        using var errors = new StringWriter();
        var code = await PortcullisCli.RunAsync(["keys", "create", "--file", file, "--consumer", consumer, "--group", "free"], output, errors);
        Assert.True(code == 0, errors.ToString());
        return output.ToString().Split('\n').Select(l => l.TrimEnd('\r')).Single(l => l.StartsWith("key: ", StringComparison.Ordinal))[5..];
    }

    private static long Scalar(DuckDB.NET.Data.DuckDBConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        return Convert.ToInt64(command.ExecuteScalar());
    }
}
