using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
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

        var snapshot = gateway.Services.GetRequiredService<SnapshotStore>().Current;
        var context = new AdviceContext
        {
            Now = DateTime.UtcNow.AddMinutes(1),
            Snapshot = snapshot,
            Settings = snapshot.Advice!,
            Analytics = AnalyticsSource.Local(database),
            Runtime = OfflineAdviceRuntime.Instance,
        };
        var findings = new RateLimitAdvisor(NullLogger<RateLimitAdvisor>.Instance).Detect(context);
        var finding = Assert.Single(findings, f => f.Kind == FindingKinds.RateLimitSuggested);
        output.WriteLine(finding.Explanation + "\n" + finding.Patch!.Yaml);
        Assert.Equal("reports", finding.Subject.Name);
        Assert.Equal(FindingConfidence.Low, finding.Confidence); // under a minute of history
        Assert.Contains(finding.Evidence.Values, v => v.Name == "abusive callers (set aside)" && v.Value == 1);
        Assert.Contains(finding.Evidence.Values, v => v.Name == "legitimate requests refused by the suggestion (replay)" && v.Value == 0);

        // Apply the patch to the running gateway: write the config, reload.
        var generation = gateway.Generation;
        await gateway.WriteConfigAsync(ConfigPatchMerge.Apply(await File.ReadAllTextAsync(gateway.ConfigPath), finding.Patch.Yaml));
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

    private static async Task<HttpStatusCode> SendAsync(TestGateway gateway, string key)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/reports/1");
        request.Headers.TryAddWithoutValidation("X-Api-Key", key);
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
