using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests;

/// <summary>
/// Routine upstream failures are one log line with the cause, no stack trace (issue 18, item 11), and
/// YARP's lines about a map-chosen cluster name that cluster (item 12): real sockets, real probes.
/// </summary>
public sealed class UpstreamFailureLogTests
{
    [Fact]
    public async Task FailedRequestsAndProbes_LogOneLineWithTheCause_NoStackTrace()
    {
        // An upstream that accepts and closes every connection: each request and probe fails, and each is counted.
        using var broken = new ClosingListener();
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                destinations: [ { name: broken, address: "http://127.0.0.1:{{broken.Port}}" } ]
                healthCheck:
                  active: { interval: 200ms, timeout: 1s, unhealthyThreshold: 1000 }
            """);

        var requestIds = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            using var response = await gateway.Client.GetAsync("/p");
            Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
            requestIds.Add(response.Headers.GetValues("X-Request-Id").Single());
        }

        // Several more failed probes: the same failure is said once.
        var seen = broken.Connections;
        await Eventually.TrueAsync(() => broken.Connections >= seen + 4, "four more probes", context: gateway.ClustersAndLogDump());

        var lines = gateway.Logs.Lines.ToList();
        Assert.DoesNotContain(lines, line => line.Contains("   at ", StringComparison.Ordinal));
        foreach (var id in requestIds)
        {
            var line = Assert.Single(lines, l => l.Contains($"Request {id} on route all to destination broken of cluster web failed: Request: ", StringComparison.Ordinal));
            Assert.StartsWith("Warning:", line, StringComparison.Ordinal);
            Assert.Contains("ended prematurely", line, StringComparison.OrdinalIgnoreCase);
        }

        var probes = lines.Where(l => l.Contains("Health probe of destination broken of cluster web failed: ", StringComparison.Ordinal)).ToList();
        Assert.True(probes.Count == 1, string.Join("\n", probes));
        var probe = probes[0];
        Assert.StartsWith("Warning:", probe, StringComparison.Ordinal);
        Assert.Contains("ended prematurely", probe, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task NoAvailableDestinations_OfAMapChosenCluster_NamesThatCluster()
    {
        await using var v1 = await TestUpstream.StartAsync("v1");
        var dead = Ports.GetFree();
        await using var gateway = await TestGateway.StartAsync($$"""
            maps:
              pick: { entries: { v1: orders-v1 }, default: orders-v2 }
            routes:
              - name: orders
                cluster: "${map:pick(header:X-Pick)}"
            clusters:
              orders-v1: { destinations: [{{v1.Url}}] }
              orders-v2:
                destinations: [ { name: gone, address: "http://127.0.0.1:{{dead}}" } ]
                healthCheck:
                  active: { interval: 200ms, timeout: 1s, unhealthyThreshold: 1 }
            """);

        await Eventually.TrueAsync(async () =>
        {
            using var json = JsonDocument.Parse(await gateway.Admin.GetStringAsync("/admin/clusters"));
            var cluster = json.RootElement.GetProperty("clusters").EnumerateArray().Single(c => c.GetProperty("name").GetString() == "orders-v2");
            return cluster.GetProperty("destinations")[0].GetProperty("active").GetString() == "unhealthy";
        }, "orders-v2 unhealthy", context: gateway.ClustersAndLogDump());

        // YARP's own route config names the map's first cluster (orders-v1); the map's default chooses orders-v2.
        // YARP marks the destination unhealthy (what /admin/clusters shows) a moment before it rebuilds the
        // cluster's available destinations; on a busy machine a request can fall in between and try it (502).
        await Eventually.TrueAsync(async () =>
        {
            using var response = await gateway.Client.GetAsync("/orders/1");
            return response.StatusCode == HttpStatusCode.ServiceUnavailable;
        }, "orders-v2 answers 503: no available destinations", context: gateway.ClustersAndLogDump());

        var lines = gateway.Logs.Lines.Where(l => l.Contains("No available destinations", StringComparison.Ordinal)).ToList();
        Assert.Contains(lines, l => l.Contains("cluster 'orders-v2'", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, l => l.Contains("orders-v1", StringComparison.Ordinal));

        // The other cluster still answers.
        using var request = new HttpRequestMessage(HttpMethod.Get, "/orders/1");
        request.Headers.Add("X-Pick", "v1");
        using var fallback = await gateway.Client.SendAsync(request);
        Assert.Equal("v1", (await UpstreamAnswer.ReadAsync(fallback)).Server);
    }

    /// <summary>Accepts TCP connections on 127.0.0.1 and closes each at once, counting them.</summary>
    private sealed class ClosingListener : IDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly CancellationTokenSource _stop = new();
        private int _connections;

        public ClosingListener()
        {
            _listener.Start();
            _ = AcceptAsync();
        }

        public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

        public int Connections => Volatile.Read(ref _connections);

        private async Task AcceptAsync()
        {
            try
            {
                while (!_stop.IsCancellationRequested)
                {
                    var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                    Interlocked.Increment(ref _connections);
                    _ = CloseAfterRequestAsync(client);
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
            }
        }

        // Reads the request head, then closes without an answer: the client sees the response end (never a
        // reset, which closing with unread data would cause), so every failure has the same cause.
        private async Task CloseAfterRequestAsync(TcpClient client)
        {
            using (client)
            {
                try
                {
                    var stream = client.GetStream();
                    var buffer = new byte[8192];
                    var head = "";
                    while (!head.Contains("\r\n\r\n", StringComparison.Ordinal))
                    {
                        var read = await stream.ReadAsync(buffer, _stop.Token);
                        if (read == 0) return;
                        head += System.Text.Encoding.ASCII.GetString(buffer, 0, read);
                    }
                }
                catch (Exception ex) when (ex is OperationCanceledException or IOException or ObjectDisposedException)
                {
                }
            }
        }

        public void Dispose()
        {
            _stop.Cancel();
            _listener.Stop();
            _stop.Dispose();
        }
    }
}
