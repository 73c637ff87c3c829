using System.Diagnostics;
using Microsoft.AspNetCore.Http;
using Portcullis.Analytics;
using Portcullis.Configuration;
using Portcullis.Identity;
using Portcullis.Pipeline;

namespace Portcullis.Tests.Analytics;

/// <summary>The recorder's rollups and samples, without a server: minute boundaries, overflow rows, drops, allocation, concurrency with flushes.</summary>
public sealed class AnalyticsRecorderTests : IDisposable
{
    private static readonly DateTimeOffset Noon = new(2026, 12, 4, 12, 0, 0, TimeSpan.Zero);
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("portcullis-recorder-");

    public void Dispose() => _dir.Delete(recursive: true);

    internal static GatewaySnapshot Snapshot(DirectoryInfo dir, string analytics = "")
    {
        var path = Path.Combine(dir.FullName, "portcullis.yaml");
        File.WriteAllText(path, $$"""
            listeners:
              - { name: public, address: "127.0.0.1:8080" }
            analytics: { path: a.duckdb{{analytics}} }
            routes:
              - { name: orders, match: { path: "/orders/{id}" }, cluster: api }
            clusters:
              api: { destinations: ["http://127.0.0.1:9"] }
            """);
        var result = new SnapshotBuilder(_ => null).Build(path);
        Assert.True(result.Succeeded, string.Join("\n", result.Diagnostics));
        return result.Snapshot!;
    }

    internal static (DefaultHttpContext Context, GatewayFeature Gateway) Request(GatewaySnapshot snapshot, DateTimeOffset at, int status = 200, string? consumer = "alice", long latencyMs = 10)
    {
        var context = new DefaultHttpContext();
        context.Request.Method = "GET";
        context.Request.Path = "/orders/42";
        context.Request.QueryString = new QueryString("?api_key=secret");
        context.Response.StatusCode = status;
        var gateway = new GatewayFeature(snapshot) { RouteName = "orders", ClusterName = "api", StartedAt = at, RequestId = "r1" };
        if (consumer is not null) gateway.Caller = new CallerIdentity { Kind = CredentialKind.ApiKey, Source = "apikey", Consumer = consumer, ConsumerGroup = "gold" };
        gateway.Times.Start = 1;
        gateway.Times.End = 1 + (Stopwatch.Frequency * latencyMs / 1000);
        context.Features.Set(gateway);
        return (context, gateway);
    }

    [Fact]
    public void Requests_are_counted_in_the_minute_they_arrived()
    {
        var snapshot = Snapshot(_dir);
        var recorder = new AnalyticsRecorder(snapshot.Analytics!);
        foreach (var at in (DateTimeOffset[])[Noon.AddMilliseconds(-1), Noon, Noon.AddSeconds(59.999), Noon.AddMinutes(1)])
        {
            var (context, gateway) = Request(snapshot, at);
            recorder.Completed(context, gateway);
        }

        var rows = recorder.Rollups.Swap();
        var byMinute = rows.ToDictionary(r => new DateTime(r.Key.MinuteTicks, DateTimeKind.Utc), r => r.Value.Requests);
        Assert.Equal(new Dictionary<DateTime, long>
        {
            [Noon.UtcDateTime.AddMinutes(-1)] = 1,
            [Noon.UtcDateTime] = 2,
            [Noon.UtcDateTime.AddMinutes(1)] = 1,
        }, byMinute);
        var noon = rows.Single(r => r.Key.MinuteTicks == Noon.UtcTicks);
        Assert.Equal(("orders", "api", "alice", "gold", (short)200, (string?)null), (noon.Key.Route, noon.Key.Cluster, noon.Key.Consumer, noon.Key.ConsumerGroup, noon.Key.Status, noon.Key.Reason));
        Assert.Equal(2 * 10_000, noon.Value.LatencySum);
        Assert.Empty(recorder.Rollups.Swap()); // taken once
    }

    [Fact]
    public void Beyond_the_row_limit_requests_go_to_the_overflow_row_and_are_counted()
    {
        var tables = new RollupTables(stripes: 1, maxKeysPerTable: 3);
        for (var i = 0; i < 5; i++) tables.Add(new RollupKey(Noon.UtcTicks, "orders", "api", "consumer-" + i, null, 200, null), 0, 0, 1000, -1);
        tables.Add(new RollupKey(Noon.UtcTicks, "orders", "api", "consumer-0", null, 200, null), 0, 0, 1000, -1); // an existing row still counts in it

        var rows = tables.Swap();
        Assert.Equal(4, rows.Count);
        Assert.Equal(2, rows[new RollupKey(Noon.UtcTicks, "orders", "api", "consumer-0", null, 200, null)].Requests);
        Assert.Equal(2, rows.Single(r => r.Key.Route == RollupKey.OverflowRoute).Value.Requests);
        Assert.Equal(2, tables.Overflowed);
        Assert.Equal(6, rows.Values.Sum(c => c.Requests));
    }

    [Fact]
    public void Samples_every_failure_a_share_of_successes_templates_no_query_and_a_full_queue_drops_and_counts()
    {
        var snapshot = Snapshot(_dir, ", samples: { successRate: 0, queueSize: 3 }");
        var recorder = new AnalyticsRecorder(snapshot.Analytics!);
        for (var i = 0; i < 4; i++)
        {
            var (ok, okGateway) = Request(snapshot, Noon);
            recorder.Completed(ok, okGateway); // successRate 0: never sampled
        }

        for (var i = 0; i < 5; i++)
        {
            var (failed, failedGateway) = Request(snapshot, Noon, status: 502);
            recorder.Completed(failed, failedGateway);
        }

        Assert.Equal(2, recorder.SamplesDropped);
        var samples = new List<AnalyticsSample>();
        while (recorder.Samples.TryRead(out var sample)) samples.Add(sample);
        Assert.Equal(3, samples.Count);
        Assert.All(samples, s => Assert.Equal(("/orders/{id}", (short)502, "alice", "gold"), (s.Path, s.Status, s.Consumer, s.ConsumerGroup)));
        Assert.Equal(9, recorder.Rollups.Swap().Values.Sum(c => c.Requests)); // rollups count every request regardless
    }

