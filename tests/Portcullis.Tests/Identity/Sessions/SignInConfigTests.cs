using Portcullis.Configuration;

namespace Portcullis.Tests.Identity.Sessions;

/// <summary>
/// Issue 13 points 3, 5 and 9 in identity.sessions: publicClient, signInsPerMinute and authorizationParameters,
/// each error pinned to its line:column.
/// </summary>
public sealed class SignInConfigTests : ConfigBuildTestBase
{
    public SignInConfigTests()
        : base("portcullis-signin-")
    {
        _environment["OIDC_SECRET"] = "s3cret-value";
    }

    // Lines 1-11: listener, cluster, a session route; the provider starts on line 12, its last key is on line 17.
    private static string Config(string providerLines, string sessionLines = "") => $"""
        listeners:
          - name: public
            address: 127.0.0.1:8080
        clusters:
          app:
            destinations: [http://127.0.0.1:5001]
        routes:
          - name: wiki
            match: {"{"} pathPrefix: /wiki {"}"}
            auth: {"{"} session: corp {"}"}
            cluster: app
        identity:
          sessions:
            providers:
              - name: corp
                authority: https://login.example.test/
                clientId: gateway
        {providerLines}
        {sessionLines}
        """;

    [Fact]
    public void PublicClient_CompilesWithoutASecret()
    {
        var result = Build(Config("        publicClient: true"));

        Assert.True(result.Succeeded, Dump(result));
        Assert.Null(result.Snapshot!.Sessions!.Providers["corp"].ClientSecret);
    }

    [Fact]
    public void PublicClient_WithASecret_PointsAtTheSecret()
    {
        var result = Build(Config("""
                    publicClient: true
                    clientSecretEnv: OIDC_SECRET
            """));

        var error = SingleError(result);
        AssertAt(error, 19, 26);
        Assert.Equal("session provider 'corp' is a public client (publicClient: true) but has a client secret", error.Message);
    }

    [Fact]
    public void AuthorizationParameters_AreCompiled()
    {
        var result = Build(Config("""
                    clientSecretEnv: OIDC_SECRET
                    authorizationParameters: { prompt: consent, acr_values: "urn:mfa" }
            """));

        Assert.True(result.Succeeded, Dump(result));
        var parameters = result.Snapshot!.Sessions!.Providers["corp"].AuthorizationParameters;
        Assert.Equal("consent", parameters["prompt"]);
        Assert.Equal("urn:mfa", parameters["acr_values"]);
    }

    [Theory]
    [InlineData("redirect_uri")]
    [InlineData("state")]
    [InlineData("Code_Challenge")]
    [InlineData("client_id")]
    public void AuthorizationParameters_CannotSetTheFlowsOwn(string name)
    {
        var result = Build(Config($$"""
                    clientSecretEnv: OIDC_SECRET
                    authorizationParameters: { {{name}}: x }
            """));

        var error = SingleError(result);
        Assert.Equal(19, error.Line);
        Assert.Equal($"authorization parameter '{name}' is set by the sign-in flow itself", error.Message);
    }

    [Fact]
    public void SignInsPerMinute_CannotBeNegative()
    {
        var result = Build(Config("        clientSecretEnv: OIDC_SECRET", "    signInsPerMinute: -1"));

        var error = SingleError(result);
        AssertAt(error, 19, 23);
        Assert.Equal("signInsPerMinute cannot be negative", error.Message);
    }

    [Fact]
    public void SignInsPerMinute_DefaultsTo30()
    {
        var result = Build(Config("        clientSecretEnv: OIDC_SECRET"));

        Assert.True(result.Succeeded, Dump(result));
        Assert.Equal(30, result.Snapshot!.Sessions!.SignInsPerMinute);
    }
}
