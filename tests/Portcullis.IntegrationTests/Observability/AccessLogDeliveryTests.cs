using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.Observability;

namespace Portcullis.IntegrationTests.Observability;

/// <summary>Sampling, rotation by size, and a stuck sink that never slows requests (drops are counted).</summary>
public sealed class AccessLogDeliveryTests : IAsyncLifetime
{
    private TestUpstream _upstream = null!;

    public async Task InitializeAsync() => _upstream = await TestUpstream.StartAsync("api");

    public async Task DisposeAsync() => await _upstream.DisposeAsync();

    private string Config(string accessLog) => $$"""
        routes:
          - { name: api, match: { pathPrefix: /api }, cluster: api }
        clusters:
          api: { destinations: ["{{_upstream.Url}}"] }
        observability:
          accessLog: {{accessLog}}
        """;

    [Fact]
    public async Task Sampling_drops_successes_but_never_errors()
    {
        await using var gateway = await TestGateway.StartAsync(Config("{ enabled: true, target: file, path: access.log, sampleSuccesses: 0 }"));
        for (var i = 0; i < 20; i++)
        {
            using var ok = await gateway.Client.GetAsync("/api/x");
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }

        using var missing = await gateway.Client.GetAsync("/nowhere");
        var line = await AccessLogFile.LineAsync(Path.Combine(gateway.Directory, "access.log"), AccessLogFile.RequestId(missing));
        Assert.Equal(404, line.GetProperty("status").GetInt32());
        Assert.Single(await AccessLogFile.LinesAsync(Path.Combine(gateway.Directory, "access.log")));
        var status = await gateway.Admin.GetFromJsonAsync<JsonElement>("/admin/observability");
        Assert.Equal(20, status.GetProperty("accessLog").GetProperty("sampledOut").GetInt64());
    }

    [Fact]
    public async Task Half_sampling_logs_about_half()
    {
        await using var gateway = await TestGateway.StartAsync(Config("{ enabled: true, target: file, path: access.log, sampleSuccesses: 0.5 }"));
        for (var i = 0; i < 200; i++)
        {
            using var ok = await gateway.Client.GetAsync("/api/x");
        }

        var status = await gateway.Admin.GetFromJsonAsync<JsonElement>("/admin/observability");
        Assert.InRange(status.GetProperty("accessLog").GetProperty("sampledOut").GetInt64(), 50, 150);
    }

    [Fact]
    public async Task The_file_rotates_by_size()
    {
        await using var gateway = await TestGateway.StartAsync(Config("{ enabled: true, target: file, path: rotating.log, maxSize: 2KiB, maxFiles: 2 }"));
        string last = "";
        for (var i = 0; i < 40; i++)
        {
            using var ok = await gateway.Client.GetAsync($"/api/{i}");
            last = AccessLogFile.RequestId(ok);
        }

        var logs = gateway.Directory;
        await AccessLogFile.LineAsync(Path.Combine(logs, "rotating.log"), last);
        var files = Directory.GetFiles(logs, "rotating.log*").Select(f => Path.GetFileName(f)!).Order().ToArray();
        Assert.Equal(["rotating.log", "rotating.log.1", "rotating.log.2"], files);
        foreach (var file in files)
        {
            var info = new FileInfo(Path.Combine(logs, file));
            Assert.InRange(info.Length, 1, 2048);
            Assert.NotEmpty(await AccessLogFile.LinesAsync(info.FullName)); // whole JSON lines only
        }
    }

    [Fact]
    public async Task A_stuck_sink_never_blocks_requests_and_drops_are_counted()
    {
        var sink = new StuckSink();
        await using var gateway = await TestGateway.StartAsync(Config("{ enabled: true, queueSize: 16 }"),
            configureServices: services => services.Replace(ServiceDescriptor.Singleton<IAccessLogSinkFactory>(sink)));

        // Warm up, then flood while the sink cannot write at all.
        using (await gateway.Client.GetAsync("/api/warm"))
        {
        }

        await sink.Entered.Task.WaitAsync(TimeSpan.FromSeconds(10));
        const int requests = 400;
        var latencies = new double[requests];
        var total = Stopwatch.StartNew();
        await Parallel.ForAsync(0, requests, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (i, ct) =>
        {
            var watch = Stopwatch.StartNew();
            using var response = await gateway.Client.GetAsync($"/api/{i}", ct);
            latencies[i] = watch.Elapsed.TotalMilliseconds;
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        });
        total.Stop();

        Array.Sort(latencies);
        var p99 = latencies[(int)(requests * 0.99)];
        Assert.True(p99 < 500, $"p99 {p99:F1} ms with a stuck log sink");
        Assert.True(total.Elapsed < TimeSpan.FromSeconds(20), $"{requests} requests took {total.Elapsed}");

        var status = (await gateway.Admin.GetFromJsonAsync<JsonElement>("/admin/observability")).GetProperty("accessLog");
        var dropped = status.GetProperty("dropped").GetInt64();
        Assert.True(dropped >= requests - 16 - 1, $"dropped {dropped}");
        Assert.Equal(requests + 1, status.GetProperty("enqueued").GetInt64());
        Assert.Equal(16, status.GetProperty("queued").GetInt32());

        // Once the sink works again, what was queued is written.
        sink.Release();
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while ((await gateway.Admin.GetFromJsonAsync<JsonElement>("/admin/observability")).GetProperty("accessLog").GetProperty("written").GetInt64() < 17)
        {
            Assert.True(DateTime.UtcNow < deadline, "queued lines were not written after the sink recovered");
            await Task.Delay(20);
        }

        Assert.Equal(17, sink.Lines);
    }