    [Fact]
    public void Recording_an_existing_row_allocates_nothing()
    {
        var snapshot = Snapshot(_dir, ", samples: { successRate: 0 }");
        var recorder = new AnalyticsRecorder(snapshot.Analytics!, stripes: 1);
        var (context, gateway) = Request(snapshot, Noon);
        for (var i = 0; i < 100; i++) recorder.Completed(context, gateway); // the row and its sketch chunk exist from here on, code paths are jitted

        // Measured twice: the first round may include a one-off of the runtime's (tiered JIT patching the loop).
        var allocated = new long[2];
        for (var round = 0; round < 2; round++)
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            for (var i = 0; i < 10_000; i++) recorder.Completed(context, gateway);
            allocated[round] = GC.GetAllocatedBytesForCurrentThread() - before;
        }

        Assert.True(allocated[1] == 0, $"allocated {allocated[0]} then {allocated[1]} bytes for 10,000 requests");
        Assert.Equal(20_100, recorder.Rollups.Swap().Values.Sum(c => c.Requests));
    }

    [Fact]
    public async Task Nothing_is_lost_or_counted_twice_when_flushes_swap_the_tables_under_concurrent_requests()
    {
        var tables = new RollupTables(stripes: 4);
        const int Threads = 4;
        const int PerThread = 200_000;
        var keys = Enumerable.Range(0, 50).Select(i => new RollupKey(Noon.UtcTicks, "r" + (i % 5), null, "c" + i, null, 200, null)).ToArray();
        var running = true;
        long flushed = 0;
        var flusher = Task.Run(() =>
        {
            while (Volatile.Read(ref running)) flushed += tables.Swap().Values.Sum(c => c.Requests);
        });
        await Task.WhenAll(Enumerable.Range(0, Threads).Select(t => Task.Run(() =>
        {
            for (var i = 0; i < PerThread; i++) tables.Add(keys[(i + t) % keys.Length], 1, 2, 100 + i % 1000, -1);
        })));
        Volatile.Write(ref running, false);
        await flusher;
        flushed += tables.Swap().Values.Sum(c => c.Requests);
        Assert.Equal(Threads * PerThread, flushed);
    }

    [Theory]
    [InlineData(false)] // swapped before the writer announced itself: it must write to the new table
    [InlineData(true)] // swapped while it writes: the swap must wait for it
    public async Task A_request_caught_by_a_swap_at_any_point_is_counted_exactly_once(bool whileWriting)
    {
        var point = whileWriting ? StripedWriterPoint.Writing : StripedWriterPoint.TableRead;
        var tables = new RollupTables(stripes: 1);
        var key = new RollupKey(Noon.UtcTicks, "orders", null, null, null, 200, null);
        using var reached = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        tables.WriterStep = p =>
        {
            if (p != point || reached.IsSet) return;
            reached.Set();
            release.Wait();
        };
        var writer = Task.Run(() => tables.Add(key, 0, 0, 100, -1));
        Assert.True(reached.Wait(TimeSpan.FromSeconds(10)), "the writer did not reach the point");

        var swap = Task.Run(tables.Swap);
        if (point == StripedWriterPoint.Writing)
        {
            await Task.Delay(200); // gives a swap that does not wait the time to finish wrongly
            Assert.False(swap.IsCompleted, "the swap did not wait for the writer inside the table");
        }

        var first = point == StripedWriterPoint.TableRead ? await swap : null;
        release.Set();
        await writer;
        first ??= await swap;
        var second = tables.Swap();
        Assert.Equal(1, first.Values.Sum(c => c.Requests) + second.Values.Sum(c => c.Requests));
    }

    [Fact]
    public void Arrivals_key_anonymous_callers_by_address_and_consumers_by_name()
    {
        var snapshot = Snapshot(_dir);
        var recorder = new AnalyticsRecorder(snapshot.Analytics!, stripes: 1);
        foreach (var (consumer, address, second) in new (string?, string, int)[]
        {
            (null, "203.0.113.7", 3), (null, "203.0.113.7", 3), (null, "203.0.113.7", 4), (null, "198.51.100.1", 3), ("alice", "203.0.113.7", 3),
        })
        {
            var (context, gateway) = Request(snapshot, Noon.AddSeconds(second), consumer: consumer);
            context.Connection.RemoteIpAddress = System.Net.IPAddress.Parse(address);
            gateway.TrafficReached = true;
            recorder.Completed(context, gateway);
        }

        var rows = recorder.Arrivals.Swap().ToDictionary(r => r.Key.RateKey, r => r.Value.ToSparse());
        Assert.Equal(["alice", "ip:198.51.100.1", "ip:203.0.113.7"], rows.Keys.Order(StringComparer.Ordinal));
        Assert.Equal([3, 4], rows["ip:203.0.113.7"].Offsets.Select(o => (int)o));
        Assert.Equal([2, 1], rows["ip:203.0.113.7"].Counts);
        Assert.Equal(1, rows["alice"].Total);
    }
}
