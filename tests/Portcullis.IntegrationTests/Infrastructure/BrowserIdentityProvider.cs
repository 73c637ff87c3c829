using System.Collections.Concurrent;
using System.Net;
using System.Security.Claims;
using System.Text.Json;
using Microsoft.AspNetCore;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
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
using OpenIddict.Server.AspNetCore;
using Portcullis.IntegrationTests.Infrastructure.Identity;
using static OpenIddict.Abstractions.OpenIddictConstants;

namespace Portcullis.IntegrationTests.Infrastructure;

/// <summary>A person who can sign in at <see cref="BrowserIdentityProvider"/>'s login form.</summary>
internal sealed record BrowserUser(string Username, string Password, string Email, string Name, string[] Groups, bool EmailVerified = true);

/// <summary>
/// A real OpenID Provider for browser sign-in tests (OpenIddict server on Kestrel, 127.0.0.1, plain HTTP):
/// authorization code flow with PKCE required, an HTML login form (username + password) behind its own
/// cookie session, ID tokens carrying email, name and groups, rotating refresh tokens (offline_access), and
/// an end_session endpoint that ends the provider's own session and returns to the registered
/// post_logout_redirect_uri. Clients are registered after the gateway starts (their redirect URIs name its port).
/// </summary>
internal sealed class BrowserIdentityProvider : IAsyncDisposable
{
    public const string AuthorizePath = "/connect/authorize";
    public const string PushedAuthorizationPath = "/connect/par";
    public const string TokenPath = "/connect/token";
    public const string EndSessionPath = "/connect/endsession";
    public const string LoginPath = "/account/login";
    public const string CookieName = "idp.session";

    /// <summary>In groups staff and admins, verified email at example.test.</summary>
    public static readonly BrowserUser Alice = new("alice", "alice-password", "alice@example.test", "Alice Example", ["staff", "admins"]);

    /// <summary>In group contractors only, email at contractor.test.</summary>
    public static readonly BrowserUser Bob = new("bob", "bob-password", "bob@contractor.test", "Bob Contractor", ["contractors"]);

    private readonly InMemoryDatabaseRoot _databaseRoot = new();
    private readonly string _databaseName = "browser-idp-" + Guid.NewGuid().ToString("N");
    private readonly IdentityLogCollector _logs = new();
    private readonly ConcurrentDictionary<string, BrowserUser> _users = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, bool> _disabled = new(StringComparer.Ordinal);
    private WebApplication? _app;
    private int _authorizeRequests;
    private int _codeRedemptions;
    private int _refreshRedemptions;
    private int _endSessionRequests;
    private int _logins;
    private int _pushedAuthorizationRequests;
    private readonly bool _pushedAuthorization;
    private readonly ConcurrentQueue<IReadOnlyDictionary<string, string?>> _authorizations = new();

    private BrowserIdentityProvider(int port, bool pushedAuthorization)
    {
        Port = port;
        _pushedAuthorization = pushedAuthorization;
    }

    public int Port { get; }

    public string Authority => $"http://127.0.0.1:{Port}/";

    /// <summary>Lifetime of access tokens issued from now on. Default one hour.</summary>
    public TimeSpan AccessTokenLifetime { get; set; } = TimeSpan.FromHours(1);

    public int AuthorizeRequests => Volatile.Read(ref _authorizeRequests);

    public int CodeRedemptions => Volatile.Read(ref _codeRedemptions);

    public int RefreshRedemptions => Volatile.Read(ref _refreshRedemptions);

    public int EndSessionRequests => Volatile.Read(ref _endSessionRequests);

    /// <summary>Requests at the pushed-authorization (PAR) endpoint, answered or refused (only with pushedAuthorization).</summary>
    public int PushedAuthorizationRequests => Volatile.Read(ref _pushedAuthorizationRequests);

    /// <summary>The parameters of each authorization request the provider accepted (PAR requests resolved), oldest first.</summary>
    public IReadOnlyList<IReadOnlyDictionary<string, string?>> Authorizations => [.. _authorizations];

    /// <summary>Successful logins at the form.</summary>
    public int Logins => Volatile.Read(ref _logins);

    public IReadOnlyCollection<string> Logs => _logs.Lines;

    public string LogTail => _logs.Tail(60);