    [Fact]
    public async Task Lines_gather_for_the_flush_interval_and_go_out_in_one_write()
    {
        var sink = new CountingSink();
        await using var gateway = await TestGateway.StartAsync(Config("{ enabled: true, flushInterval: 2s }"),
            configureServices: services => services.Replace(ServiceDescriptor.Singleton<IAccessLogSinkFactory>(sink)));

        var sent = Stopwatch.StartNew();
        for (var i = 0; i < 20; i++)
        {
            using var ok = await gateway.Client.GetAsync($"/api/{i}");
        }

        await sink.WaitForLinesAsync(20, TimeSpan.FromSeconds(10));
        var status = (await gateway.Admin.GetFromJsonAsync<JsonElement>("/admin/observability")).GetProperty("accessLog");
        Assert.Equal(2000, status.GetProperty("flushIntervalMs").GetDouble());
        // One write per interval, not one per request (20 requests take far less than the 2 s interval here;
        // a very slow machine may split them over two intervals).
        Assert.True(sink.Writes <= (sent.Elapsed < TimeSpan.FromSeconds(1.5) ? 1 : 2), $"{sink.Writes} writes for 20 lines sent in {sent.Elapsed}");
    }

    [Fact]
    public async Task A_half_full_queue_is_written_before_the_interval_is_up()
    {
        var sink = new CountingSink();
        await using var gateway = await TestGateway.StartAsync(Config("{ enabled: true, flushInterval: 10s, queueSize: 10 }"),
            configureServices: services => services.Replace(ServiceDescriptor.Singleton<IAccessLogSinkFactory>(sink)));

        for (var i = 0; i < 30; i++)
        {
            using var ok = await gateway.Client.GetAsync($"/api/{i}");
        }

        // Every fifth line wakes the writer, so at most the last few wait for the 10 s interval; none is dropped.
        await sink.WaitForLinesAsync(25, TimeSpan.FromSeconds(5));
        var status = (await gateway.Admin.GetFromJsonAsync<JsonElement>("/admin/observability")).GetProperty("accessLog");
        Assert.Equal(0, status.GetProperty("dropped").GetInt64());
    }

    [Fact]
    public async Task Flush_interval_zero_writes_each_line_as_it_comes()
    {
        var sink = new CountingSink();
        await using var gateway = await TestGateway.StartAsync(Config("{ enabled: true, flushInterval: 0s }"),
            configureServices: services => services.Replace(ServiceDescriptor.Singleton<IAccessLogSinkFactory>(sink)));

        for (var i = 0; i < 5; i++)
        {
            using var ok = await gateway.Client.GetAsync($"/api/{i}");
            await sink.WaitForLinesAsync(i + 1, TimeSpan.FromSeconds(5));
        }

        Assert.Equal(5, sink.Writes);
    }

    /// <summary>Counts writes and lines.</summary>
    private sealed class CountingSink : IAccessLogSinkFactory, IAccessLogSink
    {
        private int _lines;
        private int _writes;

        public int Lines => Volatile.Read(ref _lines);

        public int Writes => Volatile.Read(ref _writes);

        public IAccessLogSink Create(CompiledAccessLog options) => this;

        public ValueTask WriteAsync(ReadOnlyMemory<byte> lines, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _writes);
            Interlocked.Add(ref _lines, lines.Span.Count((byte)'\n'));
            return ValueTask.CompletedTask;
        }

        public async Task WaitForLinesAsync(int lines, TimeSpan timeout)
        {
            var deadline = Stopwatch.StartNew();
            while (Lines < lines)
            {
                Assert.True(deadline.Elapsed < timeout, $"{Lines} of {lines} lines written after {timeout}");
                await Task.Delay(10);
            }
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }

    /// <summary>A sink whose writes wait until the test releases them.</summary>
    private sealed class StuckSink : IAccessLogSinkFactory, IAccessLogSink
    {
        private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _lines;

        public TaskCompletionSource Entered { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int Lines => Volatile.Read(ref _lines);

        public IAccessLogSink Create(CompiledAccessLog options) => this;

        public async ValueTask WriteAsync(ReadOnlyMemory<byte> lines, CancellationToken cancellationToken)
        {
            Entered.TrySetResult();
            await _release.Task.WaitAsync(cancellationToken);
            Interlocked.Add(ref _lines, lines.Span.Count((byte)'\n'));
        }

        public void Release() => _release.TrySetResult();

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
