using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Portcullis.IntegrationTests.Infrastructure;

/// <summary>
/// Mints real RS256 tokens with Microsoft.IdentityModel and writes the matching JWKS file; can also
/// assemble deliberately broken tokens for the attack tests.
/// </summary>
internal sealed class TokenFactory : IDisposable
{
    private readonly RSA _rsa = RSA.Create(2048);

    public TokenFactory(string issuer, string audience, string kid = "key-1")
    {
        Issuer = issuer;
        Audience = audience;
        Kid = kid;
        Key = new RsaSecurityKey(_rsa) { KeyId = kid };
    }

    public string Issuer { get; }

    public string Audience { get; }

    public string Kid { get; }

    public RsaSecurityKey Key { get; }

    public string JwksJson()
    {
        var jwk = JsonWebKeyConverter.ConvertFromRSASecurityKey(new RsaSecurityKey(_rsa.ExportParameters(false)) { KeyId = Kid });
        jwk.Use = "sig";
        jwk.Alg = "RS256";
        return JsonSerializer.Serialize(new { keys = new[] { new { kty = jwk.Kty, use = jwk.Use, alg = jwk.Alg, kid = jwk.Kid, n = jwk.N, e = jwk.E } } });
    }

    public string Create(Dictionary<string, object>? claims = null, DateTime? expires = null, DateTime? notBefore = null, string? audience = null, string? issuer = null, string? type = null)
    {
        var now = DateTime.UtcNow;
        var descriptor = new SecurityTokenDescriptor
        {
            Issuer = issuer ?? Issuer,
            Audience = audience ?? Audience,
            Expires = expires ?? now.AddMinutes(10),
            NotBefore = notBefore ?? now.AddMinutes(-1),
            IssuedAt = now.AddMinutes(-1),
            Claims = claims ?? new Dictionary<string, object> { ["sub"] = "alice", ["scope"] = "orders.read" },
            SigningCredentials = new SigningCredentials(Key, SecurityAlgorithms.RsaSha256),
            TokenType = type,
        };
        return new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false }.CreateToken(descriptor);
    }

    /// <summary>header.payload.signature from raw JSON parts, signed with our RSA key unless told otherwise.</summary>
    public string Assemble(string headerJson, string payloadJson, Func<byte[], string>? sign = null)
    {
        var signingInput = Base64UrlEncoder.Encode(headerJson) + "." + Base64UrlEncoder.Encode(payloadJson);
        var signature = sign is null
            ? Base64UrlEncoder.Encode(_rsa.SignData(Encoding.ASCII.GetBytes(signingInput), HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1))
            : sign(Encoding.ASCII.GetBytes(signingInput));
        return signingInput + "." + signature;
    }

    public string StandardPayload(long? exp = null, string? extra = null) =>
        $$"""{"iss":"{{Issuer}}","aud":"{{Audience}}","sub":"alice","scope":"orders.read","exp":{{exp ?? DateTimeOffset.UtcNow.AddMinutes(10).ToUnixTimeSeconds()}}{{(extra is null ? "" : "," + extra)}}}""";

    /// <summary>The public key in SubjectPublicKeyInfo DER: what a key-confusion attacker signs HS256 with.</summary>
    public byte[] PublicKeyBytes() => _rsa.ExportSubjectPublicKeyInfo();

    public void Dispose() => _rsa.Dispose();
}
