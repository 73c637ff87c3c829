namespace Portcullis.IntegrationTests.Infrastructure.Identity;

/// <summary>
/// A confidential OAuth client registered at a <see cref="TestIdentityProvider"/>.
/// <para><paramref name="Claims"/> are copied into every access token issued to the client: a string
/// becomes a string claim, a string[] (or any enumerable) a JSON array even with one element, a bool or
/// number keeps its JSON type.</para>
/// <para><paramref name="ReferenceTokens"/>: the client receives opaque reference access tokens (stored
/// at the provider, checked through introspection) instead of JWTs.</para>
/// <para><paramref name="AssertionKeys"/>: public keys the client signs private_key_jwt client assertions
/// with (RFC 7523); with an empty <paramref name="Secret"/> the client can authenticate only that way.</para>
/// </summary>
internal sealed record TestIdentityClient(
    string ClientId,
    string Secret,
    IReadOnlyList<string> Scopes,
    IReadOnlyDictionary<string, object>? Claims = null,
    bool ReferenceTokens = false,
    Microsoft.IdentityModel.Tokens.JsonWebKeySet? AssertionKeys = null);

/// <summary>
/// A resource owner for the password grant, used to obtain ID tokens (sub = <paramref name="Username"/>).
/// <paramref name="Claims"/> go into the ID token and the access token.
/// </summary>
internal sealed record TestIdentityUser(
    string Username,
    string Password,
    IReadOnlyDictionary<string, object>? Claims = null);

/// <summary>A token endpoint answer.</summary>
internal sealed record TestTokenResponse(string AccessToken, string? IdToken, string TokenType, int? ExpiresIn, string? Scope, string Raw);
