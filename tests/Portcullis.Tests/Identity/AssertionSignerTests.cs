using System.Collections.Frozen;
using Microsoft.Extensions.Time.Testing;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Portcullis.Identity;

namespace Portcullis.Tests.Identity;

/// <summary>
/// The gateway-signed identity assertion: claims and lifetime, reuse until half-life, key rotation with a
/// one-period overlap in the JWKS, and signatures that verify against the published keys. Time is a
/// <see cref="FakeTimeProvider"/>; JWT times are whole seconds, so it starts on a whole second.
/// </summary>
public sealed class AssertionSignerTests : IDisposable
{
    private static readonly AssertionSettings Settings = new("X-Portcullis-Assertion", "portcullis", TimeSpan.FromSeconds(60), TimeSpan.FromHours(24));

    private readonly FakeTimeProvider _time = new(DateTimeOffset.FromUnixTimeSeconds(DateTimeOffset.UtcNow.ToUnixTimeSeconds()));
    private readonly AssertionSigner _signer;

    public AssertionSignerTests() => _signer = new AssertionSigner(_time);

    public void Dispose() => _signer.Dispose();

    private CallerIdentity Caller(string subject = "alice", TimeSpan? expiresIn = null) => new()
    {
        Kind = CredentialKind.Jwt,
        Source = "corp",
        Subject = subject,
        Consumer = "shop",
        ConsumerGroup = "gold",
        Groups = ["staff", "ops"],
        Scopes = new[] { "orders.write", "orders.read" }.ToFrozenSet(StringComparer.Ordinal),
        Expires = _time.GetUtcNow() + (expiresIn ?? TimeSpan.FromHours(1)),
    };

    private static JsonWebToken Read(string token) => new(token);

    /// <summary>Verifies against the signer's JWKS as an upstream would, with lifetime checked against fake time.</summary>
    private async Task<TokenValidationResult> VerifyAsync(string token, string audience)
    {
        var jwks = new JsonWebKeySet(_signer.JwksJson());
        return await new JsonWebTokenHandler().ValidateTokenAsync(token, new TokenValidationParameters
        {
            ValidIssuer = Settings.Issuer,
            ValidAudience = audience,
            IssuerSigningKeys = jwks.GetSigningKeys(),
            ValidAlgorithms = [SecurityAlgorithms.EcdsaSha256],
            RequireSignedTokens = true,
            RequireExpirationTime = true,
            TryAllIssuerSigningKeys = false,
            ClockSkew = TimeSpan.Zero,
            LifetimeValidator = (notBefore, expires, _, _) =>
            {
                var now = _time.GetUtcNow().UtcDateTime;
                return (notBefore is null || notBefore <= now) && expires is { } exp && exp > now;
            },
        });
    }

    private List<string> PublishedKids() => new JsonWebKeySet(_signer.JwksJson()).Keys.Select(k => k.Kid).ToList();

    [Fact]
    public void Assertion_CarriesKidIssuerAudienceSubjectAndTheCaller()
    {
        var token = Read(_signer.Sign(Caller(), "orders", Settings));

        Assert.Equal("ES256", token.Alg);
        Assert.Equal("JWT", token.Typ);
        Assert.False(string.IsNullOrEmpty(token.Kid));
        Assert.Equal(_signer.CurrentKeyId, token.Kid);
        Assert.Equal("portcullis", token.Issuer);
        Assert.Equal(["orders"], token.Audiences);
        Assert.Equal("alice", token.Subject);
        Assert.Equal("corp", token.GetClaim("src").Value);
        Assert.Equal("shop", token.GetClaim("consumer").Value);
        Assert.Equal("gold", token.GetClaim("consumer_group").Value);
        Assert.Equal(["staff", "ops"], token.Claims.Where(c => c.Type == "groups").Select(c => c.Value));
        Assert.Equal("orders.read orders.write", token.GetClaim("scope").Value);
        Assert.False(string.IsNullOrEmpty(token.Id));
        Assert.Equal(_time.GetUtcNow().UtcDateTime, token.IssuedAt);
        Assert.Equal(_time.GetUtcNow().UtcDateTime, token.ValidFrom);
    }

    [Fact]
    public void Expiry_IsTheLifetime_WhenTheCallersCredentialOutlivesIt()
    {
        var token = Read(_signer.Sign(Caller(expiresIn: TimeSpan.FromHours(1)), "orders", Settings));
        Assert.Equal((_time.GetUtcNow() + Settings.Lifetime).UtcDateTime, token.ValidTo);
    }

    [Fact]
    public void Expiry_NeverOutlivesTheCallersCredential()
    {
        var caller = Caller(expiresIn: TimeSpan.FromSeconds(20));
        var token = Read(_signer.Sign(caller, "orders", Settings));
        Assert.Equal(caller.Expires.UtcDateTime, token.ValidTo);
        Assert.True(token.ValidTo < (_time.GetUtcNow() + Settings.Lifetime).UtcDateTime);
    }

    [Fact]
    public void SameCallerAndAudience_ReusesTheAssertion_UntilHalfLife()
    {
        var caller = Caller();
        var first = _signer.Sign(caller, "orders", Settings);
        Assert.Same(first, _signer.Sign(caller, "orders", Settings));

        _time.Advance(TimeSpan.FromSeconds(29));
        Assert.Same(first, _signer.Sign(caller, "orders", Settings));

        // Half of the 60 s lifetime is gone: a fresh assertion, valid for a full lifetime from now.
        _time.Advance(TimeSpan.FromSeconds(1));
        var second = _signer.Sign(caller, "orders", Settings);
        Assert.NotEqual(first, second);
        Assert.Equal((_time.GetUtcNow() + Settings.Lifetime).UtcDateTime, Read(second).ValidTo);
        Assert.NotEqual(Read(first).Id, Read(second).Id);

        _time.Advance(TimeSpan.FromSeconds(29));
        Assert.Same(second, _signer.Sign(caller, "orders", Settings));
    }

