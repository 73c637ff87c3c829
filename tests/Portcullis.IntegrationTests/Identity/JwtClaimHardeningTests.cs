using System.Net;
using System.Security.Cryptography;
using Microsoft.IdentityModel.Tokens;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Identity;

/// <summary>
/// Issue 13, point 15: defaults a hardened profile should not have to set. On the attack suite's gateway
/// (issuer corp: JWKS key "good" declares alg RS256; algorithms default to RS256, PS256, ES256): a token signed
/// with the right key but another algorithm than the key declares, exp/nbf/iat that are not numbers, and iat in
/// the future are refused with their own reason codes. Each token is correctly signed, so only the property
/// under test can be why; before the fix each was accepted.
/// </summary>
public sealed class JwtClaimHardeningTests(JwtAttackGateway fixture) : IClassFixture<JwtAttackGateway>
{
    private TokenFactory Tokens => fixture.Tokens;

    private static long Now => DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    private static Func<byte[], string> SignPss(RSA rsa) =>
        input => Base64UrlEncoder.Encode(rsa.SignData(input, HashAlgorithmName.SHA256, RSASignaturePadding.Pss));

    private async Task<HttpResponseMessage> SendAsync(string token)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/orders/1");
        request.Headers.TryAddWithoutValidation("Authorization", "Bearer " + token);
        return await fixture.Client.SendAsync(request);
    }

    private async Task AssertAcceptedAsync(string token)
    {
        using var response = await SendAsync(token);
        var seen = await UpstreamAnswer.ReadAsync(response);
        Assert.Equal("alice", seen.Header("X-Subject"));
    }

    private async Task AssertRejectedAsync(string token, string reason)
    {
        var before = fixture.Upstream.Requests;
        using var response = await SendAsync(token);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Unauthorized, $"expected 401 {reason}, got {(int)response.StatusCode}: {body}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.True(body.Contains($"\"reason\":\"{reason}\"", StringComparison.Ordinal), body);
        Assert.Contains("error=\"invalid_token\"", response.Headers.WwwAuthenticate.ToString(), StringComparison.Ordinal);
        Assert.DoesNotContain("IDX", body, StringComparison.Ordinal);
        Assert.Equal(before, fixture.Upstream.Requests);
    }

    // ---------------------------------------------------------------- algorithm against the key's alg

    /// <summary>PS256 is in the issuer's algorithms and the RSA key can compute it, but the key says RS256.</summary>
    [Theory]
    [InlineData("good")]
    [InlineData(null)] // no kid: every key is tried, none may verify outside its declared alg
    public Task Ps256Token_WithAKeyDeclaringRs256_IsRefused(string? kid)
    {
        var kidMember = kid is null ? "" : $",\"kid\":\"{kid}\"";
        return AssertRejectedAsync(Tokens.Assemble($$"""{"alg":"PS256","typ":"JWT"{{kidMember}}}""", Tokens.StandardPayload(), SignPss(Tokens.Key.Rsa)), "jwt.alg-mismatch");
    }

    [Fact]
    public Task Rs256Token_WithTheSameKey_IsAccepted() =>
        AssertAcceptedAsync(Tokens.Assemble("""{"alg":"RS256","typ":"JWT","kid":"good"}""", Tokens.StandardPayload()));

    /// <summary>An algorithm outside the issuer's list is told apart from a signature failure (it was jwt.signature).</summary>
    [Fact]
    public Task Rs512Token_NotInTheIssuersAlgorithms_IsJwtAlgorithm()
    {
        var token = Tokens.Assemble("""{"alg":"RS512","typ":"JWT","kid":"good"}""", Tokens.StandardPayload(),
            input => Base64UrlEncoder.Encode(Tokens.Key.Rsa.SignData(input, HashAlgorithmName.SHA512, RSASignaturePadding.Pkcs1)));
        return AssertRejectedAsync(token, "jwt.algorithm");
    }

    // ---------------------------------------------------------------- NumericDate claims that are not numbers

    [Theory]
    [InlineData("exp", true)]
    [InlineData("nbf", false)]
    [InlineData("iat", false)]
    public Task NumericDateClaim_AsAString_IsRefused(string claim, bool replacesExp)
    {
        var value = $"\"{(claim == "nbf" || claim == "iat" ? Now - 60 : Now + 600)}\"";
        var payload = replacesExp
            ? $$"""{"iss":"{{Tokens.Issuer}}","aud":"{{Tokens.Audience}}","sub":"alice","exp":{{value}}}"""
            : Tokens.StandardPayload(extra: $"\"{claim}\":{value}");
        return AssertRejectedAsync(Tokens.Assemble("""{"alg":"RS256","typ":"JWT","kid":"good"}""", payload), "jwt.malformed-claim");
    }

    // ---------------------------------------------------------------- iat in the future

    [Fact]
    public Task IssuedAt_AnHourAhead_IsRefused() =>
        AssertRejectedAsync(Tokens.Assemble("""{"alg":"RS256","typ":"JWT","kid":"good"}""", Tokens.StandardPayload(extra: $"\"iat\":{Now + 3600}")), "jwt.iat-future");

    /// <summary>Within the clock skew (default 30s) a provider's clock slightly ahead is tolerated.</summary>
    [Fact]
    public Task IssuedAt_AFewSecondsAhead_IsAccepted() =>
        AssertAcceptedAsync(Tokens.Assemble("""{"alg":"RS256","typ":"JWT","kid":"good"}""", Tokens.StandardPayload(extra: $"\"iat\":{Now + 5}")));
}
