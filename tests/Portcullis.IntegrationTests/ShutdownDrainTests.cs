using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests;

/// <summary>
/// A shutdown as load balancers and Kubernetes need it (issue 18, item 13): the admin listener stays up to the
/// end with /readyz answering 503 `stopping` (and /healthz 200); for limits.shutdownDelay the route listeners
/// keep serving, each response closing its connection; then they refuse connections while requests in flight finish.
/// </summary>
public sealed class ShutdownDrainTests
{
    [Fact]
    public async Task Stop_KeepsTheAdminListenerUp_ReadyzAnswers503_WhileASlowRequestFinishes200()
    {
        var (upstream, release, arrived) = await SlowUpstreamAsync();
        await using var _ = upstream;
        await using var gateway = await TestGateway.StartAsync($$"""
            limits: { shutdownTimeout: 60s }
            routes:
              - { name: all, cluster: app }
            clusters:
              app: { destinations: [{{upstream.Url}}] }
            """);

        var pending = gateway.Client.GetAsync("/slow");
        await arrived.Task.WaitAsync(TimeSpan.FromSeconds(30));
        var stopping = gateway.StopAsync();

        // New connections each time, as a readiness probe makes them.
        await Eventually.TrueAsync(async () => (await ReadyzAsync(gateway)).Status == 503, "/readyz answering 503", context: () => Task.FromResult(gateway.Logs.ToString()));
        var (status, body) = await ReadyzAsync(gateway);
        Assert.Equal(503, status);
        Assert.Equal("stopping", body.GetProperty("status").GetString());
        Assert.Equal("unhealthy", body.GetProperty("checks").GetProperty("lifetime").GetProperty("status").GetString());
        using (var admin = new HttpClient { BaseAddress = new Uri(gateway.AdminUrl), Timeout = TimeSpan.FromSeconds(30) })
        using (var healthz = await admin.GetAsync("/healthz"))
        {
            Assert.Equal(HttpStatusCode.OK, healthz.StatusCode);
        }

        // The route listener refuses new connections meanwhile.
        await Eventually.TrueAsync(() => RefusesAsync(gateway.Port), "the route listener refusing connections");
        Assert.False(stopping.IsCompleted);

        release.SetResult();
        using (var response = await pending)
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("done", await response.Content.ReadAsStringAsync());
        }

