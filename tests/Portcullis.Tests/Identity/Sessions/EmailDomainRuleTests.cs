using System.Collections.Frozen;
using Portcullis.Configuration;
using Portcullis.Identity;

namespace Portcullis.Tests.Identity.Sessions;

/// <summary>
/// The emailDomain claim rule, compiled from config as a route would have it: exact domains (case-insensitive),
/// no subdomains unless listed, and never an address the provider says is unverified.
/// </summary>
public sealed class EmailDomainRuleTests : ConfigBuildTestBase
{
    public EmailDomainRuleTests()
        : base("portcullis-emaildomain-")
    {
    }

    private ClaimRule Compile(string domains)
    {
        var result = Build($$"""
            listeners:
              - { name: public, address: "127.0.0.1:8080" }
            identity:
              apiKeys: { file: keys.yaml }
            routes:
              - name: app
                match: { pathPrefix: /app }
                auth: { apiKey: true, claims: [{ claim: email, emailDomain: {{domains}} }] }
                cluster: app
            clusters:
              app: { destinations: [http://127.0.0.1:5001] }
            """);
        Assert.True(result.Succeeded, Dump(result));
        return result.Snapshot!.Routes["app"].Auth!.Rule!;
    }

    private protected override BuildResult Build(string yaml)
    {
        WriteFile("keys.yaml", "# no keys\n");
        return base.Build(yaml);
    }

    private static CallerIdentity Caller(string? email, string? verified = null)
    {
        var claims = new Dictionary<string, string[]>(StringComparer.Ordinal) { ["sub"] = ["u1"] };
        if (email is not null) claims["email"] = [email];
        if (verified is not null) claims["email_verified"] = [verified];
        return new CallerIdentity { Kind = CredentialKind.Session, Source = "corp", Subject = "u1", Claims = claims.ToFrozenDictionary(StringComparer.Ordinal) };
    }

    [Theory]
    [InlineData("alice@example.com", true)]
    [InlineData("Alice@EXAMPLE.COM", true)]
    [InlineData("alice@Example.Com", true)]
    [InlineData("alice@sub.example.com", false)]      // subdomains only when listed
    [InlineData("alice@example.com.evil.test", false)]
    [InlineData("alice@notexample.com", false)]
    [InlineData("alice@evil.test", false)]
    [InlineData("example.com", false)]               // no @
    [InlineData("@example.com", false)]              // no local part
    [InlineData("alice@", false)]
    [InlineData("alice@example.com@evil.test", false)] // the domain is what follows the last @
    public void MatchesTheListedDomainOnly(string email, bool allowed) => Assert.Equal(allowed, Compile("[example.com]").Evaluate(Caller(email)));

    [Fact]
    public void ConfiguredDomains_AreCaseInsensitive_AndMayListASubdomain()
    {
        var rule = Compile("[Example.COM, \"@Eng.Example.com\"]");
        Assert.True(rule.Evaluate(Caller("bob@example.com")));
        Assert.True(rule.Evaluate(Caller("bob@eng.example.com")));
        Assert.False(rule.Evaluate(Caller("bob@ops.example.com")));
    }

    [Theory]
    [InlineData("true", true)]
    [InlineData("True", true)]
    [InlineData("false", false)]
    [InlineData("False", false)]
    [InlineData("FALSE", false)]
    public void EmailVerifiedFalse_NeverMatches(string verified, bool allowed) =>
        Assert.Equal(allowed, Compile("[example.com]").Evaluate(Caller("alice@example.com", verified)));

    [Fact]
    public void NoEmailClaim_NeverMatches() => Assert.False(Compile("[example.com]").Evaluate(Caller(null)));

    [Fact]
    public void OneMatchingAddressAmongSeveral_Matches()
    {
        var rule = Compile("[example.com]");
        var caller = new CallerIdentity
        {
            Kind = CredentialKind.Session,
            Source = "corp",
            Claims = new Dictionary<string, string[]>(StringComparer.Ordinal) { ["email"] = ["x@evil.test", "alice@example.com"] }.ToFrozenDictionary(StringComparer.Ordinal),
        };
        Assert.True(rule.Evaluate(caller));
    }

    [Theory]
    [InlineData("[]", "emailDomain lists no domain")]
    [InlineData("[alice@example.com]", "'alice@example.com' is not an email domain")]
    [InlineData("[\"https://example.com\"]", "'https://example.com' is not an email domain")]
    public void BadDomains_AreConfigErrors(string domains, string message)
    {
        var result = Build($$"""
            listeners:
              - { name: public, address: "127.0.0.1:8080" }
            identity:
              apiKeys: { file: keys.yaml }
            routes:
              - name: app
                match: { pathPrefix: /app }
                auth: { apiKey: true, claims: [{ claim: email, emailDomain: {{domains}} }] }
                cluster: app
            clusters:
              app: { destinations: [http://127.0.0.1:5001] }
            """);
        Assert.Equal(message, SingleError(result).Message);
    }
}
