using System.Collections;
using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using OpenIddict.Abstractions;
using OpenIddict.Server;
using OpenIddict.Server.AspNetCore;
using Portcullis.IntegrationTests.Infrastructure.Identity;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace Portcullis.IntegrationTests.Infrastructure;

/// <summary>
/// A real OpenID Provider (OpenIddict server on Kestrel, 127.0.0.1, plain HTTP) for integration tests:
/// discovery and JWKS are served by OpenIddict itself; the token endpoint issues RS256-signed
/// <c>at+jwt</c> access tokens (client_credentials) or, for clients registered with
/// <see cref="TestIdentityClient.ReferenceTokens"/>, opaque reference tokens kept in an EF Core InMemory
/// store and checked through the introspection endpoint (RFC 7662); revocation (RFC 7009) works on both.
/// The password grant with scope <c>openid</c> yields ID tokens.
/// <para>Signing keys: RSA 2048, generated per instance. <see cref="RotateSigningKeyAsync"/> makes a new key
/// the signing key while the old ones stay published in the JWKS; <see cref="RemoveOldKeysAsync"/> drops them.
/// Both restart the provider on the same port (a few hundred ms during which connections are refused); the
/// store (clients, issued/revoked tokens) survives restarts, as it does <see cref="StopAsync"/> /
/// <see cref="StartAgainAsync"/>.</para>
/// <para>Counters count requests that reached the provider (including the fixture's own helpers such as
/// <see cref="GetAccessTokenAsync(string, string, string[])"/> and <see cref="IntrospectAsync"/>).</para>
/// </summary>
internal sealed class TestIdentityProvider : IAsyncDisposable
{
    public const string DefaultAudience = "orders-api";
    public const string DefaultIntrospectionSecret = "introspection-secret";

    public const string DiscoveryPath = "/.well-known/openid-configuration";
    public const string JwksPath = "/.well-known/jwks";
    public const string TokenPath = "/connect/token";
    public const string IntrospectionPath = "/connect/introspect";
    public const string RevocationPath = "/connect/revoke";

    /// <summary>JWT client: scope orders.read; groups ["users"], tier "basic", email.</summary>
    public static readonly TestIdentityClient Reader = new(
        "orders-reader",
        "reader-secret",
        ["orders.read"],
        new Dictionary<string, object>
        {
            ["groups"] = new[] { "users" },
            ["tier"] = "basic",
            ["email"] = "reader@example.test",
        });

    /// <summary>JWT client: scopes orders.read orders.write orders.admin; groups ["admins","users"], tier "premium", email.</summary>
    public static readonly TestIdentityClient Admin = new(
        "orders-admin",
        "admin-secret",
        ["orders.read", "orders.write", "orders.admin"],
        new Dictionary<string, object>
        {
            ["groups"] = new[] { "admins", "users" },
            ["tier"] = "premium",
            ["email"] = "admin@example.test",
        });

    /// <summary>Reference-token (opaque) client: scope orders.read; groups ["users"], tier "premium".</summary>
    public static readonly TestIdentityClient Opaque = new(
        "orders-opaque",
        "opaque-secret",
        ["orders.read"],
        new Dictionary<string, object>
        {
            ["groups"] = new[] { "users" },
            ["tier"] = "premium",
        },
        ReferenceTokens: true);

    /// <summary>Password-grant user for ID tokens: email, name, groups ["admins"].</summary>
    public static readonly TestIdentityUser Alice = new(
        "alice",
        "alice-password",
        new Dictionary<string, object>
        {
            ["email"] = "alice@example.test",
            ["name"] = "Alice",
            ["groups"] = new[] { "admins" },
        });