    [Fact]
    public void HalfLife_IsHalfOfWhatTheAssertionActuallyLives()
    {
        // The caller's credential ends in 20 s, so the assertion lives 20 s and is renewed after 10 s.
        var caller = Caller(expiresIn: TimeSpan.FromSeconds(20));
        var first = _signer.Sign(caller, "orders", Settings);
        _time.Advance(TimeSpan.FromSeconds(9));
        Assert.Same(first, _signer.Sign(caller, "orders", Settings));
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.NotEqual(first, _signer.Sign(caller, "orders", Settings));
    }

    [Fact]
    public void OtherAudienceOrOtherCaller_GetsItsOwnAssertion()
    {
        var caller = Caller();
        var orders = _signer.Sign(caller, "orders", Settings);
        var billing = _signer.Sign(caller, "billing", Settings);
        Assert.NotEqual(orders, billing);
        Assert.Equal(["billing"], Read(billing).Audiences);
        Assert.Same(orders, _signer.Sign(caller, "orders", Settings));
        Assert.Same(billing, _signer.Sign(caller, "billing", Settings));

        var bob = _signer.Sign(Caller("bob"), "orders", Settings);
        Assert.Equal("bob", Read(bob).Subject);
    }

    [Fact]
    public async Task Signature_VerifiesAgainstThePublishedJwks()
    {
        var token = _signer.Sign(Caller(), "orders", Settings);
        var result = await VerifyAsync(token, "orders");
        Assert.True(result.IsValid, result.Exception?.ToString());
        Assert.Equal("alice", ((JsonWebToken)result.SecurityToken).Subject);

        var jwk = Assert.Single(new JsonWebKeySet(_signer.JwksJson()).Keys);
        Assert.Equal("EC", jwk.Kty);
        Assert.Equal("P-256", jwk.Crv);
        Assert.Equal("sig", jwk.Use);
        Assert.Equal("ES256", jwk.Alg);
        Assert.Equal(_signer.CurrentKeyId, jwk.Kid);
        // Only the public half is published.
        Assert.Null(jwk.D);

        // A tampered payload does not verify.
        var parts = token.Split('.');
        parts[1] = Base64UrlEncoder.Encode(Base64UrlEncoder.Decode(parts[1]).Replace("alice", "admin", StringComparison.Ordinal));
        Assert.False((await VerifyAsync(string.Join('.', parts), "orders")).IsValid);
        // Nor for another audience.
        Assert.False((await VerifyAsync(token, "billing")).IsValid);
    }

    [Fact]
    public async Task Rotation_NewKid_PreviousKeyStaysPublishedForOnePeriod_ThenIsDropped()
    {
        var caller = Caller(expiresIn: TimeSpan.FromDays(7));
        var first = _signer.Sign(caller, "orders", Settings);
        var kid1 = Read(first).Kid;
        Assert.Equal([kid1], PublishedKids());

        // Just before the period ends: same key.
        _time.Advance(Settings.RotateEvery - TimeSpan.FromSeconds(1));
        var stillFirstKey = _signer.Sign(caller, "orders", Settings);
        Assert.Equal(kid1, Read(stillFirstKey).Kid);

        // A period after the key was made: a new key signs, and the previous one is still published,
        // so an assertion it signed moments ago still verifies.
        _time.Advance(TimeSpan.FromSeconds(1));
        var rotated = _signer.Sign(caller, "orders", Settings);
        var kid2 = Read(rotated).Kid;
        Assert.NotEqual(kid1, kid2);
        Assert.Equal(kid2, _signer.CurrentKeyId);
        Assert.Equal([kid2, kid1], PublishedKids());
        Assert.True((await VerifyAsync(rotated, "orders")).IsValid);
        Assert.True((await VerifyAsync(stillFirstKey, "orders")).IsValid);

        // The cached assertion (well within its half-life) is not reused once its key is no longer current.
        Assert.NotEqual(stillFirstKey, rotated);
        Assert.Same(rotated, _signer.Sign(caller, "orders", Settings));

        // The next rotation drops the key before the previous one.
        _time.Advance(Settings.RotateEvery);
        var third = _signer.Sign(caller, "orders", Settings);
        var kid3 = Read(third).Kid;
        Assert.NotEqual(kid2, kid3);
        Assert.NotEqual(kid1, kid3);
        Assert.Equal([kid3, kid2], PublishedKids());
        Assert.True((await VerifyAsync(third, "orders")).IsValid);
    }

    [Fact]
    public void NoSigning_NoRotation_JwksStaysTheCurrentKey()
    {
        // Rotation happens when signing; the JWKS served meanwhile still holds the key that signs next.
        var kid = _signer.CurrentKeyId;
        _time.Advance(Settings.RotateEvery * 3);
        Assert.Equal([kid], PublishedKids());
        var token = _signer.Sign(Caller(), "orders", Settings);
        Assert.NotEqual(kid, Read(token).Kid);
        Assert.Equal([Read(token).Kid, kid], PublishedKids());
    }
}
