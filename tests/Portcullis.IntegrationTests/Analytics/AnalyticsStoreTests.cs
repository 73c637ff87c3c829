using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Portcullis.Analytics;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.Testing;
using static Portcullis.IntegrationTests.Analytics.AnalyticsTestSupport;

namespace Portcullis.IntegrationTests.Analytics;

/// <summary>
/// The analytics store end to end on a real DuckDB file: a gateway under concurrent load across routes,
/// consumers (API keys) and statuses; the rollups count exactly what the clients sent, the sketch's p99 is
/// within its documented error of the true p99, and a restart keeps the counts.
/// </summary>
public sealed class AnalyticsStoreTests : IAsyncLifetime
{
    private readonly string _directory = Directory.CreateTempSubdirectory("portcullis-analytics-it-").FullName;
    private TestUpstream _upstream = null!;

    private string Database => Path.Combine(_directory, "analytics.duckdb");

    public async Task InitializeAsync() => _upstream = await TestUpstream.StartAsync("orders");

    public async Task DisposeAsync()
    {
        await _upstream.DisposeAsync();
        Directory.Delete(_directory, recursive: true);
    }

    [Fact]
    public async Task Counts_under_load_equal_what_clients_sent_p99_within_sketch_error_and_survive_a_restart()
    {
        var (keys, alice, bob) = await KeysAsync(_directory);
        var files = new Dictionary<string, string> { ["keys.yaml"] = keys };
        // (path, key, expected status, expected rollup key) — one of each per round.
        (string Path, string? Key, HttpStatusCode Status, string Row)[] kinds =
        [
            ("/orders/1", alice, HttpStatusCode.OK, "orders|alice|gold|200|-"),
            ("/orders/2?token=secret", bob, HttpStatusCode.OK, "orders|bob|free|200|-"),
            ("/orders/3", null, HttpStatusCode.Unauthorized, "orders|-|-|401|auth.missing"),
            ("/public/42", null, HttpStatusCode.OK, "public|-|-|200|-"),
            ("/teapot", null, (HttpStatusCode)418, "teapot|-|-|418|-"),
            ("/nowhere/" + new string('x', 300), null, HttpStatusCode.NotFound, "-|-|-|404|route.unmatched"),
        ];
        const int Rounds = 150;
        var expected = new Dictionary<string, long>();

        await using (var gateway = await TestGateway.StartAsync(ConfigFor(Database, _upstream.Url), files))
        {
            // 16 clients at once, each sending its share of every kind.
            var work = Enumerable.Range(0, Rounds).SelectMany(_ => kinds).ToArray();
            var statuses = new HttpStatusCode[work.Length];
            await Parallel.ForAsync(0, work.Length, new ParallelOptions { MaxDegreeOfParallelism = 16 }, async (i, _) =>
                statuses[i] = await SendAsync(gateway.Client, work[i].Path, work[i].Key));
            for (var i = 0; i < work.Length; i++)
            {
                Assert.Equal(work[i].Status, statuses[i]);
                expected[work[i].Row] = expected.GetValueOrDefault(work[i].Row) + 1;
            }

            var database = gateway.Services.GetRequiredService<AnalyticsDatabase>();
            await Eventually.TrueAsync(() => { using var c = database.OpenConnection(); return Requests(c) == work.Length; }, "every request flushed",
                context: () => Task.FromResult(gateway.Logs.ToString()));
            using var connection = database.OpenConnection();
            Assert.Equal(expected.OrderBy(e => e.Key), CountsByKey(connection).OrderBy(e => e.Key));

            // Samples at successRate 1: one per request, template paths, never the query, raw unmatched paths capped.
            Assert.Equal(work.Length, Scalar(connection, "SELECT count(*) FROM samples"));
            Assert.Equal(Rounds * 3, Scalar(connection, "SELECT count(*) FROM samples WHERE path = '/orders/{**rest}'"));
            Assert.Equal(Rounds, Scalar(connection, "SELECT count(*) FROM samples WHERE path = '/public/{id}'"));
            Assert.Equal(Rounds, Scalar(connection, $"SELECT count(*) FROM samples WHERE path = '/nowhere/{new string('x', AnalyticsRecorder.MaxRawPathLength - 9)}'"));
            Assert.Equal(0, Scalar(connection, "SELECT count(*) FROM samples WHERE path LIKE '%?%' OR path LIKE '%secret%'"));
            Assert.Equal(Rounds * 2, Scalar(connection, "SELECT count(*) FROM samples WHERE consumer IS NOT NULL AND consumer_group IS NOT NULL AND upstream_us IS NOT NULL"));

            // The sketch's p99 against the true p99 of the same requests' latencies (the samples hold each one).
            var latencies = new List<long>();
            using (var command = connection.CreateCommand())
            {
                command.CommandText = "SELECT latency_us FROM samples ORDER BY latency_us";
                using var reader = command.ExecuteReader();
                while (reader.Read()) latencies.Add(reader.GetInt64(0));
            }

            foreach (var q in (double[])[0.5, 0.95, 0.99])
            {
                var truth = latencies[(int)Math.Floor(q * (latencies.Count - 1))];
                var sketch = LatencySketch.Quantile(MergedLatency(connection), q)!.Value;
                Assert.True(Math.Abs(sketch - truth) <= (LatencySketch.RelativeAccuracy * truth) + 1, $"p{q * 100}: sketch {sketch} µs, true {truth} µs");
            }
        }

        // A restart on the same file: the earlier counts are still there, new ones add to them.
        await using (var gateway = await TestGateway.StartAsync(ConfigFor(Database, _upstream.Url), files))
        {
            Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway.Client, "/public/1"));
            var database = gateway.Services.GetRequiredService<AnalyticsDatabase>();
            await Eventually.TrueAsync(() => { using var c = database.OpenConnection(); return Requests(c) == (Rounds * kinds.Length) + 1; }, "earlier counts kept, new one added");
        }
    }

    [Fact]
    public async Task A_reload_that_moves_the_file_is_reported_restart_required_the_store_keeps_its_file_and_sampling_changes_apply()
    {
        var (keys, _, _) = await KeysAsync(_directory);
        await using var gateway = await TestGateway.StartAsync(ConfigFor(Database, _upstream.Url), new Dictionary<string, string> { ["keys.yaml"] = keys });
        Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway.Client, "/public/1")); // sampled at successRate 1

        var other = Path.Combine(_directory, "other.duckdb");
        var generation = gateway.Generation;
        await gateway.WriteConfigAsync(ConfigFor(other, _upstream.Url).Replace("successRate: 1", "successRate: 0", StringComparison.Ordinal));
        var (status, body) = await gateway.ReloadAsync();
        Assert.Equal(200, status);
        Assert.Contains("analytics.path", body.GetProperty("restartRequired").EnumerateArray().Select(e => e.GetString()));
        await gateway.WaitForGenerationAsync(generation);

        Assert.Equal(HttpStatusCode.OK, await SendAsync(gateway.Client, "/public/2")); // successRate 0 applies: not sampled
        Assert.Equal((HttpStatusCode)418, await SendAsync(gateway.Client, "/teapot")); // failures always are
        var database = gateway.Services.GetRequiredService<AnalyticsDatabase>();
        await Eventually.TrueAsync(() => { using var c = database.OpenConnection(); return Requests(c) == 3; }, "three requests in the store it started with");
        using var connection = database.OpenConnection();
        Assert.Equal(2, Scalar(connection, "SELECT count(*) FROM samples"));
        Assert.Equal(Database, database.Path);
        Assert.False(File.Exists(other), "the new path is used only after a restart");
    }
}
