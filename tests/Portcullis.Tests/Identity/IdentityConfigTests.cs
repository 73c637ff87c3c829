using Portcullis.Configuration;

namespace Portcullis.Tests.Identity;

/// <summary>
/// identity.issuers, identity.apiKeys and routes' auth: what compiles, and each configuration error pinned
/// to its 1-based line:column (as an editor shows it) with message and hint.
/// </summary>
public sealed class IdentityConfigTests : ConfigBuildTestBase
{
    private const string Secret = "0123456789abcdef0123456789abcdef";

    public IdentityConfigTests()
        : base("portcullis-identity-")
    {
        _environment["CORP_SECRET"] = Secret;
        WriteFile("jwks.json", """{"keys":[]}""");
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

    // Head plus one valid issuer 'corp' on lines 7-12; what follows starts on line 13.
    private const string WithIssuer = Head + """
        identity:
          issuers:
            - name: corp
              jwksFile: jwks.json
              issuer: https://issuer.test/
              audiences: [orders-api]

        """;

    // ---------------------------------------------------------------- valid

    [Fact]
    public void Valid_CompilesIssuersAndRouteAuth()
    {
        WriteFile("keys.yaml", "# no keys yet\n");
        var result = Build(Head + """
            identity:
              issuers:
                - name: corp
                  jwksFile: jwks.json
                  issuer: https://issuer.test/
                  audiences: [orders-api]
                - name: partner
                  sharedSecretEnv: CORP_SECRET
                  issuer: https://partner.test/
                  audiences: [orders-api]
                  algorithms: [HS256]
              apiKeys: { file: keys.yaml }
            routes:
              - name: orders
                auth:
                  issuers: [corp, partner]
                  apiKey: true
                  claims:
                    - { claim: tier, regex: "^(gold|premium)$" }
                    - any:
                        - { claim: groups, is: admins }
                        - { claim: staff, exists: true }
                cluster: orders
              - name: health
                auth: { anonymous: true }
                cluster: orders
            """);

        Assert.True(result.Succeeded, Dump(result));
        Assert.Empty(result.Diagnostics);
        var auth = result.Snapshot!.Routes["orders"].Auth!;
        Assert.Equal(["corp", "partner"], auth.Issuers.Select(i => i.Name));
        Assert.True(auth.ApiKey);
        Assert.NotNull(auth.Rule);
        var corp = auth.Issuers[0];
        Assert.Equal(["RS256", "PS256", "ES256"], corp.Algorithms);
        Assert.Equal(Path.Combine(_directory.FullName, "jwks.json"), corp.KeySource.JwksFile);
        Assert.Null(corp.SharedKey);
        var partner = auth.Issuers[1];
        Assert.Equal(["HS256"], partner.Algorithms);
        Assert.NotNull(partner.SharedKey);
        Assert.True(result.Snapshot.Routes["health"].Auth!.Anonymous);
        // The secret's variable name never shows in the config dump.
        Assert.DoesNotContain("CORP_SECRET", ConfigJson.Serialize(result.Snapshot.Config), StringComparison.Ordinal);
    }

    // ---------------------------------------------------------------- issuers

    [Fact]
    public void Issuer_WithNoKeySource_PointsAtTheIssuer()
    {
        var result = Build(Head + """
            identity:
              issuers:
                - name: corp
                  issuer: https://issuer.test/
                  audiences: [orders-api]
            """);

        var error = SingleError(result);
        AssertAt(error, 9, 7);
        Assert.Equal("issuer 'corp' needs exactly one of authority, jwksUri or jwksFile (it has 0)", error.Message);
        Assert.Equal("e.g. authority: https://login.example.com/", error.Hint);
    }

    [Fact]
    public void Issuer_WithTwoKeySources_PointsAtTheIssuer()
    {
        var result = Build(Head + """
            identity:
              issuers:
                - name: corp
                  authority: https://login.example.com/
                  jwksFile: jwks.json
                  audiences: [orders-api]
            """);

        var error = SingleError(result);
        AssertAt(error, 9, 7);
        Assert.Equal("issuer 'corp' needs exactly one of authority, jwksUri or jwksFile (it has 2)", error.Message);
    }

    [Theory]
    [InlineData("none")]
    [InlineData("None")]
    [InlineData("NONE")]
    public void NoneAlgorithm_IsNeverAccepted(string none)
    {
        var result = Build(Head + $$"""
            identity:
              issuers:
                - name: corp
                  jwksFile: jwks.json
                  issuer: https://issuer.test/
                  audiences: [orders-api]
                  algorithms: [RS256, {{none}}]
            """);

        var error = SingleError(result);
        AssertAt(error, 13, 27);
        Assert.Equal("the 'none' algorithm is never accepted", error.Message);
    }

    [Fact]
    public void Hs256_WithoutSharedSecretEnv_IsRefused()
    {
        var result = Build(Head + """
            identity:
              issuers:
                - name: corp
                  jwksFile: jwks.json
                  issuer: https://issuer.test/
                  audiences: [orders-api]
                  algorithms: [RS256, HS256]
            """);

        var error = SingleError(result);
        AssertAt(error, 13, 27);
        Assert.Equal("HS256 needs sharedSecretEnv", error.Message);
        Assert.Equal("HMAC algorithms are accepted only with an explicitly configured shared secret", error.Hint);
    }

    [Theory]
    [InlineData("RS265", "did you mean 'RS256'?")]
    [InlineData("rs256", "did you mean 'RS256'?")]
    [InlineData("ES265", "did you mean 'ES256'?")]
    [InlineData("EdDSA", null)]
    public void UnknownAlgorithm_SuggestsTheClosest(string algorithm, string? hint)
    {
        var result = Build(Head + $$"""
            identity:
              issuers:
                - name: corp
                  jwksFile: jwks.json
                  issuer: https://issuer.test/
                  audiences: [orders-api]
                  algorithms: [{{algorithm}}]
            """);

        var error = SingleError(result);
        AssertAt(error, 13, 20);
        Assert.Equal($"unknown algorithm '{algorithm}'", error.Message);
        Assert.Equal(hint, error.Hint);
    }

    [Fact]
    public void DuplicateIssuerName_PointsAtTheSecondName()
    {
        var result = Build(WithIssuer + """
                - name: corp
                  authority: https://login.example.com/
            """);

        var error = SingleError(result);
        AssertAt(error, 13, 13);
        Assert.Equal("duplicate issuer name 'corp'", error.Message);
        Assert.Equal("give each issuer its own name", error.Hint);
    }

    // ---------------------------------------------------------------- routes' auth

    [Fact]
    public void Route_NamingAnUnknownIssuer_SuggestsTheClosestName()
    {
        var result = Build(WithIssuer + """
            routes:
              - name: orders
                auth: { issuers: [crop] }
                cluster: orders
            """);

        var error = SingleError(result);
        AssertAt(error, 15, 23);
        Assert.Equal("unknown issuer 'crop'", error.Message);
        Assert.Equal("did you mean 'corp'?", error.Hint);
    }

    [Fact]
    public void Route_NamingAnIssuerFarFromAnyName_HintsToDefineIt()
    {
        var result = Build(WithIssuer + """
            routes:
              - name: orders
                auth:
                  issuers: [corp, billing-idp]
                cluster: orders
            """);

        var error = SingleError(result);
        AssertAt(error, 16, 23);
        Assert.Equal("unknown issuer 'billing-idp'", error.Message);
        Assert.Equal("define it under identity.issuers", error.Hint);
    }

    [Fact]
    public void ApiKeyTrue_WithoutIdentityApiKeys_PointsAtTheFlag()
    {
        var result = Build(WithIssuer + """
            routes:
              - name: orders
                auth:
                  apiKey: true
                cluster: orders
            """);

        var error = SingleError(result);
        AssertAt(error, 16, 15);
        Assert.Equal("apiKey: true needs identity.apiKeys", error.Message);
        Assert.Equal("add identity: { apiKeys: { file: keys.yaml } }", error.Hint);
    }

    [Fact]
    public void Auth_AcceptingNoCredential_PointsAtTheAuthBlock()
    {
        var result = Build(WithIssuer + """
            routes:
              - name: orders
                auth:
                  scopes: [orders.read]
                cluster: orders
            """);

        var error = SingleError(result);
        AssertAt(error, 16, 7);
        Assert.Equal("auth accepts no credential", error.Message);
        Assert.Equal("add issuers: [NAME], introspection: [NAME], apiKey: true, or anonymous: true", error.Hint);
    }

    [Fact]
    public void Anonymous_TogetherWithIssuers_PointsAtAnonymous()
    {
        var result = Build(WithIssuer + """
            routes:
              - name: orders
                auth:
                  issuers: [corp]
                  anonymous: true
                cluster: orders
            """);

        var error = SingleError(result);
        AssertAt(error, 17, 18);
        Assert.Equal("an anonymous route cannot also require credentials", error.Message);
        Assert.Equal("remove anonymous: true, or the other rules", error.Hint);
    }

    [Fact]
    public void ClaimRule_TestingNothing_PointsAtTheRule()
    {
        var result = Build(WithIssuer + """
            routes:
              - name: orders
                auth:
                  issuers: [corp]
                  claims:
                    - { claim: tier }
                    - any:
                        - { claim: groups, is: admins }
                        - claim: staff
                cluster: orders
            """);

        Assert.False(result.Succeeded);
        Assert.Equal(2, result.Errors.Count());
        var top = result.Errors.First();
        AssertAt(top, 18, 11);
        Assert.Equal("claim rule on 'tier' tests nothing", top.Message);
        Assert.Equal("add is, oneOf, contains, regex or exists", top.Hint);
        var nested = result.Errors.Last();
        AssertAt(nested, 21, 15);
        Assert.Equal("claim rule on 'staff' tests nothing", nested.Message);
    }

    [Fact]
    public void ClaimRule_WithABadRegex_PointsAtThePattern()
    {
        var result = Build(WithIssuer + """
            routes:
              - name: orders
                auth:
                  issuers: [corp]
                  claims:
                    - { claim: tier, regex: "([a-z" }
                cluster: orders
            """);

        var error = SingleError(result);
        AssertAt(error, 18, 33);
        Assert.Contains("([a-z", error.Message, StringComparison.Ordinal);
    }

    // ---------------------------------------------------------------- API keys

    [Fact]
    public void MissingApiKeyFile_PointsAtThePath()
    {
        var result = Build(Head + """
            identity:
              apiKeys:
                file: secrets/keys.yaml
            """);

        var error = SingleError(result);
        AssertAt(error, 9, 11);
        Assert.Equal($"cannot read API key file 'secrets/keys.yaml' ({Path.Combine(_directory.FullName, "secrets", "keys.yaml")}): file not found", error.Message);
        Assert.Equal("create it with `portcullis keys create --file secrets/keys.yaml --consumer NAME`", error.Hint);
    }

    [Fact]
    public void MissingDefaultApiKeyFile_PointsAtApiKeys()
    {
        // No file written: the default keys.yaml is meant, and the error points at the apiKeys block.
        var result = Build(Head + """
            identity:
              apiKeys: { header: X-Key }
            """);

        var error = SingleError(result);
        AssertAt(error, 8, 12);
        Assert.StartsWith("cannot read API key file 'keys.yaml' (", error.Message, StringComparison.Ordinal);
    }

}