    private static readonly HttpClient Http = new(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromSeconds(30) })
    {
        Timeout = TimeSpan.FromSeconds(30),
    };

    private readonly SemaphoreSlim _lifecycle = new(1, 1);
    private readonly ConcurrentDictionary<string, TestIdentityClient> _clients = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, TestIdentityUser> _users = new(StringComparer.Ordinal);
    private readonly InMemoryDatabaseRoot _databaseRoot = new();
    private readonly string _databaseName = "idp-" + Guid.NewGuid().ToString("N");
    private readonly SymmetricSecurityKey _encryptionKey = new(RandomNumberGenerator.GetBytes(32));
    private readonly IdentityLogCollector _logs = new();

    // Newest (signing) key first; every key in the list is published in the JWKS.
    private volatile RsaSecurityKey[] _keys;
    private int _keyCounter;
    private WebApplication? _app;

    private int _discoveryRequests;
    private int _jwksRequests;
    private int _tokenRequests;
    private int _introspectionRequests;
    private int _revocationRequests;

    private TestIdentityProvider(string name, int port, string audience, string introspectionClientId, string introspectionClientSecret)
    {
        Name = name;
        Port = port;
        Audience = audience;
        IntrospectionClientId = introspectionClientId;
        IntrospectionClientSecret = introspectionClientSecret;
        _keys = [NewKey()];
    }

    public string Name { get; }

    public int Port { get; }

    /// <summary>"http://127.0.0.1:PORT/" — the <c>iss</c> of every token and the discovery document's issuer.</summary>
    public string Issuer => $"http://127.0.0.1:{Port}/";

    /// <summary>"http://127.0.0.1:PORT" — discovery lives at Authority + "/.well-known/openid-configuration".</summary>
    public string Authority => $"http://127.0.0.1:{Port}";

    public string DiscoveryEndpoint => Authority + DiscoveryPath;

    public string JwksUri => Authority + JwksPath;

    public string TokenEndpoint => Authority + TokenPath;

    public string IntrospectionEndpoint => Authority + IntrospectionPath;

    public string RevocationEndpoint => Authority + RevocationPath;

    /// <summary>The <c>aud</c> of access tokens issued from now on.</summary>
    public string Audience { get; set; }

    /// <summary>
    /// The confidential client the gateway uses at the introspection and revocation endpoints. Defaults to
    /// <see cref="Audience"/> (a resource server introspects as itself), so OpenIddict returns the token's
    /// custom claims and scopes to it. When it differs from the audience it is added to every access token's
    /// <c>aud</c>, as OpenIddict only answers introspection for a token's audiences or presenter.
    /// </summary>
    public string IntrospectionClientId { get; }

    public string IntrospectionClientSecret { get; }

    /// <summary>Lifetime (exp - iat) of access tokens issued from now on. Default one hour.</summary>
    public TimeSpan AccessTokenLifetime { get; set; } = TimeSpan.FromHours(1);

    /// <summary>Delay added before every request the provider answers (a slow IdP).</summary>
    public TimeSpan ResponseDelay { get; set; }

    /// <summary>
    /// Runs before OpenIddict on every request (after counting); return true when it wrote the response
    /// itself (e.g. a 500 from the JWKS endpoint, or garbage).
    /// </summary>
    public Func<HttpContext, Task<bool>>? Intercept { get; set; }

    public bool IsRunning => _app is not null;

    public int DiscoveryRequests => Volatile.Read(ref _discoveryRequests);

    public int JwksRequests => Volatile.Read(ref _jwksRequests);

    public int TokenRequests => Volatile.Read(ref _tokenRequests);

    public int IntrospectionRequests => Volatile.Read(ref _introspectionRequests);

    public int RevocationRequests => Volatile.Read(ref _revocationRequests);

    /// <summary>The key signing new tokens.</summary>
    public RsaSecurityKey ActiveSigningKey => _keys[0];

    public string ActiveKeyId => _keys[0].KeyId;

    /// <summary>Every key published in the JWKS, newest (active) first.</summary>
    public IReadOnlyList<RsaSecurityKey> SigningKeys => _keys;

    public IReadOnlyList<string> KeyIds => _keys.Select(key => key.KeyId).ToArray();

    public IReadOnlyCollection<TestIdentityClient> Clients => _clients.Values.ToArray();

    /// <summary>The provider's OpenIddict log lines (Information and up) and any warnings: why it refused something.</summary>
    public IReadOnlyCollection<string> Logs => _logs.Lines;

    /// <summary>
    /// Starts a provider with the <see cref="Reader"/>, <see cref="Admin"/> and <see cref="Opaque"/> clients,
    /// the <see cref="Alice"/> user and the introspection client registered.
    /// </summary>
    public static async Task<TestIdentityProvider> StartAsync(
        string name = "idp",
        int? port = null,
        string audience = DefaultAudience,
        string? introspectionClientId = null,
        string introspectionClientSecret = DefaultIntrospectionSecret)
    {
        var provider = new TestIdentityProvider(name, port ?? Ports.GetFree(), audience, introspectionClientId ?? audience, introspectionClientSecret);
        foreach (var client in new[] { Reader, Admin, Opaque }) provider._clients[client.ClientId] = client;
        provider._users[Alice.Username] = Alice;
        await provider.StartAgainAsync();
        return provider;
    }

    /// <summary>Starts (again) on the same port with the current keys; no-op when running.</summary>
    public async Task StartAgainAsync()
    {
        await _lifecycle.WaitAsync();
        try
        {
            await StartCoreAsync();
        }
        finally
        {
            _lifecycle.Release();
        }
    }

    /// <summary>Stops listening: connections to the port are refused until <see cref="StartAgainAsync"/>.</summary>
    public async Task StopAsync()
    {
        await _lifecycle.WaitAsync();
        try
        {
            await StopCoreAsync();
        }
        finally
        {
            _lifecycle.Release();
        }
    }

    /// <summary>
    /// Adds a new RSA 2048 key that signs every token from now on (new <c>kid</c>); the previous keys stay in
    /// the JWKS (overlap). Restarts the provider on the same port if it was running. Returns the new kid.
    /// </summary>
    public async Task<string> RotateSigningKeyAsync()
    {
        await _lifecycle.WaitAsync();
        try
        {
            var key = NewKey();
            _keys = [key, .. _keys];
            await RestartIfRunningAsync();
            return key.KeyId;
        }
        finally
        {
            _lifecycle.Release();
        }
    }

    /// <summary>Keeps only the active signing key in the JWKS. Restarts the provider if it was running.</summary>
    public async Task RemoveOldKeysAsync()
    {
        await _lifecycle.WaitAsync();
        try
        {
            _keys = [_keys[0]];
            await RestartIfRunningAsync();
        }
        finally
        {
            _lifecycle.Release();
        }
    }

    public void ResetCounters()
    {
        Interlocked.Exchange(ref _discoveryRequests, 0);
        Interlocked.Exchange(ref _jwksRequests, 0);
        Interlocked.Exchange(ref _tokenRequests, 0);
        Interlocked.Exchange(ref _introspectionRequests, 0);
        Interlocked.Exchange(ref _revocationRequests, 0);
    }

    /// <summary>
    /// Registers a confidential client allowed the client_credentials and password grants and the given
    /// scopes. Its <paramref name="claims"/> go into its access tokens (see <see cref="TestIdentityClient"/>).
    /// </summary>
    public Task<TestIdentityClient> RegisterClientAsync(
        string clientId,
        string secret,
        IEnumerable<string> scopes,
        IReadOnlyDictionary<string, object>? claims = null,
        bool referenceTokens = false) =>
        RegisterClientAsync(new TestIdentityClient(clientId, secret, scopes.ToArray(), claims, referenceTokens));

    public async Task<TestIdentityClient> RegisterClientAsync(TestIdentityClient client)
    {
        if (client.ClientId == IntrospectionClientId) throw new ArgumentException($"{client.ClientId} is the introspection client", nameof(client));
        await _lifecycle.WaitAsync();
        try
        {
            if (!_clients.TryAdd(client.ClientId, client)) throw new InvalidOperationException($"client {client.ClientId} is already registered");
            if (_app is not null) await SeedAsync(_app.Services);
            return client;
        }
        finally
        {
            _lifecycle.Release();
        }
    }

    /// <summary>Adds a user for the password grant (ID tokens).</summary>
    public void RegisterUser(TestIdentityUser user) => _users[user.Username] = user;

    /// <summary>A real client_credentials request to the token endpoint; returns the access token (a JWT, or opaque for reference-token clients).</summary>
    public async Task<string> GetAccessTokenAsync(string clientId, string secret, params string[] scopes)
    {
        var form = new Dictionary<string, string>
        {
            [Parameters.GrantType] = GrantTypes.ClientCredentials,
            [Parameters.ClientId] = clientId,
            [Parameters.ClientSecret] = secret,
        };
        if (scopes.Length > 0) form[Parameters.Scope] = string.Join(' ', scopes);
        return (await RequestTokenAsync(form)).AccessToken;
    }

    /// <summary>client_credentials for a registered client; no scopes means all of the client's scopes.</summary>
    public Task<string> GetAccessTokenAsync(TestIdentityClient client, params string[] scopes) =>
        GetAccessTokenAsync(client.ClientId, client.Secret, scopes);

    /// <summary>
    /// A real password-grant request with scope "openid" (plus <paramref name="scopes"/>); returns the ID token
    /// (RS256, typ JWT, aud = client id, sub = username). Client credentials alone never yield an ID token.
    /// </summary>
    public async Task<string> GetIdTokenAsync(string clientId, string secret, string username, string password, params string[] scopes)
    {
        var response = await GetUserTokensAsync(clientId, secret, username, password, scopes);
        return response.IdToken ?? throw new InvalidOperationException($"no id_token in {response.Raw}");
    }

    /// <summary>ID token for <see cref="Alice"/> through the <see cref="Reader"/> client.</summary>
    public Task<string> GetIdTokenAsync() => GetIdTokenAsync(Reader.ClientId, Reader.Secret, Alice.Username, Alice.Password);

    /// <summary>Password grant with scope "openid": both the access token and the ID token.</summary>
    public Task<TestTokenResponse> GetUserTokensAsync(string clientId, string secret, string username, string password, params string[] scopes) =>
        RequestTokenAsync(new Dictionary<string, string>
        {
            [Parameters.GrantType] = GrantTypes.Password,
            [Parameters.ClientId] = clientId,
            [Parameters.ClientSecret] = secret,
            [Parameters.Username] = username,
            [Parameters.Password] = password,
            [Parameters.Scope] = string.Join(' ', new[] { Scopes.OpenId }.Concat(scopes).Distinct()),
        });

    /// <summary>POSTs the form to the token endpoint; throws (with the provider's log tail) unless 200.</summary>
    public async Task<TestTokenResponse> RequestTokenAsync(IEnumerable<KeyValuePair<string, string>> form)
    {
        using var response = await Http.PostAsync(TokenEndpoint, new FormUrlEncodedContent(form));
        var text = await response.Content.ReadAsStringAsync();
        if (response.StatusCode != HttpStatusCode.OK) throw Failure($"token endpoint answered {(int)response.StatusCode}: {text}");
        using var json = JsonDocument.Parse(text);
        var root = json.RootElement;
        return new TestTokenResponse(
            root.GetProperty("access_token").GetString()!,
            root.TryGetProperty("id_token", out var idToken) ? idToken.GetString() : null,
            root.GetProperty("token_type").GetString()!,
            root.TryGetProperty("expires_in", out var expiresIn) ? expiresIn.GetInt32() : null,
            root.TryGetProperty("scope", out var scope) ? scope.GetString() : null,
            text);
    }

    /// <summary>RFC 7662 introspection as the introspection client; returns the JSON answer (active, sub, scope, claims…).</summary>
    public async Task<JsonElement> IntrospectAsync(string token)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, IntrospectionEndpoint)
        {
            Content = new FormUrlEncodedContent(new Dictionary<string, string>
            {
                [Parameters.Token] = token,
                [Parameters.TokenTypeHint] = TokenTypeHints.AccessToken,
            }),
        };
        request.Headers.Authorization = BasicAuthorization(IntrospectionClientId, IntrospectionClientSecret);
        using var response = await Http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        if (response.StatusCode != HttpStatusCode.OK) throw Failure($"introspection endpoint answered {(int)response.StatusCode}: {text}");
        using var json = JsonDocument.Parse(text);
        return json.RootElement.Clone();
    }

    /// <summary>
    /// Revokes an access token (JWT or reference) through the revocation endpoint, authenticated as the
    /// introspection client. Introspection answers active:false afterwards; a JWT of course still verifies offline.
    /// </summary>
    public async Task RevokeAsync(string token)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, RevocationEndpoint)
        {
            Content = new FormUrlEncodedContent(new Dictionary<string, string>
            {
                [Parameters.Token] = token,
                [Parameters.TokenTypeHint] = TokenTypeHints.AccessToken,
            }),
        };
        request.Headers.Authorization = BasicAuthorization(IntrospectionClientId, IntrospectionClientSecret);
        using var response = await Http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        if (response.StatusCode != HttpStatusCode.OK) throw Failure($"revocation endpoint answered {(int)response.StatusCode}: {text}");
    }

    /// <summary>
    /// The payload of a normal access token from this provider (iss, aud, sub, client_id, scope, iat, nbf,
    /// exp, jti), for tests that forge variants of it with <see cref="SignToken"/>.
    /// </summary>
    public Dictionary<string, object> StandardClaims(string subject = "forged-client", params string[] scopes)
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        return new Dictionary<string, object>
        {
            [JwtRegisteredClaimNames.Iss] = Issuer,
            [JwtRegisteredClaimNames.Aud] = Audience,
            [JwtRegisteredClaimNames.Sub] = subject,
            ["client_id"] = subject,
            ["scope"] = string.Join(' ', scopes),
            [JwtRegisteredClaimNames.Iat] = now,
            [JwtRegisteredClaimNames.Nbf] = now,
            [JwtRegisteredClaimNames.Exp] = now + (long)AccessTokenLifetime.TotalSeconds,
            [JwtRegisteredClaimNames.Jti] = Guid.NewGuid().ToString("N"),
        };
    }

    /// <summary>
    /// Signs an arbitrary payload with one of this provider's real keys (RS256 by default, <c>kid</c> of that
    /// key in the header): for tokens the token endpoint would never issue (expired, nbf in the future, wrong
    /// iss/aud, missing exp, odd typ, extra header members such as crit/jku).
    /// </summary>
    public string SignToken(
        IReadOnlyDictionary<string, object> claims,
        string? type = "at+jwt",
        IReadOnlyDictionary<string, object>? extraHeaders = null,
        string? keyId = null,
        string algorithm = SecurityAlgorithms.RsaSha256)
    {
        var key = keyId is null ? _keys[0] : _keys.FirstOrDefault(k => k.KeyId == keyId) ?? throw new ArgumentException($"no key {keyId}", nameof(keyId));
        var descriptor = new SecurityTokenDescriptor
        {
            Claims = claims.ToDictionary(pair => pair.Key, pair => pair.Value),
            SigningCredentials = new SigningCredentials(key, algorithm),
            TokenType = type,
            AdditionalHeaderClaims = extraHeaders?.ToDictionary(pair => pair.Key, pair => pair.Value),
        };
        return new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false }.CreateToken(descriptor);
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _lifecycle.Dispose();
    }

    private RsaSecurityKey NewKey()
    {
        var number = Interlocked.Increment(ref _keyCounter);
        var kid = $"{Name}-k{number}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4))}";
        return new RsaSecurityKey(RsaKeyPool.Take()) { KeyId = kid };
    }

    private async Task RestartIfRunningAsync()
    {
        if (_app is null) return;
        await StopCoreAsync();
        await StartCoreAsync();
    }

    private async Task StopCoreAsync()
    {
        if (_app is null) return;
        var app = _app;
        _app = null;
        await app.StopAsync();
        await app.DisposeAsync();
    }

    private async Task StartCoreAsync()
    {
        if (_app is not null) return;
        var keys = _keys;

        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(_logs);
        builder.Services.Configure<HostOptions>(options => options.ShutdownTimeout = TimeSpan.FromSeconds(2));
        builder.WebHost.ConfigureKestrel(options =>
            options.Listen(IPAddress.Loopback, Port, listen => listen.Protocols = HttpProtocols.Http1));

        builder.Services.AddDbContext<IdentityProviderDbContext>(options =>
        {
            options.UseInMemoryDatabase(_databaseName, _databaseRoot);
            options.ConfigureWarnings(warnings => warnings.Ignore(InMemoryEventId.TransactionIgnoredWarning));
            options.UseOpenIddict();
        });
        builder.Services.AddAuthentication();

        builder.Services.AddOpenIddict()
            .AddCore(options => options.UseEntityFrameworkCore().UseDbContext<IdentityProviderDbContext>())
            .AddServer(options =>
            {
                options.SetIssuer(new Uri(Issuer));
                options.SetConfigurationEndpointUris(DiscoveryPath.TrimStart('/'))
                    .SetJsonWebKeySetEndpointUris(JwksPath.TrimStart('/'))
                    .SetTokenEndpointUris(TokenPath.TrimStart('/'))
                    .SetIntrospectionEndpointUris(IntrospectionPath.TrimStart('/'))
                    .SetRevocationEndpointUris(RevocationPath.TrimStart('/'));
                options.AllowClientCredentialsFlow().AllowPasswordFlow();

                // Scopes are per client (permissions), not a global registry.
                options.DisableScopeValidation();

                // JWT access tokens for ordinary clients; ChooseAccessTokenFormat turns reference tokens
                // back off for every client not registered with ReferenceTokens.
                options.DisableAccessTokenEncryption();
                options.UseReferenceAccessTokens();
                options.AddEventHandler<OpenIddictServerEvents.GenerateTokenContext>(handler => handler
                    .UseInlineHandler(ChooseAccessTokenFormat)
                    .SetOrder(int.MinValue + 50_000)
                    .SetType(OpenIddictServerHandlerType.Custom));

                options.AddEncryptionKey(_encryptionKey);
                foreach (var key in keys) options.AddSigningKey(key);

                options.UseAspNetCore()
                    .DisableTransportSecurityRequirement()
                    .EnableTokenEndpointPassthrough();
            });

        var app = builder.Build();
        app.Use(CountAsync);
        app.UseAuthentication();
        app.MapPost(TokenPath, HandleTokenRequest);
        try
        {
            await app.StartAsync();
            await SeedAsync(app.Services);
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }

        _app = app;
    }

    private async Task SeedAsync(IServiceProvider services)
    {
        await using var scope = services.CreateAsyncScope();
        var manager = scope.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>();

        if (await manager.FindByClientIdAsync(IntrospectionClientId) is null)
        {
            await manager.CreateAsync(new OpenIddictApplicationDescriptor
            {
                ClientId = IntrospectionClientId,
                ClientSecret = IntrospectionClientSecret,
                ClientType = ClientTypes.Confidential,
                DisplayName = "gateway (introspection)",
                Permissions = { Permissions.Endpoints.Introspection, Permissions.Endpoints.Revocation },
            });
        }

        foreach (var client in _clients.Values)
        {
            if (await manager.FindByClientIdAsync(client.ClientId) is not null) continue;
            var descriptor = new OpenIddictApplicationDescriptor
            {
                ClientId = client.ClientId,
                ClientSecret = string.IsNullOrEmpty(client.Secret) ? null : client.Secret,
                ClientType = ClientTypes.Confidential,
                DisplayName = client.ClientId,
                JsonWebKeySet = client.AssertionKeys,
                Permissions =
                {
                    Permissions.Endpoints.Token,
                    Permissions.Endpoints.Revocation,
                    Permissions.GrantTypes.ClientCredentials,
                    Permissions.GrantTypes.Password,
                },
            };
            foreach (var scopeName in client.Scopes) descriptor.Permissions.Add(Permissions.Prefixes.Scope + scopeName);
            await manager.CreateAsync(descriptor);
        }
    }

    private ValueTask ChooseAccessTokenFormat(OpenIddictServerEvents.GenerateTokenContext context)
    {
        if (context.TokenType == TokenTypeIdentifiers.AccessToken &&
            !(context.ClientId is { } clientId && _clients.TryGetValue(clientId, out var client) && client.ReferenceTokens))
        {
            context.IsReferenceToken = false;
            context.PersistTokenPayload = false;
        }

        return default;
    }

    private async Task CountAsync(HttpContext context, RequestDelegate next)
    {
        switch (context.Request.Path.Value)
        {
            case DiscoveryPath: Interlocked.Increment(ref _discoveryRequests); break;
            case JwksPath: Interlocked.Increment(ref _jwksRequests); break;
            case TokenPath: Interlocked.Increment(ref _tokenRequests); break;
            case IntrospectionPath: Interlocked.Increment(ref _introspectionRequests); break;
            case RevocationPath: Interlocked.Increment(ref _revocationRequests); break;
        }

        if (ResponseDelay > TimeSpan.Zero) await Task.Delay(ResponseDelay, context.RequestAborted);
        if (Intercept is { } intercept && await intercept(context)) return;
        await next(context);
    }

    // Reached only after OpenIddict validated the request and authenticated the client (passthrough).
    private IResult HandleTokenRequest(HttpContext context)
    {
        var request = context.GetOpenIddictServerRequest() ?? throw new InvalidOperationException("not an OpenIddict token request");
        var identity = new ClaimsIdentity(TokenValidationParameters.DefaultAuthenticationType, Claims.Name, Claims.Role);

        if (request.IsClientCredentialsGrantType())
        {
            var client = _clients[request.ClientId!];
            identity.SetClaim(Claims.Subject, client.ClientId);
            AddClaims(identity, client.Claims);
            var scopes = request.GetScopes();
            identity.SetScopes(scopes.IsDefaultOrEmpty ? client.Scopes : scopes);
            identity.SetDestinations(_ => [Destinations.AccessToken]);
        }
        else if (request.IsPasswordGrantType())
        {
            if (request.Username is not { } username || !_users.TryGetValue(username, out var user) || user.Password != request.Password)
            {
                return Results.Forbid(
                    new AuthenticationProperties(new Dictionary<string, string?>
                    {
                        [OpenIddictServerAspNetCoreConstants.Properties.Error] = Errors.InvalidGrant,
                        [OpenIddictServerAspNetCoreConstants.Properties.ErrorDescription] = "unknown user or wrong password",
                    }),
                    [OpenIddictServerAspNetCoreDefaults.AuthenticationScheme]);
            }

            identity.SetClaim(Claims.Subject, user.Username);
            AddClaims(identity, user.Claims);
            identity.SetScopes(request.GetScopes());
            identity.SetDestinations(_ => [Destinations.AccessToken, Destinations.IdentityToken]);
        }
        else
        {
            return Results.Forbid(
                new AuthenticationProperties(new Dictionary<string, string?>
                {
                    [OpenIddictServerAspNetCoreConstants.Properties.Error] = Errors.UnsupportedGrantType,
                }),
                [OpenIddictServerAspNetCoreDefaults.AuthenticationScheme]);
        }

        identity.SetAudiences(new[] { Audience, IntrospectionClientId }.Distinct());
        identity.SetAccessTokenLifetime(AccessTokenLifetime);
        return Results.SignIn(new ClaimsPrincipal(identity), properties: null, OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);
    }

    private static void AddClaims(ClaimsIdentity identity, IReadOnlyDictionary<string, object>? claims)
    {
        foreach (var (type, value) in claims ?? new Dictionary<string, object>())
        {
            switch (value)
            {
                case string text:
                    identity.AddClaim(type, text);
                    break;
                case bool flag:
                    identity.AddClaim(type, flag);
                    break;
                case int or long or short or byte:
                    identity.AddClaim(type, Convert.ToInt64(value, CultureInfo.InvariantCulture));
                    break;
                case IEnumerable sequence:
                    // One claim holding a JSON array, so even a single group stays an array in the token.
                    identity.AddClaim(new Claim(type, JsonSerializer.Serialize(sequence.Cast<object>().ToArray()), JsonClaimValueTypes.JsonArray));
                    break;
                default:
                    var element = value as JsonElement? ?? JsonSerializer.SerializeToElement(value);
                    var valueType = element.ValueKind switch
                    {
                        JsonValueKind.Array => JsonClaimValueTypes.JsonArray,
                        JsonValueKind.Object => JsonClaimValueTypes.Json,
                        JsonValueKind.Number => ClaimValueTypes.Double,
                        JsonValueKind.True or JsonValueKind.False => ClaimValueTypes.Boolean,
                        _ => ClaimValueTypes.String,
                    };
                    identity.AddClaim(new Claim(type, element.ValueKind == JsonValueKind.String ? element.GetString()! : element.GetRawText(), valueType));
                    break;
            }
        }
    }

    private static AuthenticationHeaderValue BasicAuthorization(string clientId, string secret) =>
        new("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"{Uri.EscapeDataString(clientId)}:{Uri.EscapeDataString(secret)}")));

    private InvalidOperationException Failure(string message) =>
        new($"{message}\n--- {Name} provider log (tail) ---\n{_logs.Tail()}");
}
