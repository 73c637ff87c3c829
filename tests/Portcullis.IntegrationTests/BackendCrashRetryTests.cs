using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.IntegrationTests.Observability;
using Xunit.Abstractions;

namespace Portcullis.IntegrationTests;

/// <summary>
/// A backend that dies under in-flight requests on pooled keep-alive connections (issue 14, item 2):
/// idempotent requests that got no response byte and whose body is empty or was kept (retries.bufferBody) are
/// retried on another destination; a POST, a request whose body was streamed, or a response already under way is not. The failing backend is a
/// raw socket server so the fault (reset after the request arrived on a reused connection) is exact.
/// </summary>
public sealed class BackendCrashRetryTests(ITestOutputHelper output)
{
    [Theory]
    // In flight on a reused keep-alive connection, the backend dies and the kernel resets the connection.
    [InlineData(CrashingUpstream.Fault.ResetBeforeAnswer, 2)]
    // The backend still accepts but ends every connection (FIN) without answering, e.g. while it goes down.
    // SocketsHttpHandler retries an early end itself on new connections to the same destination a few times,
    // then gives up with ResponseEnded. (Had the backend stopped listening, those would be refused connects,
    // which were already retried.)
    [InlineData(CrashingUpstream.Fault.CloseBeforeAnswer, 1)]
    internal async Task Get_in_flight_when_the_backend_crashes_is_answered_by_the_healthy_destination(CrashingUpstream.Fault fault, int crashOnRequest)
    {
        using var flaky = CrashingUpstream.Start(fault, crashOnRequest);
        await using var healthy = await TestUpstream.StartAsync("b-healthy");
        await using var gateway = await StartGatewayAsync(flaky, healthy);

        // The first request opens (and leaves pooled) a keep-alive connection to the flaky destination.
        if (crashOnRequest == 2) Assert.Equal("a-flaky", await BodyAsync(gateway.Client, HttpMethod.Get, "/warm"));

        // The next request reaches the flaky destination, which dies without answering.
        using var response = await gateway.Client.GetAsync("/in-flight");
        var text = await response.Content.ReadAsStringAsync();
        Dump(gateway);
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"expected 200, got {(int)response.StatusCode}: {text}");
        Assert.Equal("b-healthy", JsonDocument.Parse(text).RootElement.GetProperty("Server").GetString());
        // The lost request did reach it: this is not a connect failure.
        if (fault == CrashingUpstream.Fault.ResetBeforeAnswer) Assert.Equal(2, flaky.Requests);
        else Assert.True(flaky.Requests >= 1);
        Assert.Equal(1, healthy.Requests);

        // Recorded like a connect retry: a warning naming the failed destination and attempts = 2 in the access log.
        Assert.Contains(RetryLines(gateway), line => line.Contains("a-flaky of cluster web lost the connection", StringComparison.Ordinal));
        var line = await AccessLogFile.LineAsync(Path.Combine(gateway.Directory, "access.log"), AccessLogFile.RequestId(response));
        Assert.Equal(2, line.GetProperty("attempts").GetInt32());
        Assert.Equal(healthy.Url, line.GetProperty("stages").GetProperty("upstream").GetProperty("destination").GetString());

