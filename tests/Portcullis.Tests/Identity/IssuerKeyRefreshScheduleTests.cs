using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Microsoft.IdentityModel.Tokens;
using Portcullis.Identity;

namespace Portcullis.Tests.Identity;

/// <summary>
/// Issue 14, item 3: the next regular key refresh follows the JWKS response's Cache-Control max-age within
/// [minRefreshInterval, refreshInterval], with fake time; a forced refresh (admin API) fetches after the call.
/// </summary>
public sealed class IssuerKeyRefreshScheduleTests : IDisposable
{
    private static readonly TimeSpan Min = TimeSpan.FromMinutes(1);
    private static readonly TimeSpan Max = TimeSpan.FromMinutes(5);
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 1, 8, 0, 0, TimeSpan.Zero));
    private readonly RSA _rsa = RSA.Create(2048);
    private readonly JwksHandler _jwks;

    public IssuerKeyRefreshScheduleTests() => _jwks = new JwksHandler(Jwks(_rsa));

    public void Dispose() => _rsa.Dispose();

    private static IssuerKeySource Source(TimeSpan? min = null, TimeSpan? max = null) =>
        new("corp", null, "http://idp.test/jwks", null, max ?? Max, TimeSpan.FromSeconds(30), TimeSpan.FromHours(1), TimeSpan.FromSeconds(5), min ?? Min);

    [Theory]
    [InlineData(null, 300)]     // no Cache-Control: refreshInterval
    [InlineData(120, 120)]      // within bounds: max-age
    [InlineData(10, 60)]        // below: minRefreshInterval
    [InlineData(0, 60)]
    [InlineData(86_400, 300)]   // a day: never beyond refreshInterval
    public void RefreshDelay_IsTheLifetimeWithinBounds(int? lifetimeSeconds, int expectedSeconds)
    {
        var lifetime = lifetimeSeconds is { } s ? TimeSpan.FromSeconds(s) : (TimeSpan?)null;
        Assert.Equal(TimeSpan.FromSeconds(expectedSeconds), IssuerKeyCache.RefreshDelay(lifetime, Source()));
    }

    [Fact]
    public void RefreshDelay_MinAboveRefreshInterval_RefreshIntervalWins()
    {
        var source = Source(min: TimeSpan.FromMinutes(1), max: TimeSpan.FromSeconds(1));
        Assert.Equal(TimeSpan.FromSeconds(1), IssuerKeyCache.RefreshDelay(TimeSpan.Zero, source));
        Assert.Equal(TimeSpan.FromSeconds(1), IssuerKeyCache.RefreshDelay(null, source));
    }

    [Theory]
    [InlineData("max-age=90", null, 90)]
    [InlineData("public, max-age=90", "30", 60)]   // Age counts against max-age (a CDN's copy)
    [InlineData("max-age=90", "120", 0)]
    [InlineData("no-cache", null, 0)]
    [InlineData("no-store, max-age=90", null, 0)]
    [InlineData("public", null, null)]
    [InlineData(null, null, null)]
    public void FreshnessLifetime_ReadsMaxAgeMinusAge(string? cacheControl, string? age, int? expectedSeconds)
    {
        using var response = new HttpResponseMessage(HttpStatusCode.OK);
        if (cacheControl is not null) response.Headers.TryAddWithoutValidation("Cache-Control", cacheControl);
        if (age is not null) response.Headers.TryAddWithoutValidation("Age", age);
        var expected = expectedSeconds is { } s ? TimeSpan.FromSeconds(s) : (TimeSpan?)null;
        Assert.Equal(expected, IssuerDocumentRetriever.FreshnessLifetime(response));
    }

    [Fact]
    public void NextRefresh_FollowsMaxAge_NotTheRefreshInterval()
    {
        _jwks.CacheControl = "max-age=90";
        using var cache = Start();
        Assert.Equal(_time.GetUtcNow() + TimeSpan.FromSeconds(90), cache.NextRefreshAt);

        // Just before max-age: no fetch. At max-age: one.
        _time.Advance(TimeSpan.FromSeconds(89));
        Assert.Equal(1, _jwks.Requests);
        _time.Advance(TimeSpan.FromSeconds(1));
        Until(() => cache.Fetches == 2, "the refresh at max-age");
        Assert.Equal(2, _jwks.Requests);

        // The provider now says a day: the next refresh is still due within refreshInterval.
        _jwks.CacheControl = "max-age=86400";
        _time.Advance(TimeSpan.FromSeconds(90));
        Until(() => cache.Fetches == 3, "the second refresh");
        Until(() => cache.NextRefreshAt == _time.GetUtcNow() + Max, "the next refresh to be scheduled");
        _time.Advance(Max - TimeSpan.FromSeconds(1));
        Assert.Equal(3, _jwks.Requests);
        _time.Advance(TimeSpan.FromSeconds(1));
        Until(() => cache.Fetches == 4, "the refresh at refreshInterval");
    }

    [Fact]
    public void NextRefresh_NoCache_WaitsMinRefreshInterval()
    {
        _jwks.CacheControl = "no-cache";
        using var cache = Start();
        _time.Advance(Min - TimeSpan.FromSeconds(1));
        Assert.Equal(1, _jwks.Requests);
        _time.Advance(TimeSpan.FromSeconds(1));
        Until(() => cache.Fetches == 2, "the refresh at minRefreshInterval");
    }

    [Fact]
    public async Task RefreshNow_FetchesAtOnce_AndTakesAWithdrawnKeyAway()
    {
        using var other = RSA.Create(2048);
        _jwks.Body = Jwks(_rsa, other);
        using var cache = Start();
        Assert.True(cache.Keys!.ByKid.ContainsKey("k2"));

        _jwks.Body = Jwks(_rsa);
        Assert.True(await cache.RefreshNowAsync(TimeSpan.FromSeconds(10), CancellationToken.None));
        Assert.Equal(2, _jwks.Requests);
        Assert.False(cache.Keys!.ByKid.ContainsKey("k2"));
        Assert.False(cache.Failing);
    }

    private IssuerKeyCache Start()
    {
        var cache = new IssuerKeyCache(Source(), new HttpClient(_jwks), _time, NullLogger.Instance);
        Until(() => cache.Fetches == 1, "the first fetch");
        Until(() => cache.NextRefreshAt is not null, "the first schedule");
        return cache;
    }

    // Fetches run on the thread pool: wait in real time, with a generous bound.
    private static void Until(Func<bool> condition, string what)
    {
        var watch = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"{what} did not happen within 10s");
            Thread.Sleep(10);
        }
    }

    private static string Jwks(params RSA[] keys) => JsonSerializer.Serialize(new
    {
        keys = keys.Select((rsa, i) =>
        {
            var p = rsa.ExportParameters(false);
            return new { kty = "RSA", use = "sig", alg = "RS256", kid = "k" + (i + 1), n = Base64UrlEncoder.Encode(p.Modulus!), e = Base64UrlEncoder.Encode(p.Exponent!) };
        }),
    });

    /// <summary>The provider's JWKS endpoint: serves the body with the Cache-Control header it is told to.</summary>
    private sealed class JwksHandler(string body) : HttpMessageHandler
    {
        private int _requests;

        public volatile string Body = body;

        public volatile string? CacheControl;

        public int Requests => Volatile.Read(ref _requests);

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _requests);
            var response = new HttpResponseMessage(HttpStatusCode.OK) { Content = new StringContent(Body, MediaTypeHeaderValue.Parse("application/json")) };
            if (CacheControl is { } cacheControl) response.Headers.TryAddWithoutValidation("Cache-Control", cacheControl);
            return Task.FromResult(response);
        }
    }
}
