using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Microsoft.IdentityModel.Tokens;
using Portcullis.Identity;

namespace Portcullis.Tests.Identity;

/// <summary>
/// IssuerKeyCache with a local JWKS file and fake time (issue 13, points 12 and 13): a key set without usable
/// keys keeps the last good keys and reports why; an unknown kid gets one refresh per interval, which the
/// caller awaits.
/// </summary>
public sealed class IssuerKeyCacheTests : IDisposable
{
    private static readonly TimeSpan UnknownKidInterval = TimeSpan.FromSeconds(30);
    private readonly string _file = Path.Combine(Path.GetTempPath(), "portcullis-jwks-" + Guid.NewGuid().ToString("N") + ".json");
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 1, 8, 0, 0, TimeSpan.Zero));
    private readonly List<RSA> _rsa = [];

    public void Dispose()
    {
        File.Delete(_file);
        foreach (var rsa in _rsa) rsa.Dispose();
    }

    private readonly Dictionary<string, string> _keys = [];

    // One RSA key per kid (generating 2048-bit keys is the slow part of these tests).
    private string Key(string kid)
    {
        if (_keys.TryGetValue(kid, out var json)) return json;
        var rsa = RSA.Create(2048);
        _rsa.Add(rsa);
        var p = rsa.ExportParameters(false);
        return _keys[kid] = JsonSerializer.Serialize(new { kty = "RSA", use = "sig", alg = "RS256", kid, n = Base64UrlEncoder.Encode(p.Modulus!), e = Base64UrlEncoder.Encode(p.Exponent!) });
    }

    private void WriteKeys(params string[] keys) => WriteFile("{\"keys\":[" + string.Join(",", keys) + "]}");

    // Written aside and renamed into place: a refresh still running must never read a half-written (empty) file.
    private void WriteFile(string text)
    {
        var temporary = _file + ".tmp";
        File.WriteAllText(temporary, text);
        File.Move(temporary, _file, overwrite: true);
    }

    private IssuerKeyCache Start()
    {
        var source = new IssuerKeySource("corp", null, null, _file, TimeSpan.FromMinutes(10), UnknownKidInterval, TimeSpan.FromHours(1), TimeSpan.FromSeconds(5), TimeSpan.FromMinutes(1));
        var cache = new IssuerKeyCache(source, new HttpClient(), _time, NullLogger.Instance);
        cache.TriggerRefresh();
        Until(() => cache.Keys is not null, "the first fetch");
        return cache;
    }

    // The file is read on the thread pool: wait in real time, with a generous bound.
    private static void Until(Func<bool> condition, string what)
    {
        var watch = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(watch.Elapsed < TimeSpan.FromSeconds(10), $"{what} did not happen within 10s");
            Thread.Sleep(10);
        }
    }

    [Theory]
    [InlineData("""{"keys":[]}""", "key set rejected: the key set is empty")]
    [InlineData("""{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}]}""", "key set rejected: none of its 1 keys is a usable signing key")]
    public void KeySetWithoutUsableKeys_IsAFailure_AndTheLastGoodKeysStay(string keySet, string error)
    {
        WriteKeys(Key("a"), Key("b"));
        using var cache = Start();
        var good = cache.Keys!;

        WriteFile(keySet);
        Assert.True(cache.TriggerRefresh());
        Until(() => cache.Failures == 1, "the failed refresh");

        Assert.Same(good, cache.Keys);
        Assert.Equal(KeyAvailability.Available, cache.Availability);
        Assert.True(cache.Failing);
        Assert.Equal(error, cache.LastError);

        // Served keys again: taken, and the failure is over.
        WriteKeys(Key("c"));
        Assert.True(cache.TriggerRefresh());
        Until(() => cache.Keys!.ByKid.ContainsKey("c"), "the recovery");
        Until(() => !cache.Failing, "the failing flag to clear");
        Assert.Null(cache.LastError);
    }

    [Fact]
    public async Task UnknownKid_WaitsForOneRefresh_ThenIsRateLimitedUntilTheIntervalPasses()
    {
        WriteKeys(Key("a"));
        using var cache = Start();
        var fetches = cache.Fetches;

        WriteKeys(Key("a"), Key("b"));
        Assert.True(await cache.RefreshForUnknownKidAsync("b"));
        Assert.Equal(fetches + 1, cache.Fetches);

        // Inside the interval: refused without a fetch, though the file now has the kid.
        WriteKeys(Key("a"), Key("b"), Key("c"));
        Assert.False(await cache.RefreshForUnknownKidAsync("c"));
        Assert.Equal(fetches + 1, cache.Fetches);
        Assert.False(cache.Keys!.ByKid.ContainsKey("c"));

        _time.Advance(UnknownKidInterval);
        Assert.True(await cache.RefreshForUnknownKidAsync("c"));
        Assert.Equal(fetches + 2, cache.Fetches);

        // A kid that no fetch brings: one fetch, then false.
        _time.Advance(UnknownKidInterval);
        Assert.False(await cache.RefreshForUnknownKidAsync("never"));
        Assert.Equal(fetches + 3, cache.Fetches);
    }
}
