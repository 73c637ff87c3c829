using System.Text;
using Portcullis.Configuration;

namespace Portcullis.Tests.Identity;

/// <summary>
/// identity.introspection and routes' auth.introspection: what compiles, and each configuration error
/// pinned to its 1-based line:column with message and hint.
/// </summary>
public sealed class IntrospectionConfigTests : ConfigBuildTestBase
{
    public IntrospectionConfigTests()
        : base("portcullis-introspection-")
    {
        _environment["INTROSPECTION_SECRET"] = "s3cr:t +/é";
    }

    // Lines 1-6; what follows starts on line 7.
    private const string Head = """
        listeners:
          - name: public
            address: 127.0.0.1:8080
        clusters:
          orders:
            destinations: [http://127.0.0.1:5001]

        """;

    [Fact]
    public void Valid_CompilesIntoTheRoute_WithDefaultsAndBasicCredentials()
    {
        WriteFile("secret.txt", "file-secret\n");
        var result = Build(Head + """
            identity:
              introspection:
                - name: corp
                  endpoint: https://login.example.com/oauth2/introspect
                  clientId: "gate:way"
                  clientSecretEnv: INTROSPECTION_SECRET
                  claims: { consumerGroup: tier }
                - name: partner
                  endpoint: http://127.0.0.1:9000/introspect
                  clientId: gateway
                  clientSecretFile: secret.txt
                  cacheTtl: 2m
                  negativeTtl: 1s
                  timeout: 500ms
            routes:
              - name: orders
                auth: { introspection: [corp, partner], scopes: [orders.read] }
                cluster: orders
            """);

        Assert.True(result.Succeeded, Dump(result));
        Assert.Empty(result.Diagnostics);
        var auth = result.Snapshot!.Routes["orders"].Auth!;
        Assert.True(auth.AcceptsIntrospection);
        Assert.False(auth.AcceptsJwt);
        Assert.Equal(["corp", "partner"], auth.Introspectors.Select(i => i.Name));

        var corp = auth.Introspectors[0];
        Assert.Equal(new Uri("https://login.example.com/oauth2/introspect"), corp.Endpoint);
        Assert.Equal(TimeSpan.FromSeconds(60), corp.CacheTtl);
        Assert.Equal(TimeSpan.FromSeconds(10), corp.NegativeTtl);
        Assert.Equal(TimeSpan.FromSeconds(5), corp.Timeout);
        Assert.Equal("tier", corp.Claims.ConsumerGroup);
        // RFC 6749 §2.3.1: id and secret are form-encoded before Basic, so ':' in the id cannot split them.
        Assert.Equal("Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes("gate%3Away:s3cr%3At%20%2B%2F%C3%A9")), corp.BasicCredentials);

        var partner = auth.Introspectors[1];
        Assert.Equal("Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes("gateway:file-secret")), partner.BasicCredentials);
        Assert.Equal(TimeSpan.FromMinutes(2), partner.CacheTtl);
        Assert.Equal(TimeSpan.FromSeconds(1), partner.NegativeTtl);
        Assert.Equal(TimeSpan.FromMilliseconds(500), partner.Timeout);
        Assert.NotEqual(corp.CacheScope, partner.CacheScope);

        // The secret file is watched; the config dump never shows the secret's variable.
        Assert.Contains(Path.Combine(_directory.FullName, "secret.txt"), result.Snapshot.Files);
        var json = ConfigJson.Serialize(result.Snapshot.Config);
        Assert.DoesNotContain("INTROSPECTION_SECRET", json, StringComparison.Ordinal);
        Assert.DoesNotContain("s3cr", json, StringComparison.Ordinal);
    }

    [Fact]
    public void UnknownIntrospector_OnRoute_SuggestsTheClosestName()
    {
        var result = Build(Head + """
            identity:
              introspection:
                - name: corp
                  endpoint: https://login.example.com/introspect
                  clientId: gateway
                  clientSecretEnv: INTROSPECTION_SECRET
            routes:
              - name: orders
                auth:
                  introspection: [crop]
                cluster: orders
            """);

        var error = SingleError(result);
        AssertAt(error, 16, 23);
        Assert.Equal("unknown introspector 'crop'", error.Message);
        Assert.Equal("did you mean 'corp'?", error.Hint);
    }

    [Fact]
    public void UnknownIntrospector_FarFromAnyName_HintsToDefineIt()
    {
        var result = Build(Head + """
            routes:
              - name: orders
                auth: { introspection: [billing-idp] }
                cluster: orders
            """);

        var error = SingleError(result);
        AssertAt(error, 9, 29);
        Assert.Equal("unknown introspector 'billing-idp'", error.Message);
        Assert.Equal("define it under identity.introspection", error.Hint);
    }

    [Theory]
    [InlineData("not a url")]
    [InlineData("ftp://login.example.com/introspect")]
    [InlineData("/oauth2/introspect")]
    public void BadEndpoint_PointsAtTheValue(string endpoint)
    {
        var result = Build(Head + $$"""
            identity:
              introspection:
                - name: corp
                  endpoint: "{{endpoint}}"
                  clientId: gateway
                  clientSecretEnv: INTROSPECTION_SECRET
            """);

        var error = SingleError(result);
        AssertAt(error, 10, 17);
        Assert.Equal($"introspection endpoint '{endpoint}' is not an absolute http(s) URL", error.Message);
        Assert.StartsWith("e.g. endpoint: https://", error.Hint, StringComparison.Ordinal);
    }

    [Fact]
    public void MissingEndpoint_PointsAtTheIntrospector()
    {
        var result = Build(Head + """
            identity:
              introspection:
                - name: corp
                  clientId: gateway
                  clientSecretEnv: INTROSPECTION_SECRET
            """);

        var error = SingleError(result);
        AssertAt(error, 9, 7);
        Assert.Equal("introspector 'corp' has no endpoint", error.Message);
    }

    [Fact]
    public void SecretEnvironmentVariableNotSet_PointsAtTheVariableName()
    {
        var result = Build(Head + """
            identity:
              introspection:
                - name: corp
                  endpoint: https://login.example.com/introspect
                  clientId: gateway
                  clientSecretEnv: CORP_INTROSPECTION_SECRET
            routes:
              - name: orders
                auth: { introspection: [corp] }
                cluster: orders
            """);

        // One error: the route's reference to the broken introspector is not reported again.
        var error = SingleError(result);
        AssertAt(error, 12, 24);
        Assert.Equal("environment variable 'CORP_INTROSPECTION_SECRET' is not set", error.Message);
        Assert.NotNull(error.Hint);
    }

    [Fact]
    public void NoSecret_PointsAtTheIntrospector()
    {
        var result = Build(Head + """
            identity:
              introspection:
                - name: corp
                  endpoint: https://login.example.com/introspect
                  clientId: gateway
            """);

        var error = SingleError(result);
        AssertAt(error, 9, 7);
        Assert.Equal("introspector 'corp' has no client secret", error.Message);
        Assert.Equal("add clientSecretEnv: VARIABLE (or clientSecretFile: PATH)", error.Hint);
    }

    [Fact]
    public void BothSecretSources_PointsAtTheFile()
    {
        WriteFile("secret.txt", "file-secret");
        var result = Build(Head + """
            identity:
              introspection:
                - name: corp
                  endpoint: https://login.example.com/introspect
                  clientId: gateway
                  clientSecretEnv: INTROSPECTION_SECRET
                  clientSecretFile: secret.txt
            """);

        var error = SingleError(result);
        AssertAt(error, 13, 25);
        Assert.Equal("introspector 'corp' has both clientSecretEnv and clientSecretFile", error.Message);
    }

    [Fact]
    public void SecretFileMissing_PointsAtThePath()
    {
        var result = Build(Head + """
            identity:
              introspection:
                - name: corp
                  endpoint: https://login.example.com/introspect
                  clientId: gateway
                  clientSecretFile: secrets/corp.txt
            """);

        var error = SingleError(result);
        AssertAt(error, 12, 25);
        Assert.StartsWith("cannot read client secret file 'secrets/corp.txt'", error.Message, StringComparison.Ordinal);
        Assert.Equal("paths are relative to the config file", error.Hint);
    }

    [Fact]
    public void MissingClientId_And_DuplicateName()
    {
        var result = Build(Head + """
            identity:
              introspection:
                - name: corp
                  endpoint: https://login.example.com/introspect
                  clientSecretEnv: INTROSPECTION_SECRET
                - name: corp
                  endpoint: https://login.example.com/introspect
                  clientId: gateway
                  clientSecretEnv: INTROSPECTION_SECRET
            """);

        var missing = ErrorContaining(result, "has no clientId");
        AssertAt(missing, 9, 7);
        Assert.Equal("introspector 'corp' has no clientId", missing.Message);

        var duplicate = ErrorContaining(result, "duplicate introspector name");
        AssertAt(duplicate, 12, 13);
        Assert.Equal("duplicate introspector name 'corp'", duplicate.Message);
    }

    [Fact]
    public void NegativeTtls_AndZeroTimeout_AreRejected()
    {
        var result = Build(Head + """
            identity:
              introspection:
                - name: corp
                  endpoint: https://login.example.com/introspect
                  clientId: gateway
                  clientSecretEnv: INTROSPECTION_SECRET
                  cacheTtl: -1s
                  negativeTtl: -5s
                  timeout: 0s
            """);

        Assert.Equal(3, result.Errors.Count());
        var cacheTtl = ErrorContaining(result, "cacheTtl");
        AssertAt(cacheTtl, 13, 17);
        Assert.Equal("identity.introspection[0].cacheTtl: bad duration '-1s': a duration cannot be negative", cacheTtl.Message);
        AssertAt(ErrorContaining(result, "negativeTtl"), 14, 20);
        var timeout = ErrorContaining(result, "timeout must be greater than zero");
        AssertAt(timeout, 15, 16);
    }

    [Fact]
    public void AnonymousRoute_CannotAlsoIntrospect()
    {
        var result = Build(Head + """
            identity:
              introspection:
                - name: corp
                  endpoint: https://login.example.com/introspect
                  clientId: gateway
                  clientSecretEnv: INTROSPECTION_SECRET
            routes:
              - name: orders
                auth:
                  anonymous: true
                  introspection: [corp]
                cluster: orders
            """);

        var error = SingleError(result);
        AssertAt(error, 16, 18);
        Assert.Equal("an anonymous route cannot also require credentials", error.Message);
    }

    [Fact]
    public void PlainHttpEndpoint_OffLoopback_IsAWarning()
    {
        var result = Build(Head + """
            identity:
              introspection:
                - name: corp
                  endpoint: http://login.example.com/introspect
                  clientId: gateway
                  clientSecretEnv: INTROSPECTION_SECRET
            """);

        Assert.True(result.Succeeded, Dump(result));
        Assert.Empty(result.Errors);
        var warning = Assert.Single(result.Diagnostics, d => d.Message.Contains("plain http", StringComparison.Ordinal));
        Assert.Equal(DiagnosticSeverity.Warning, warning.Severity);
        AssertAt(warning, 10, 17);
        Assert.Equal("introspector 'corp' sends its client secret and tokens over plain http", warning.Message);
    }

    [Fact]
    public void MisspelledKey_IsReportedWithASuggestion()
    {
        var result = Build(Head + """
            identity:
              introspection:
                - name: corp
                  endpoint: https://login.example.com/introspect
                  clientId: gateway
                  clientSecretEnv: INTROSPECTION_SECRET
                  cacheTTL: 30s
            """);

        var error = SingleError(result);
        AssertAt(error, 13, 7);
        Assert.Contains("cacheTTL", error.Message, StringComparison.Ordinal);
        Assert.Contains("cacheTtl", error.Hint ?? error.Message, StringComparison.Ordinal);
    }

}