    /// <param name="pushedAuthorization">Offer a pushed-authorization endpoint (RFC 9126) in discovery; clients then use it.</param>
    /// <param name="port">A port chosen beforehand (e.g. one a gateway already names while nothing listens there yet).</param>
    public static async Task<BrowserIdentityProvider> StartAsync(bool pushedAuthorization = false, int? port = null)
    {
        var provider = new BrowserIdentityProvider(port ?? Ports.GetFree(), pushedAuthorization);
        provider._users[Alice.Username] = Alice;
        provider._users[Bob.Username] = Bob;
        await provider.StartCoreAsync();
        await provider.WarmUpAsync();
        return provider;
    }

    /// <summary>
    /// Asks the fresh provider for its discovery document and keys once, with patience: on a loaded machine its
    /// first answer can take longer than the gateway's 10 s backchannel timeout, failing a test's first sign-in.
    /// </summary>
    private async Task WarmUpAsync()
    {
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(60) };
        await client.GetStringAsync(Authority + ".well-known/openid-configuration");
        await client.GetStringAsync(Authority + ".well-known/jwks");
    }

    /// <summary>Adds a person who can sign in at the login form (besides Alice and Bob).</summary>
    public void RegisterUser(BrowserUser user) => _users[user.Username] = user;

    /// <summary>A disabled user's refresh tokens are refused (invalid_grant), as a provider does for a departed employee.</summary>
    public void Disable(string username) => _disabled[username] = true;

    /// <summary>
    /// Registers a confidential client (a public one when <paramref name="secret"/> is null) for the authorization
    /// code flow (PKCE required) with refresh tokens, redirecting only to <paramref name="redirectUris"/> and, after
    /// end_session, <paramref name="postLogoutRedirectUris"/>.
    /// </summary>
    public async Task RegisterClientAsync(string clientId, string? secret, IEnumerable<string> redirectUris, IEnumerable<string> postLogoutRedirectUris)
    {
        await using var scope = _app!.Services.CreateAsyncScope();
        var manager = scope.ServiceProvider.GetRequiredService<IOpenIddictApplicationManager>();
        var descriptor = new OpenIddictApplicationDescriptor
        {
            ClientId = clientId,
            ClientSecret = secret,
            ClientType = secret is null ? ClientTypes.Public : ClientTypes.Confidential,
            ConsentType = ConsentTypes.Implicit,
            DisplayName = clientId,
            Permissions =
            {
                Permissions.Endpoints.Authorization,
                Permissions.Endpoints.Token,
                Permissions.Endpoints.EndSession,
                Permissions.GrantTypes.AuthorizationCode,
                Permissions.GrantTypes.RefreshToken,
                Permissions.ResponseTypes.Code,
                Permissions.Scopes.Email,
                Permissions.Scopes.Profile,
                Permissions.Prefixes.Scope + "groups",
            },
            Requirements = { Requirements.Features.ProofKeyForCodeExchange },
        };
        if (_pushedAuthorization) descriptor.Permissions.Add(Permissions.Endpoints.PushedAuthorization);
        foreach (var uri in redirectUris) descriptor.RedirectUris.Add(new Uri(uri));
        foreach (var uri in postLogoutRedirectUris) descriptor.PostLogoutRedirectUris.Add(new Uri(uri));
        await manager.CreateAsync(descriptor);
    }

    /// <summary>Registers a client for a gateway at <paramref name="gatewayUrls"/> (callback and signed-out paths of provider <paramref name="providerName"/>).</summary>
    public Task RegisterGatewayAsync(string clientId, string? secret, string providerName, params string[] gatewayUrls) =>
        RegisterClientAsync(clientId, secret,
            gatewayUrls.Select(url => url + "/.portcullis/callback/" + providerName),
            gatewayUrls.Select(url => url + "/.portcullis/signed-out/" + providerName));

    public async ValueTask DisposeAsync()
    {
        if (_app is null) return;
        await _app.StopAsync();
        await _app.DisposeAsync();
        _app = null;
    }

    private async Task StartCoreAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(_logs);
        builder.Services.Configure<HostOptions>(options => options.ShutdownTimeout = TimeSpan.FromSeconds(2));
        builder.WebHost.ConfigureKestrel(options => options.Listen(IPAddress.Loopback, Port, listen => listen.Protocols = HttpProtocols.Http1));
        builder.Services.AddDbContext<IdentityProviderDbContext>(options =>
        {
            options.UseInMemoryDatabase(_databaseName, _databaseRoot);
            options.ConfigureWarnings(warnings => warnings.Ignore(InMemoryEventId.TransactionIgnoredWarning));
            options.UseOpenIddict();
        });
        builder.Services.AddAuthentication().AddCookie(CookieAuthenticationDefaults.AuthenticationScheme, options =>
        {
            options.Cookie.Name = CookieName;
            options.LoginPath = LoginPath;
        });
        builder.Services.AddOpenIddict()
            .AddCore(options => options.UseEntityFrameworkCore().UseDbContext<IdentityProviderDbContext>())
            .AddServer(options =>
            {
                options.SetIssuer(new Uri(Authority));
                options.SetAuthorizationEndpointUris(AuthorizePath.TrimStart('/'))
                    .SetTokenEndpointUris(TokenPath.TrimStart('/'))
                    .SetEndSessionEndpointUris(EndSessionPath.TrimStart('/'))
                    .SetConfigurationEndpointUris(".well-known/openid-configuration")
                    .SetJsonWebKeySetEndpointUris(".well-known/jwks");
                if (_pushedAuthorization) options.SetPushedAuthorizationEndpointUris(PushedAuthorizationPath.TrimStart('/'));
                options.AllowAuthorizationCodeFlow().AllowRefreshTokenFlow().RequireProofKeyForCodeExchange();
                options.RegisterScopes(Scopes.OpenId, Scopes.Email, Scopes.Profile, Scopes.OfflineAccess, "groups");
                options.AddEphemeralEncryptionKey().AddEphemeralSigningKey();
                options.DisableAccessTokenEncryption();
                options.UseAspNetCore()
                    .DisableTransportSecurityRequirement()
                    .EnableAuthorizationEndpointPassthrough()
                    .EnableTokenEndpointPassthrough()
                    .EnableEndSessionEndpointPassthrough();
            });

        var app = builder.Build();
        app.Use(async (context, next) =>
        {
            switch (context.Request.Path.Value)
            {
                case AuthorizePath: Interlocked.Increment(ref _authorizeRequests); break;
                case EndSessionPath: Interlocked.Increment(ref _endSessionRequests); break;
                case PushedAuthorizationPath: Interlocked.Increment(ref _pushedAuthorizationRequests); break;
            }

            await next(context);
        });
        app.UseAuthentication();
        app.MapGet(LoginPath, (Delegate)LoginForm);
        app.MapPost(LoginPath, (Delegate)LoginAsync).DisableAntiforgery();
        app.MapMethods(AuthorizePath, ["GET", "POST"], (Delegate)AuthorizeAsync);
        app.MapPost(TokenPath, (Delegate)TokenAsync);
        app.MapMethods(EndSessionPath, ["GET", "POST"], (Delegate)EndSessionAsync);
        await app.StartAsync();
        _app = app;
    }

    private static IResult LoginForm(HttpContext context, string? returnUrl, string? error)
    {
        var html = $$"""
            <!doctype html><html><head><meta charset="utf-8"><title>Test IdP sign-in</title></head><body>
            <h1>Sign in to the test IdP</h1>
            {{(error is null ? "" : "<p id=\"error\">Wrong username or password.</p>")}}
            <form method="post" action="{{LoginPath}}">
              <input type="hidden" name="returnUrl" value="{{WebUtility.HtmlEncode(returnUrl ?? "/")}}">
              <label>Username <input id="username" name="username" autocomplete="username"></label>
              <label>Password <input id="password" name="password" type="password" autocomplete="current-password"></label>
              <button id="signin" type="submit">Sign in</button>
            </form></body></html>
            """;
        return Results.Content(html, "text/html; charset=utf-8");
    }

    private async Task<IResult> LoginAsync(HttpContext context)
    {
        var form = await context.Request.ReadFormAsync();
        var returnUrl = form["returnUrl"].ToString();
        if (!returnUrl.StartsWith(AuthorizePath, StringComparison.Ordinal)) returnUrl = "/";
        if (!_users.TryGetValue(form["username"].ToString(), out var user) || user.Password != form["password"].ToString())
        {
            return Results.Redirect($"{LoginPath}?error=1&returnUrl={Uri.EscapeDataString(returnUrl)}");
        }

        var identity = new ClaimsIdentity(CookieAuthenticationDefaults.AuthenticationScheme);
        identity.AddClaim(new Claim(Claims.Subject, user.Username));
        await context.SignInAsync(CookieAuthenticationDefaults.AuthenticationScheme, new ClaimsPrincipal(identity));
        Interlocked.Increment(ref _logins);
        return Results.Redirect(returnUrl);
    }

    private async Task<IResult> AuthorizeAsync(HttpContext context)
    {
        var request = context.GetOpenIddictServerRequest() ?? throw new InvalidOperationException("not an OpenIddict request");
        _authorizations.Enqueue(request.GetParameters().ToDictionary(p => p.Key, p => (string?)p.Value, StringComparer.Ordinal));
        var session = await context.AuthenticateAsync(CookieAuthenticationDefaults.AuthenticationScheme);
        if (!session.Succeeded || session.Principal.FindFirst(Claims.Subject)?.Value is not { } username || !_users.TryGetValue(username, out var user))
        {
            var back = context.Request.PathBase + context.Request.Path + context.Request.QueryString;
            return Results.Redirect($"{LoginPath}?returnUrl={Uri.EscapeDataString(back)}");
        }

        var principal = PrincipalFor(user, request.GetScopes());
        return Results.SignIn(principal, properties: null, OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);
    }

    private async Task<IResult> TokenAsync(HttpContext context)
    {
        var request = context.GetOpenIddictServerRequest() ?? throw new InvalidOperationException("not an OpenIddict request");
        if (!request.IsAuthorizationCodeGrantType() && !request.IsRefreshTokenGrantType())
        {
            return Forbid(Errors.UnsupportedGrantType, "only authorization_code and refresh_token");
        }

        if (request.IsAuthorizationCodeGrantType()) Interlocked.Increment(ref _codeRedemptions);
        else Interlocked.Increment(ref _refreshRedemptions);
        var result = await context.AuthenticateAsync(OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);
        var username = result.Principal?.GetClaim(Claims.Subject);
        if (username is null || !_users.TryGetValue(username, out var user) || _disabled.ContainsKey(username))
        {
            return Forbid(Errors.InvalidGrant, "the user is no longer allowed to sign in");
        }

        return Results.SignIn(PrincipalFor(user, result.Principal!.GetScopes()), properties: null, OpenIddictServerAspNetCoreDefaults.AuthenticationScheme);
    }

    private static async Task<IResult> EndSessionAsync(HttpContext context)
    {
        await context.SignOutAsync(CookieAuthenticationDefaults.AuthenticationScheme);
        return Results.SignOut(new AuthenticationProperties { RedirectUri = "/" }, [OpenIddictServerAspNetCoreDefaults.AuthenticationScheme]);
    }

    private ClaimsPrincipal PrincipalFor(BrowserUser user, IEnumerable<string> scopes)
    {
        var identity = new ClaimsIdentity(TokenValidationParameters.DefaultAuthenticationType, Claims.Name, Claims.Role);
        identity.SetClaim(Claims.Subject, user.Username);
        identity.SetClaim(Claims.Email, user.Email);
        identity.AddClaim(new Claim(Claims.EmailVerified, user.EmailVerified ? "true" : "false", ClaimValueTypes.Boolean));
        identity.SetClaim(Claims.Name, user.Name);
        identity.AddClaim(new Claim("groups", JsonSerializer.Serialize(user.Groups), JsonClaimValueTypes.JsonArray));
        identity.SetScopes(scopes);
        identity.SetAccessTokenLifetime(AccessTokenLifetime);
        identity.SetDestinations(_ => [Destinations.AccessToken, Destinations.IdentityToken]);
        return new ClaimsPrincipal(identity);
    }

    private static IResult Forbid(string error, string description) =>
        Results.Forbid(
            new AuthenticationProperties(new Dictionary<string, string?>
            {
                [OpenIddictServerAspNetCoreConstants.Properties.Error] = error,
                [OpenIddictServerAspNetCoreConstants.Properties.ErrorDescription] = description,
            }),
            [OpenIddictServerAspNetCoreDefaults.AuthenticationScheme]);
}
