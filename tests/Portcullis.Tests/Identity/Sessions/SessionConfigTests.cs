using Portcullis.Configuration;

namespace Portcullis.Tests.Identity.Sessions;

/// <summary>
/// identity.sessions and routes' auth.session: what compiles, and each configuration error pinned to its
/// 1-based line:column with message and hint.
/// </summary>
public sealed class SessionConfigTests : ConfigBuildTestBase
{
    public SessionConfigTests()
        : base("portcullis-sessions-")
    {
        _environment["OIDC_SECRET"] = "s3cret-value";
    }

    // Lines 1-6; what follows starts on line 7.
    private const string Head = """
        listeners:
          - name: public
            address: 127.0.0.1:8080
        clusters:
          app:
            destinations: [http://127.0.0.1:5001]

        """;

    // A route on provider 'corp' (lines 1-5 of what follows the head, i.e. 7-11).
    private static string Route(string provider = "corp") => $$"""
        routes:
          - name: wiki
            match: { pathPrefix: /wiki }
            auth: { session: {{provider}} }
            cluster: app

        """;

    // identity.sessions with one provider 'corp' on lines 12-19 (after Route); extra lines follow at line 20.
    private static string Sessions(string secretLine = "clientSecretEnv: OIDC_SECRET", string scopes = "[openid, email]", string extra = "") => $"""
        identity:
          sessions:
            providers:
              - name: corp
                authority: https://login.example.test/
                clientId: gateway
                {secretLine}
                scopes: {scopes}
        {extra}
        """;

    [Fact]
    public void Valid_CompilesProvidersCookieAndStore()
    {
        var result = Build(Head + Route() + Sessions(extra: """
                cookie: { name: __Secure-wiki, domain: example.test, idleTimeout: 30m, absoluteTimeout: 8h }
                store: redis
                keyRing: { unprotected: true }
            stores:
              redis: { connection: "127.0.0.1:6379", keyPrefix: "gw:" }
            """));

        Assert.True(result.Succeeded, Dump(result));
        var sessions = result.Snapshot!.Sessions!;
        var corp = sessions.Providers["corp"];
        Assert.Equal("s3cret-value", corp.ClientSecret);
        Assert.Equal("/.portcullis/callback/corp", corp.CallbackPath);
        Assert.Equal("__Secure-wiki-corp", corp.CookieName);
        Assert.Equal("example.test", sessions.CookieDomain);
        Assert.Equal(TimeSpan.FromMinutes(30), sessions.IdleTimeout);
        Assert.Equal(TimeSpan.FromHours(8), sessions.AbsoluteTimeout);
        Assert.Equal(SessionStoreKind.Redis, sessions.Store);
        Assert.Equal("127.0.0.1:6379", sessions.RedisConnection);
        Assert.Equal("gw:", sessions.RedisKeyPrefix);
        Assert.Equal("corp", result.Snapshot.Routes["wiki"].Auth!.Session);
        // The cleartext listener never carries a Secure cookie: a warning, not an error.
        Assert.Contains(result.Diagnostics, d => d.Message.Contains("cleartext listener 'public'", StringComparison.Ordinal));
    }

    [Fact]
    public void Route_NamingAnUnknownProvider_PointsAtItsSession_AndSuggests()
    {
        var result = Build(Head + Route("crop") + Sessions());

        var error = SingleError(result);
        AssertAt(error, 10, 22);
        Assert.Equal("unknown session provider 'crop'", error.Message);
        Assert.Equal("did you mean 'corp'?", error.Hint);
    }

    [Fact]
    public void Provider_WithoutASecret_PointsAtTheProvider()
    {
        var result = Build(Head + Route() + Sessions(secretLine: "# no secret"));

        var error = SingleError(result);
        AssertAt(error, 15, 9);
        Assert.Equal("session provider 'corp' has no client secret", error.Message);
        Assert.Equal("add clientSecretEnv: VARIABLE (or clientSecretFile: PATH)", error.Hint);
    }

    [Fact]
    public void Provider_WithAnUnsetSecretVariable_PointsAtTheVariable()
    {
        var result = Build(Head + Route() + Sessions(secretLine: "clientSecretEnv: NOT_SET_ANYWHERE"));

        var error = SingleError(result);
        AssertAt(error, 18, 26);
        Assert.Equal("environment variable 'NOT_SET_ANYWHERE' is not set", error.Message);
    }

    [Fact]
    public void Scopes_WithoutOpenid_PointAtTheScopes()
    {
        var result = Build(Head + Route() + Sessions(scopes: "[profile, email]"));

        var error = SingleError(result);
        AssertAt(error, 19, 17);
        Assert.Equal("scopes must include openid", error.Message);
        Assert.Equal("e.g. scopes: [openid, profile, email]", error.Hint);
    }

    [Fact]
    public void HostPrefixedCookie_WithADomain_PointsAtTheDomain()
    {
        var result = Build(Head + Route() + Sessions(extra: """
                cookie: { name: __Host-wiki, domain: example.test }
            """));

        var error = SingleError(result);
        AssertAt(error, 20, 42);
        Assert.Equal("a __Host- cookie cannot have a domain", error.Message);
        Assert.Contains("__Secure-", error.Hint, StringComparison.Ordinal);
    }

    [Fact]
    public void RedisStore_WithoutStoresRedis_PointsAtTheStore()
    {
        var result = Build(Head + Route() + Sessions(extra: """
                store: redis
            """));

        var error = SingleError(result);
        AssertAt(error, 20, 12);
        Assert.Equal("store: redis needs a Redis connection, but stores.redis.connection is not set (or empty)", error.Message);
        Assert.Contains("stores: { redis: { connection:", error.Hint, StringComparison.Ordinal);
    }

    [Fact]
    public void RedisStore_WithAnEmptyConnection_IsAnErrorToo()
    {
        var result = Build(Head + Route() + Sessions(extra: """
                store: redis
            stores:
              redis: { connection: "" }
            """));

        var error = SingleError(result);
        AssertAt(error, 20, 12);
        Assert.StartsWith("store: redis needs a Redis connection", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LocalStore_NeedsNoRedis()
    {
        var result = Build(Head + Route() + Sessions());

        Assert.True(result.Succeeded, Dump(result));
        Assert.Equal(SessionStoreKind.Local, result.Snapshot!.Sessions!.Store);
        Assert.Null(result.Snapshot.Sessions.RedisConnection);
    }
}