        await stopping.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.True(await RefusesAsync(gateway.AdminPort), "the admin listener closes once the gateway stopped");
        Assert.Single(gateway.Logs.Lines, l => l.Contains("every in-flight request finished", StringComparison.Ordinal));
    }

    [Fact]
    public async Task ShutdownDelay_ServesNewRequestsWithConnectionClose_ThenRefusesConnections()
    {
        var (upstream, release, arrived) = await SlowUpstreamAsync();
        await using var _ = upstream;
        var h2Port = Ports.GetFree();
        await using var gateway = await TestGateway.StartAsync($$$"""
            listeners:
              - { name: public, address: "127.0.0.1:{{PORT}}" }
              - { name: h2, address: "127.0.0.1:{{{h2Port}}}", protocols: http2 }
              - { name: admin, address: "127.0.0.1:{{ADMIN_PORT}}", admin: true }
            limits: { shutdownDelay: 20s, shutdownTimeout: 60s }
            routes:
              - { name: all, cluster: app }
            clusters:
              app: { destinations: [{{{upstream.Url}}}] }
            """);

        // A slow request keeps the stop going after the delay, so that the refusal can be seen.
        var pending = gateway.Client.GetAsync("/slow");
        await arrived.Task.WaitAsync(TimeSpan.FromSeconds(30));
        var stopping = gateway.StopAsync();
        await Eventually.TrueAsync(async () => (await ReadyzAsync(gateway)).Status == 503, "/readyz answering 503", context: () => Task.FromResult(gateway.Logs.ToString()));
        Assert.Contains(gateway.Logs.Lines, l => l.Contains("the route listeners keep accepting for 00:00:20 (limits.shutdownDelay)", StringComparison.Ordinal));

        // HTTP/1.1: served, with Connection: close, and the gateway ends the connection.
        var http1 = new ConnectionWatch();
        using (var client = http1.Client(gateway.Url, HttpVersion.Version11))
        using (var response = await client.GetAsync("/fast"))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.True(response.Headers.ConnectionClose, "Connection: close during the shutdown delay");
            await http1.Closed.WaitAsync(TimeSpan.FromSeconds(15));
        }

        // HTTP/2: served, then GOAWAY ends the connection (no Connection header in HTTP/2).
        var http2 = new ConnectionWatch();
        using (var client = http2.Client($"http://127.0.0.1:{h2Port}", HttpVersion.Version20))
        using (var response = await client.GetAsync("/fast"))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(HttpVersion.Version20, response.Version);
            await http2.Closed.WaitAsync(TimeSpan.FromSeconds(15));
        }

        Assert.False(stopping.IsCompleted);
        Assert.DoesNotContain(gateway.Logs.Lines, l => l.Contains("Stopping: no new connections", StringComparison.Ordinal));

        // After the delay: both route listeners refuse connections; the admin listener still answers 503.
        await Eventually.TrueAsync(async () => await RefusesAsync(gateway.Port) && await RefusesAsync(h2Port), "the route listeners refusing connections after the delay", TimeSpan.FromSeconds(90));
        Assert.Contains(gateway.Logs.Lines, l => l.Contains("Stopping: no new connections; 1 proxied request(s) in flight", StringComparison.Ordinal));
        Assert.Equal(503, (await ReadyzAsync(gateway)).Status);

        release.SetResult();
        using (var response = await pending) Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await stopping.WaitAsync(TimeSpan.FromSeconds(60));
    }

    [Fact]
    public async Task Process_Sigterm_Readyz503_NewRequestsCloseTheirConnection_ThenRefused_SlowRequestFinishes()
    {
        var (upstream, release, arrived) = await SlowUpstreamAsync();
        await using var _ = upstream;
        var port = Ports.GetFree();
        var adminPort = Ports.GetFree();
        var directory = Directory.CreateTempSubdirectory("portcullis-drain-").FullName;
        var path = Path.Combine(directory, "portcullis.yaml");
        await File.WriteAllTextAsync(path, $$"""
            listeners:
              - { name: public, address: "127.0.0.1:{{port}}" }
              - { name: admin, address: "127.0.0.1:{{adminPort}}", admin: true }
            limits: { shutdownDelay: 20s, shutdownTimeout: 60s }
            routes:
              - { name: all, cluster: app }
            clusters:
              app: { destinations: [{{upstream.Url}}] }
            """);
        using var gateway = CliProcess.Start("run", "-c", path);
        await gateway.WaitForOutputAsync("serving", TimeSpan.FromSeconds(30));
        using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(90) };
        var pending = client.GetAsync("/slow");
        await arrived.Task.WaitAsync(TimeSpan.FromSeconds(30));

        gateway.Signal("TERM");
        await gateway.WaitForOutputAsync("limits.shutdownDelay", TimeSpan.FromSeconds(30));
        var (status, body) = await ReadyzAsync($"http://127.0.0.1:{adminPort}");
        Assert.Equal(503, status);
        Assert.Equal("stopping", body.GetProperty("status").GetString());

        // During the delay a new connection is served, and told to close.
        using (var fresh = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(30) })
        using (var response = await fresh.GetAsync("/fast"))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.True(response.Headers.ConnectionClose, "Connection: close during the shutdown delay");
        }

        // After it the route listener refuses connections, the admin listener still answers 503.
        await Eventually.TrueAsync(() => RefusesAsync(port), "the route listener refusing connections", TimeSpan.FromSeconds(90), () => Task.FromResult(gateway.Stdout));
        Assert.Equal(503, (await ReadyzAsync($"http://127.0.0.1:{adminPort}")).Status);
        Assert.False(gateway.HasExited);

        release.SetResult();
        using (var response = await pending) Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True(await gateway.WaitForExitAsync(TimeSpan.FromSeconds(60)), "did not exit after the drain");
        Assert.Equal(0, gateway.ExitCode);
        Assert.Contains("every in-flight request finished", gateway.Stdout, StringComparison.Ordinal);
        Directory.Delete(directory, recursive: true);
    }

    private static async Task<(TestUpstream Upstream, TaskCompletionSource Release, TaskCompletionSource Arrived)> SlowUpstreamAsync()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var arrived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var upstream = await TestUpstream.StartAsync("app");
        upstream.Handler = async context =>
        {
            if (context.Request.Path == "/slow")
            {
                arrived.TrySetResult();
                await release.Task;
                await context.Response.WriteAsync("done");
                return;
            }

            await context.Response.WriteAsync("fast");
        };
        return (upstream, release, arrived);
    }

    private static Task<(int Status, JsonElement Body)> ReadyzAsync(TestGateway gateway) => ReadyzAsync(gateway.AdminUrl);

    private static async Task<(int Status, JsonElement Body)> ReadyzAsync(string adminUrl)
    {
        using var admin = new HttpClient { BaseAddress = new Uri(adminUrl), Timeout = TimeSpan.FromSeconds(30) };
        using var response = await admin.GetAsync("/readyz");
        return ((int)response.StatusCode, JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone());
    }

    private static async Task<bool> RefusesAsync(int port)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            await socket.ConnectAsync(IPAddress.Loopback, port);
            return false;
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionRefused)
        {
            return true;
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
        {
            // Caught in the listen backlog as the socket closed (as with Kestrel's own stop): ask again.
            return false;
        }
    }

    /// <summary>One client connection; <see cref="Closed"/> completes when the client dropped it (the server closed it or sent GOAWAY).</summary>
    private sealed class ConnectionWatch
    {
        private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task Closed => _closed.Task;

        public HttpClient Client(string url, Version version)
        {
            var handler = new SocketsHttpHandler
            {
                PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
                ConnectCallback = async (context, cancellationToken) =>
                {
                    var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                    await socket.ConnectAsync(context.DnsEndPoint, cancellationToken);
                    return new WatchedStream(socket, _closed);
                },
            };
            return new HttpClient(handler)
            {
                BaseAddress = new Uri(url),
                DefaultRequestVersion = version,
                DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
                Timeout = TimeSpan.FromSeconds(30),
            };
        }

        private sealed class WatchedStream(Socket socket, TaskCompletionSource closed) : NetworkStream(socket, ownsSocket: true)
        {
            protected override void Dispose(bool disposing)
            {
                closed.TrySetResult();
                base.Dispose(disposing);
            }
        }
    }
}
