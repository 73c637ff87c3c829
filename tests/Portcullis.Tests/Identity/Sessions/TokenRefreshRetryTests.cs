using System.Net;
using Microsoft.AspNetCore.Authentication.OpenIdConnect;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;
using Portcullis.Configuration;
using Portcullis.Identity.Sessions;

namespace Portcullis.Tests.Identity.Sessions;

/// <summary>
/// A failed token refresh is retried as the log says (issue 13, point 8): the first request after a
/// bounded backoff (1 s, doubling, at most 30 s) tries again, not a minute later; meanwhile requests share
/// the failed answer instead of hammering the provider. Time is a <see cref="FakeTimeProvider"/>; the token
/// endpoint is an in-memory handler playing the provider (503, then success).
/// </summary>
public sealed class TokenRefreshRetryTests : IDisposable
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 1, 5, 9, 0, 0, TimeSpan.Zero));
    private readonly TokenEndpoint _endpoint = new();
    private readonly ServiceProvider _services;
    private readonly TokenRefresher _refresher;
    private readonly CompiledSessionProvider _provider = new()
    {
        Name = "corp",
        Authority = new Uri("https://login.example.test/"),
        ClientId = "gateway",
        ClientSecret = "secret",
        Scopes = ["openid", "offline_access"],
        CallbackPath = "/.portcullis/callback/corp",
        SignedOutPath = "/.portcullis/signed-out/corp",
        Claims = new ClaimMappingOptions(),
        CookieName = "portcullis-corp",
    };

    public TokenRefreshRetryTests()
    {
        var services = new ServiceCollection();
        services.AddOptions<OpenIdConnectOptions>(_provider.OidcScheme).Configure(options =>
        {
            options.ConfigurationManager = new Microsoft.IdentityModel.Protocols.StaticConfigurationManager<OpenIdConnectConfiguration>(
                new OpenIdConnectConfiguration { TokenEndpoint = "https://login.example.test/token" });
            options.Backchannel = new HttpClient(_endpoint);
            options.BackchannelTimeout = TimeSpan.FromSeconds(30);
        });
        _services = services.BuildServiceProvider();
        _refresher = new TokenRefresher(_services.GetRequiredService<IOptionsMonitor<OpenIdConnectOptions>>(), _time, NullLogger<TokenRefresher>.Instance);
    }

    public void Dispose() => _services.Dispose();

    private Task<RefreshOutcome> RefreshAsync() => _refresher.RefreshAsync(_provider, "refresh-token-1");

    [Fact]
    public async Task AFailedRefresh_IsRetriedAfterABackoffThatDoublesUpTo30Seconds_ThenSucceeds()
    {
        _endpoint.Failing = true;
        Assert.Equal(RefreshResult.Failed, (await RefreshAsync()).Result);
        Assert.Equal(1, _endpoint.Calls);

        // Within the first backoff (1 s): the failure is shared, the provider not asked again.
        _time.Advance(TimeSpan.FromMilliseconds(900));
        Assert.Equal(RefreshResult.Failed, (await RefreshAsync()).Result);
        Assert.Equal(1, _endpoint.Calls);

        // After it: the next request tries again (before the fix: not for a minute).
        _time.Advance(TimeSpan.FromMilliseconds(100));
        Assert.Equal(RefreshResult.Failed, (await RefreshAsync()).Result);
        Assert.Equal(2, _endpoint.Calls);

        // Then 2 s, 4 s, 8 s, 16 s, and never more than 30 s.
        var expected = new[] { 2, 4, 8, 16, 30, 30, 30 };
        for (var i = 0; i < expected.Length; i++)
        {
            _time.Advance(TimeSpan.FromSeconds(expected[i]) - TimeSpan.FromMilliseconds(1));
            await RefreshAsync();
            Assert.Equal(2 + i, _endpoint.Calls);
            _time.Advance(TimeSpan.FromMilliseconds(1));
            await RefreshAsync();
            Assert.Equal(3 + i, _endpoint.Calls);
        }

        // The provider is back: the next attempt after the backoff refreshes, and that answer is shared
        // (a rotating refresh token is redeemed once).
        _endpoint.Failing = false;
        _time.Advance(TimeSpan.FromSeconds(30));
        var refreshed = await RefreshAsync();
        Assert.Equal(RefreshResult.Refreshed, refreshed.Result);
        Assert.Equal("new-access", refreshed.AccessToken);
        var calls = _endpoint.Calls;
        _time.Advance(TimeSpan.FromSeconds(40));
        Assert.Equal(RefreshResult.Refreshed, (await RefreshAsync()).Result);
        Assert.Equal(calls, _endpoint.Calls);
    }

    [Fact]
    public void Backoff_IsBounded()
    {
        Assert.Equal(TimeSpan.FromSeconds(1), TokenRefresher.Backoff(0));
        Assert.Equal(TimeSpan.FromSeconds(16), TokenRefresher.Backoff(4));
        Assert.Equal(TimeSpan.FromSeconds(30), TokenRefresher.Backoff(5));
        Assert.Equal(TimeSpan.FromSeconds(30), TokenRefresher.Backoff(int.MaxValue));
    }

    private sealed class TokenEndpoint : HttpMessageHandler
    {
        private int _calls;

        public volatile bool Failing;

        public int Calls => Volatile.Read(ref _calls);

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _calls);
            return Task.FromResult(Failing
                ? new HttpResponseMessage(HttpStatusCode.ServiceUnavailable) { Content = new StringContent("busy") }
                : new HttpResponseMessage(HttpStatusCode.OK) { Content = new StringContent("""{"access_token":"new-access","refresh_token":"refresh-token-2","expires_in":3600}""") });
        }
    }
}