        // And counted on /metrics by its reason.
        var samples = await PrometheusText.ScrapeAsync(gateway.Admin);
        Assert.Equal(1, samples.Sum(RetriesMetric, ("route", "all"), ("cluster", "web"), ("reason", "reset-before-response")));
        Assert.Equal(0, samples.Sum(RetriesMetric, ("reason", "connect-failure")));
    }

    private const string RetriesMetric = "portcullis_upstream_retries_total";

    [Fact]
    public async Task Post_with_a_body_under_the_same_fault_is_not_retried()
    {
        using var flaky = CrashingUpstream.Start(CrashingUpstream.Fault.ResetBeforeAnswer, 2);
        await using var healthy = await TestUpstream.StartAsync("b-healthy");
        await using var gateway = await StartGatewayAsync(flaky, healthy);

        Assert.Equal("a-flaky", await BodyAsync(gateway.Client, HttpMethod.Get, "/warm"));
        using var response = await gateway.Client.PostAsync("/orders", new StringContent("{\"item\":1}", Encoding.UTF8, "application/json"));
        Dump(gateway);

        await AssertProblemAsync(response, 502, "upstream.error");
        Assert.Equal(2, flaky.Requests);
        Assert.Equal(0, healthy.Requests);
        Assert.Empty(RetryLines(gateway));
    }

    [Fact]
    public async Task Put_whose_body_was_kept_is_sent_again_to_the_healthy_destination()
    {
        // 1,000 bytes declared: within retries.bufferBody (64 KiB by default), so kept as it was read.
        using var flaky = CrashingUpstream.Start(CrashingUpstream.Fault.ResetBeforeAnswer, 2);
        await using var healthy = await TestUpstream.StartAsync("b-healthy");
        await using var gateway = await StartGatewayAsync(flaky, healthy);

        Assert.Equal("a-flaky", await BodyAsync(gateway.Client, HttpMethod.Get, "/warm"));
        using var response = await gateway.Client.PutAsync("/items/1", new ByteArrayContent(new byte[1000]));
        var answer = await UpstreamAnswer.ReadAsync(response);
        Assert.Equal(("b-healthy", 1000L), (answer.Server, answer.BodyBytes));
        Assert.Equal(2, flaky.Requests);
        var line = await AccessLogFile.LineAsync(Path.Combine(gateway.Directory, "access.log"), AccessLogFile.RequestId(response));
        Assert.Equal(2, line.GetProperty("attempts").GetInt32());
    }

    [Fact]
    public async Task Put_whose_body_was_streamed_before_the_reset_is_not_retried()
    {
        // PUT is idempotent, but its body (over retries.bufferBody) has been read and sent: it cannot be sent again.
        using var flaky = CrashingUpstream.Start(CrashingUpstream.Fault.ResetBeforeAnswer, 2);
        await using var healthy = await TestUpstream.StartAsync("b-healthy");
        await using var gateway = await StartGatewayAsync(flaky, healthy);

        Assert.Equal("a-flaky", await BodyAsync(gateway.Client, HttpMethod.Get, "/warm"));
        using var response = await gateway.Client.PutAsync("/items/1", new ByteArrayContent(new byte[100_000]));
        Dump(gateway);

        await AssertProblemAsync(response, 502, "upstream.error");
        Assert.Equal(2, flaky.Requests);
        Assert.Equal(0, healthy.Requests);
        Assert.Empty(RetryLines(gateway));
        // Exactly one attempt, in the access log and on /metrics.
        var line = await AccessLogFile.LineAsync(Path.Combine(gateway.Directory, "access.log"), AccessLogFile.RequestId(response));
        Assert.Equal(1, line.GetProperty("attempts").GetInt32());
        Assert.Equal(0, (await PrometheusText.ScrapeAsync(gateway.Admin)).Sum(RetriesMetric));
    }

    [Fact]
    public async Task Get_whose_response_headers_were_already_sent_is_not_retried_when_the_connection_drops()
    {
        using var flaky = CrashingUpstream.Start(CrashingUpstream.Fault.ResetAfterHeaders, 2);
        await using var healthy = await TestUpstream.StartAsync("b-healthy");
        await using var gateway = await StartGatewayAsync(flaky, healthy);

        Assert.Equal("a-flaky", await BodyAsync(gateway.Client, HttpMethod.Get, "/warm"));

        // The status line, headers and part of the body reached the client; the rest never comes.
        using var response = await gateway.Client.GetAsync("/in-flight", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        flaky.ClientHasHeaders.SetResult();
        await Assert.ThrowsAnyAsync<Exception>(async () => await response.Content.ReadAsByteArrayAsync());
        Dump(gateway);

        Assert.Equal(0, healthy.Requests);
        Assert.Empty(RetryLines(gateway));
        var line = await AccessLogFile.LineAsync(Path.Combine(gateway.Directory, "access.log"), AccessLogFile.RequestId(response));
        Assert.Equal(1, line.GetProperty("attempts").GetInt32());
    }

    private static Task<TestGateway> StartGatewayAsync(CrashingUpstream flaky, TestUpstream healthy) =>
        // `first` always picks a-flaky while it is usable, so the faulty request is certain to go there.
        TestGateway.StartAsync($$"""
            routes:
              - { name: all, cluster: web }
            clusters:
              web:
                loadBalancing: first
                destinations: [{ name: a-flaky, address: "{{flaky.Url}}" }, { name: b-healthy, address: "{{healthy.Url}}" }]
            observability:
              accessLog: { enabled: true, target: file, path: access.log }
            """);

    private static async Task<string> BodyAsync(HttpClient client, HttpMethod method, string path)
    {
        using var response = await client.SendAsync(new HttpRequestMessage(method, path));
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"expected success, got {(int)response.StatusCode}: {text}");
        return text.StartsWith('{') ? JsonDocument.Parse(text).RootElement.GetProperty("Server").GetString()! : text;
    }

    private static async Task AssertProblemAsync(HttpResponseMessage response, int status, string reason)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True((int)response.StatusCode == status, $"expected {status}, got {(int)response.StatusCode}: {text}");
        using var json = JsonDocument.Parse(text);
        Assert.Equal(reason, json.RootElement.GetProperty("reason").GetString());
    }

    private static List<string> RetryLines(TestGateway gateway) =>
        gateway.Logs.Lines.Where(l => l.Contains("RetryMiddleware", StringComparison.Ordinal) && l.Contains("retrying", StringComparison.Ordinal)).ToList();

    private void Dump(TestGateway gateway)
    {
        foreach (var line in gateway.Logs.Lines) output.WriteLine(line);
    }

    /// <summary>
    /// An HTTP/1.1 server on raw sockets that "crashes" on the n-th request of a connection (the ones before
    /// are answered with keep-alive, so the gateway pools the connection): it resets the connection and stops
    /// listening, without answering or after sending the headers and part of the body; or (CloseBeforeAnswer)
    /// it ends every such connection with a FIN and keeps accepting.
    /// </summary>
    internal sealed class CrashingUpstream : IDisposable
    {
        public enum Fault { ResetBeforeAnswer, CloseBeforeAnswer, ResetAfterHeaders }

        private readonly TcpListener _listener;
        private readonly Fault _fault;
        private readonly int _crashOnRequest;
        private readonly CancellationTokenSource _stop = new();
        private int _requests;

        private CrashingUpstream(TcpListener listener, Fault fault, int crashOnRequest)
        {
            _listener = listener;
            _fault = fault;
            _crashOnRequest = crashOnRequest;
        }

        public string Url => $"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}";

        /// <summary>Set by the test when the client has the response headers (ResetAfterHeaders waits for it).</summary>
        public TaskCompletionSource ClientHasHeaders { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>Requests whose headers (and body, if any) were received.</summary>
        public int Requests => Volatile.Read(ref _requests);

        public static CrashingUpstream Start(Fault fault, int crashOnRequest)
        {
            var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            var upstream = new CrashingUpstream(listener, fault, crashOnRequest);
            _ = upstream.AcceptAsync();
            return upstream;
        }

        private async Task AcceptAsync()
        {
            while (!_stop.IsCancellationRequested)
            {
                Socket socket;
                try { socket = await _listener.AcceptSocketAsync(_stop.Token); }
                catch (Exception) { return; }
                _ = ServeAsync(socket);
            }
        }

        private async Task ServeAsync(Socket socket)
        {
            using var _ = socket;
            using var stream = new NetworkStream(socket, ownsSocket: false);
            var buffer = new List<byte>();
            try
            {
                for (var onConnection = 1; ; onConnection++)
                {
                    if (!await ReadRequestAsync(stream, buffer)) return;
                    Interlocked.Increment(ref _requests);
                    if (onConnection < _crashOnRequest)
                    {
                        await stream.WriteAsync("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n\r\na-flaky"u8.ToArray(), _stop.Token);
                        continue;
                    }

                    if (_fault != Fault.CloseBeforeAnswer) _listener.Stop(); // crashed: new connections are refused from now on
                    if (_fault == Fault.ResetAfterHeaders)
                    {
                        await stream.WriteAsync("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\npartial"u8.ToArray(), _stop.Token);
                        await stream.FlushAsync(_stop.Token);
                        // The connection dies only once the client has the headers (a reset can drop unread data).
                        await ClientHasHeaders.Task.WaitAsync(TimeSpan.FromSeconds(30), _stop.Token);
                    }

                    if (_fault == Fault.CloseBeforeAnswer) socket.Shutdown(SocketShutdown.Both); // FIN: the connection just ends
                    else socket.LingerState = new LingerOption(true, 0); // close → RST, like a killed process with data pending
                    socket.Close();
                    return;
                }
            }
            catch (Exception)
            {
                // The gateway went away or the test ended.
            }
        }

        // Reads one request (headers and a Content-Length body); false at end of stream.
        private async Task<bool> ReadRequestAsync(NetworkStream stream, List<byte> buffer)
        {
            var chunk = new byte[4096];
            int end;
            while ((end = HeaderEnd(buffer)) < 0)
            {
                var read = await stream.ReadAsync(chunk, _stop.Token);
                if (read == 0) return false;
                buffer.AddRange(chunk.AsSpan(0, read));
            }

            var headers = Encoding.ASCII.GetString(buffer.GetRange(0, end).ToArray());
            var length = 0;
            foreach (var line in headers.Split("\r\n"))
            {
                if (line.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase)) length = int.Parse(line[15..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
            }

            while (buffer.Count < end + 4 + length)
            {
                var read = await stream.ReadAsync(chunk, _stop.Token);
                if (read == 0) return false;
                buffer.AddRange(chunk.AsSpan(0, read));
            }

            buffer.RemoveRange(0, end + 4 + length);
            return true;
        }

        private static int HeaderEnd(List<byte> buffer)
        {
            for (var i = 0; i + 3 < buffer.Count; i++)
            {
                if (buffer[i] == '\r' && buffer[i + 1] == '\n' && buffer[i + 2] == '\r' && buffer[i + 3] == '\n') return i;
            }

            return -1;
        }

        public void Dispose()
        {
            _stop.Cancel();
            _listener.Stop();
            _stop.Dispose();
        }
    }
}
