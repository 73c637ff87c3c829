using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.IntegrationTests.Observability;
using Xunit.Abstractions;

namespace Portcullis.IntegrationTests;

/// <summary>
/// Issue 14, item 2 over HTTP/2 (h2c with prior knowledge): the gateway's one pooled connection to a
/// backend is reset while a GET is in flight on it. The backend is a real Kestrel h2c server behind a TCP
/// relay that plays the crash: once armed, the next bytes the gateway writes (the request's HEADERS) are
/// not passed on and the connection is reset (RST), as when the backend process is killed.
/// </summary>
public sealed class Http2CrashRetryTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Get_in_flight_on_a_reset_http2_connection_is_answered_by_the_healthy_destination()
    {
        await using var backend = await TestUpstream.StartAsync("a-flaky", http2: true);
        using var relay = ResettingRelay.Start(backend.Port);
        await using var healthy = await TestUpstream.StartAsync("b-healthy", http2: true);
        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                loadBalancing: first
                httpVersion: http2
                destinations: [{ name: a-flaky, address: "http://127.0.0.1:{{relay.Port}}" }, { name: b-healthy, address: "{{healthy.Url}}" }]
            observability:
              accessLog: { enabled: true, target: file, path: access.log }
            """);

        // The first request opens the HTTP/2 connection the gateway keeps for the next ones.
        using (var warm = await gateway.Client.GetAsync("/warm"))
        {
            Assert.Equal(HttpStatusCode.OK, warm.StatusCode);
            Assert.Equal("a-flaky", JsonDocument.Parse(await warm.Content.ReadAsStringAsync()).RootElement.GetProperty("Server").GetString());
        }

        Assert.Equal(1, relay.Connections);
        relay.Arm();
        using var response = await gateway.Client.GetAsync("/in-flight");
        var text = await response.Content.ReadAsStringAsync();
        foreach (var line in gateway.Logs.Lines) output.WriteLine(line);

        Assert.True(relay.HasReset, "the relay did not reset the connection");
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"expected 200, got {(int)response.StatusCode}: {text}");
        Assert.Equal("b-healthy", JsonDocument.Parse(text).RootElement.GetProperty("Server").GetString());
        Assert.Equal(1, backend.Requests);
        Assert.Equal(1, healthy.Requests);
        var log = await AccessLogFile.LineAsync(Path.Combine(gateway.Directory, "access.log"), AccessLogFile.RequestId(response));
        Assert.Equal(2, log.GetProperty("attempts").GetInt32());
        var samples = await PrometheusText.ScrapeAsync(gateway.Admin);
        Assert.Equal(1, samples.Sum("portcullis_upstream_retries_total", ("route", "all"), ("cluster", "web"), ("reason", "reset-before-response")));
    }

    /// <summary>A TCP relay to a local port that, once armed, resets the connection on the next bytes from the client side and stops listening.</summary>
    private sealed class ResettingRelay : IDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly int _target;
        private readonly CancellationTokenSource _stop = new();
        private int _armed;
        private int _reset;
        private int _connections;

        private ResettingRelay(int target) => _target = target;

        public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

        public int Connections => Volatile.Read(ref _connections);

        public bool HasReset => Volatile.Read(ref _reset) == 1;

        public void Arm() => Volatile.Write(ref _armed, 1);

        public static ResettingRelay Start(int target)
        {
            var relay = new ResettingRelay(target);
            relay._listener.Start();
            _ = relay.AcceptAsync();
            return relay;
        }

        private async Task AcceptAsync()
        {
            while (!_stop.IsCancellationRequested)
            {
                Socket client;
                try { client = await _listener.AcceptSocketAsync(_stop.Token); }
                catch (Exception) { return; }
                Interlocked.Increment(ref _connections);
                _ = RelayAsync(client);
            }
        }

        private async Task RelayAsync(Socket client)
        {
            using var _ = client;
            using var server = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await server.ConnectAsync(IPAddress.Loopback, _target, _stop.Token);
                var back = PumpAsync(server, client, toServer: false);
                await PumpAsync(client, server, toServer: true);
                await back;
            }
            catch (Exception)
            {
                // Either side went away, or the relay reset the connection.
            }
        }

        private async Task PumpAsync(Socket from, Socket to, bool toServer)
        {
            var buffer = new byte[16384];
            while (true)
            {
                var read = await from.ReceiveAsync(buffer, SocketFlags.None, _stop.Token);
                if (read == 0)
                {
                    to.Shutdown(SocketShutdown.Send);
                    return;
                }

                if (toServer && Volatile.Read(ref _armed) == 1)
                {
                    // The "crash": the request never reaches the backend, the gateway's connection is reset.
                    _listener.Stop();
                    from.LingerState = new LingerOption(true, 0);
                    from.Close();
                    to.Close();
                    Volatile.Write(ref _reset, 1);
                    return;
                }

                await to.SendAsync(buffer.AsMemory(0, read), SocketFlags.None, _stop.Token);
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
