using System.Net;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Portcullis.Configuration;
using Portcullis.Upstream;

namespace Portcullis.Tests.Upstream;

/// <summary>The token source on a fake clock: single flight, refresh at 80 %, backoff, cached token until expiry.</summary>
public sealed class ClientCredentialsTokenSourceTests
{
    private sealed class Provider : HttpMessageHandler, IHttpClientFactory
    {
        public int Requests;
        public volatile TaskCompletionSource Gate = CompletedGate();
        public volatile int Status = 200;
        public int ExpiresIn = 100;
        public readonly List<string> Bodies = [];
        public readonly List<string?> Authorizations = [];

        private static TaskCompletionSource CompletedGate()
        {
            var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            gate.SetResult();
            return gate;
        }

        public HttpClient CreateClient(string name) => new(this, disposeHandler: false);

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var n = Interlocked.Increment(ref Requests);
            var body0 = await request.Content!.ReadAsStringAsync(cancellationToken);
            lock (Bodies)
            {
                Bodies.Add(body0);
                Authorizations.Add(request.Headers.Authorization?.ToString());
            }

            await Gate.Task.WaitAsync(cancellationToken);
            var body = Status == 200
                ? $$"""{"access_token":"token-{{n}}","token_type":"Bearer","expires_in":{{ExpiresIn}}}"""
                : """{"error":"temporarily_unavailable","error_description":"down"}""";
            return new HttpResponseMessage((HttpStatusCode)Status) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        }
    }

    private static ClientCredentialsSettings Settings(double refreshAt = 0.8) => new(
        "orders", new Uri("https://login.example.test/token"), "gateway id", ClientAuthentication.SecretEnv, null, "SECRET", null, null,
        ClientAssertionAlgorithm.Rs256, null, "orders.read", null, refreshAt, "Authorization", TimeSpan.FromSeconds(10));

    [Fact]
    public async Task Concurrent_first_requests_share_one_fetch_and_the_token_is_refreshed_at_80_percent()
    {
        var time = new FakeTimeProvider(DateTimeOffset.Parse("2026-01-01T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
        var provider = new Provider { Gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously) };
        using var source = new ClientCredentialsTokenSource(Settings(), provider, time, name => name == "SECRET" ? "s3:cret" : null, NullLogger.Instance);
        source.Start();
        var waiting = Enumerable.Range(0, 50).Select(_ => source.GetHeaderAsync().AsTask()).ToArray();
        await Eventually.TrueAsync(() => provider.Requests == 1, "the first fetch did not start");
        provider.Gate.SetResult();
        Assert.All(await Task.WhenAll(waiting), value => Assert.Equal("Bearer token-1", value));
        Assert.Equal(1, provider.Requests);
        Assert.Contains("grant_type=client_credentials", provider.Bodies[0], StringComparison.Ordinal);
        Assert.Contains("scope=orders.read", provider.Bodies[0], StringComparison.Ordinal);
        // client_secret_basic: id and secret form-encoded, then Base64.
        Assert.Equal("Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes("gateway%20id:s3%3Acret")), provider.Authorizations[0]);

        time.Advance(TimeSpan.FromSeconds(79));
        Assert.Equal("Bearer token-1", await source.GetHeaderAsync());
        Assert.Equal(1, provider.Requests);
        time.Advance(TimeSpan.FromSeconds(1));
        await Eventually.TrueAsync(() => source.GetHeaderAsync().AsTask().Result == "Bearer token-2", "not refreshed at 80 %");
        Assert.Equal(2, provider.Requests);
    }

    [Fact]
    public async Task A_failing_provider_is_retried_with_backoff_and_the_cached_token_serves_until_it_expires()
    {
        var time = new FakeTimeProvider(DateTimeOffset.Parse("2026-01-01T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture));
        var provider = new Provider();
        using var source = new ClientCredentialsTokenSource(Settings(), provider, time, _ => "secret", NullLogger.Instance);
        Assert.Equal("Bearer token-1", await source.GetHeaderAsync());

        provider.Status = 503;
        time.Advance(TimeSpan.FromSeconds(80));          // refresh at 80 s fails
        await Eventually.TrueAsync(() => provider.Requests == 2, "no refresh at 80 s");
        await Task.Delay(50);
        time.Advance(TimeSpan.FromSeconds(1));           // retry after 1 s
        await Eventually.TrueAsync(() => provider.Requests == 3, "no retry after 1 s");
        await Task.Delay(50);
        time.Advance(TimeSpan.FromSeconds(1));           // the next one waits 2 s
        await Task.Delay(100);
        Assert.Equal(3, provider.Requests);
        time.Advance(TimeSpan.FromSeconds(1));
        await Eventually.TrueAsync(() => provider.Requests == 4, "no retry after 2 s");
        Assert.Equal("Bearer token-1", await source.GetHeaderAsync()); // at 83 s of 100: still valid

        time.Advance(TimeSpan.FromSeconds(17));          // 100 s: expired
        Assert.Null(await source.GetHeaderAsync());
        var requests = provider.Requests;
        for (var i = 0; i < 20; i++) Assert.Null(await source.GetHeaderAsync());
        Assert.Equal(requests, provider.Requests);       // requests never fetch

        provider.Status = 200;
        // The backoff is capped at 30 s. Fake time moves in 1 s steps so that a retry timer the refresh loop
        // sets while time moves still fires (one 30 s jump raced the loop's next timer and was sometimes lost).
        for (var second = 0; second < 31 && await source.GetHeaderAsync() is null; second++)
        {
            time.Advance(TimeSpan.FromSeconds(1));
            await Task.Delay(20);
        }

        await Eventually.TrueAsync(() => source.GetHeaderAsync().AsTask().Result is not null, "never recovered within the 30 s backoff cap");
    }
}
