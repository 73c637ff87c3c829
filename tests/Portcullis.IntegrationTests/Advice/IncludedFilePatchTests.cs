using System.Net;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Portcullis.Advice;
using Portcullis.Analytics;
using Portcullis.Cli;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.Testing;
using Xunit.Abstractions;

namespace Portcullis.IntegrationTests.Advice;

/// <summary>
/// A rate-limit suggestion for a route defined in an included file (include: conf.d/): the running gateway offers
/// it at GET /admin/advice naming conf.d/orders.yaml, and that patch, written into conf.d/orders.yaml and
/// reloaded, makes the gateway refuse the hammering consumer (before, such a patch conflicted and was dropped).
/// </summary>
public sealed class IncludedFilePatchTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string Main = """
        advice: { interval: 5s }
        analytics:
          path: analytics.duckdb
          flushInterval: 200ms
        identity:
          apiKeys: { file: keys.yaml }
        include: [conf.d/]
        """;

    private const string Orders = """
        routes:
          - name: orders
            match: { pathPrefix: /orders }
            auth: { apiKey: true }
            cluster: orders
        clusters:
          orders:
            destinations: [{{UPSTREAM}}]
        """;

    private readonly string _keysDirectory = Directory.CreateTempSubdirectory("portcullis-advice-include-").FullName;
    private TestUpstream _upstream = null!;

    public async Task InitializeAsync() => _upstream = await TestUpstream.StartAsync("orders");

    public async Task DisposeAsync()
    {
        await _upstream.DisposeAsync();
        Directory.Delete(_keysDirectory, recursive: true);
    }

    [Fact]
    public async Task A_suggestion_for_a_route_of_an_included_file_patches_that_file_and_applied_refuses_the_hammering_consumer()
    {
        var keysFile = Path.Combine(_keysDirectory, "keys.yaml");
        await File.WriteAllTextAsync(keysFile, "consumers: {}\n");
        var keys = new Dictionary<string, string>();
        foreach (var consumer in new[] { "c0", "c1", "c2", "c3", "mallory" }) keys[consumer] = await CreateKeyAsync(keysFile, consumer);
        var orders = Orders.Replace("{{UPSTREAM}}", _upstream.Url, StringComparison.Ordinal);
        await using var gateway = await TestGateway.StartAsync(Main, new Dictionary<string, string>
        {
            ["keys.yaml"] = await File.ReadAllTextAsync(keysFile),
            ["conf.d/orders.yaml"] = orders,
        });

        // Four consumers at one to three requests a second for 15 s; mallory sends 400 as fast as it can.
        var steady = Enumerable.Range(0, 4).Select(async c =>
        {
            var random = new Random(c);
            for (var s = 0; s < 15; s++)
            {
                var paced = Task.Delay(1000);
                for (var i = random.Next(1, 4); i > 0; i--) Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway, keys["c" + c]));
                await paced;
            }
        }).ToList();
        var hammer = Task.Run(async () =>
        {
            await Task.Delay(4000);
            await Parallel.ForAsync(0, 400, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (_, _) =>
                Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway, keys["mallory"])));
        });
        await Task.WhenAll([.. steady, hammer]);

        var database = gateway.Services.GetRequiredService<AnalyticsDatabase>();
        await Eventually.TrueAsync(() =>
        {
            using var connection = database.OpenConnection();
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT coalesce(sum(requests), 0)::BIGINT FROM arrivals WHERE rate_key = 'mallory'";
            return Convert.ToInt64(command.ExecuteScalar()) == 400;
        }, "the arrivals flushed", context: () => Task.FromResult(gateway.Logs.ToString()));

        // Offered at GET /admin/advice with its patch, naming the included file.
        var after = DateTime.UtcNow;
        JsonElement finding = default;
        await Eventually.TrueAsync(async () =>
        {
            using var response = await gateway.Admin.GetAsync("/admin/advice?kind=" + FindingKinds.RateLimitSuggested);
            var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
            if (body.GetProperty("lastRun").ValueKind != JsonValueKind.Object || body.GetProperty("lastRun").GetProperty("at").GetDateTime().ToUniversalTime() <= after) return false;
            var found = body.GetProperty("findings").EnumerateArray().Where(f => f.GetProperty("subject").GetProperty("name").GetString() == "orders").ToList();
            if (found.Count == 0) return false;
            finding = found[0];
            return true;
        }, "the engine suggests a limit for orders", TimeSpan.FromSeconds(60), () => Task.FromResult(gateway.Logs.ToString()));
        var patch = finding.GetProperty("patch");
        Assert.True(patch.ValueKind == JsonValueKind.Object, "no patch offered: " + gateway.Logs);
        var yaml = patch.GetProperty("yaml").GetString()!;
        output.WriteLine(patch.GetProperty("file").GetString() + ":\n" + yaml);
        Assert.Equal(Path.Combine("conf.d", "orders.yaml"), patch.GetProperty("file").GetString());

        // Written into the file it names, and reloaded: the new limit refuses mallory's burst, not a paced consumer.
        var mainBefore = await File.ReadAllTextAsync(gateway.ConfigPath);
        var generation = gateway.Generation;
        var ordersFile = Path.Combine(gateway.Directory, "conf.d", "orders.yaml");
        await gateway.WriteFileAsync(Path.Combine("conf.d", "orders.yaml"), ConfigPatcher.Apply(await File.ReadAllTextAsync(ordersFile), yaml));
        var (status, body) = await gateway.ReloadAsync();
        Assert.True(status == 200, body.ToString());
        await gateway.WaitForGenerationAsync(generation);
        Assert.Equal(mainBefore, await File.ReadAllTextAsync(gateway.ConfigPath));

        var normal = new List<HttpStatusCode>();
        for (var i = 0; i < 3; i++)
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
    }

    private static async Task<HttpStatusCode> SendAsync(TestGateway gateway, string key)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/orders/1");
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
}
