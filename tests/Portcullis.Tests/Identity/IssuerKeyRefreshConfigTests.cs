namespace Portcullis.Tests.Identity;

/// <summary>Issue 14, item 3: keys.minRefreshInterval is compiled into the key source and validated with its position.</summary>
public sealed class IssuerKeyRefreshConfigTests : ConfigBuildTestBase
{
    public IssuerKeyRefreshConfigTests()
        : base("portcullis-keyrefresh-") => WriteFile("jwks.json", """{"keys":[]}""");

    // The keys: line is line 11; its first key starts at column 15.
    private static string Config(string keys) => $$"""
        listeners:
          - name: public
            address: 127.0.0.1:8080
        identity:
          issuers:
            - name: corp
              jwksFile: jwks.json
              issuer: https://issuer.test/
              audiences: [orders-api]
              keys:
                {{keys}}
        """;

    [Fact]
    public void Defaults_AreFiveMinutesAndOneMinute()
    {
        var result = Build(Config("staleFor: 1h"));
        Assert.True(result.Succeeded, Dump(result));
        var source = result.Snapshot!.Issuers.Single(i => i.Name == "corp").KeySource;
        Assert.Equal(TimeSpan.FromMinutes(5), source.RefreshInterval);
        Assert.Equal(TimeSpan.FromMinutes(1), source.MinRefreshInterval);
    }

    [Fact]
    public void MinRefreshInterval_Zero_IsAnErrorAtItsPosition()
    {
        var error = SingleError(Build(Config("minRefreshInterval: 0s")));
        AssertAt(error, 11, 29);
        Assert.Equal("minRefreshInterval must be greater than zero", error.Message);
        Assert.NotNull(error.Hint);
    }

    [Fact]
    public void MinRefreshInterval_AboveRefreshInterval_IsAccepted_RefreshIntervalWins()
    {
        var result = Build(Config("refreshInterval: 1s\n        minRefreshInterval: 1m"));
        Assert.True(result.Succeeded, Dump(result));
        var source = result.Snapshot!.Issuers.Single(i => i.Name == "corp").KeySource;
        Assert.Equal(TimeSpan.FromSeconds(1), Portcullis.Identity.IssuerKeyCache.RefreshDelay(TimeSpan.Zero, source));
    }
}
