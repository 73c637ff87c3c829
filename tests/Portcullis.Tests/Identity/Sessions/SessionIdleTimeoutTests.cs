using System.Collections.Frozen;
using System.Security.Claims;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Portcullis.Configuration;
using Portcullis.Identity;
using Portcullis.Identity.Sessions;

namespace Portcullis.Tests.Identity.Sessions;

/// <summary>
/// identity.sessions.cookie.idleTimeout as documented (issue 13, point 7), through the real cookie
/// authentication handler configured as the gateway configures it, on a <see cref="FakeTimeProvider"/>:
/// a session ends after idleTimeout without a request, whenever in the window the last request came.
/// (The handler's own sliding renewal happened only after half the window, so a request early in the window
/// did not extend it and the session ended as soon as half the window had passed without a request.)
/// </summary>
public sealed class SessionIdleTimeoutTests : IDisposable
{
    private static readonly TimeSpan Idle = TimeSpan.FromMinutes(60);

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 1, 5, 9, 0, 0, TimeSpan.Zero));
    private readonly SessionRuntime _runtime;
    private readonly ServiceProvider _services;
    private readonly CompiledSessionProvider _provider = new()
    {
        Name = "corp",
        Authority = new Uri("https://login.example.test/"),
        ClientId = "gateway",
        ClientSecret = "secret",
        Scopes = ["openid"],
        CallbackPath = "/.portcullis/callback/corp",
        SignedOutPath = "/.portcullis/signed-out/corp",
        Claims = new ClaimMappingOptions(),
        CookieName = "portcullis-corp",
    };

    public SessionIdleTimeoutTests()
    {
        var sessions = new CompiledSessions
        {
            Providers = new Dictionary<string, CompiledSessionProvider> { ["corp"] = _provider }.ToFrozenDictionary(),
            CookieName = "portcullis",
            IdleTimeout = Idle,
            AbsoluteTimeout = TimeSpan.FromHours(12),
            Store = SessionStoreKind.Local,
            MaxSessions = 100,
            LogoutPath = "/.portcullis/logout",
            RefreshBefore = TimeSpan.FromMinutes(1),
            Fingerprint = "test",
        };
        _runtime = new SessionRuntime(sessions, _time, NullLoggerFactory.Instance);
        var services = new ServiceCollection().AddLogging();
        services.AddSingleton<TimeProvider>(_time);
        // No refresh token in these sessions, so the refresher is never asked.
        services.AddAuthentication().AddCookie(_provider.CookieScheme, options => _runtime.ConfigureCookie(options, _provider, null!));
        _services = services.BuildServiceProvider();
    }

    public void Dispose()
    {
        _services.Dispose();
        _runtime.Dispose();
    }

    private DefaultHttpContext Request(string? cookie)
    {
        var context = new DefaultHttpContext { RequestServices = _services.CreateScope().ServiceProvider };
        context.Request.Scheme = "https";
        context.Request.Host = new HostString("app.example.test");
        context.Request.Path = "/app";
        if (cookie is not null) context.Request.Headers.Cookie = cookie;
        return context;
    }

    private async Task<string> SignInAsync()
    {
        var context = Request(null);
        var principal = new ClaimsPrincipal(new ClaimsIdentity([new Claim("sub", "alice")], "oidc"));
        await context.SignInAsync(_provider.CookieScheme, principal, new AuthenticationProperties());
        var setCookie = context.Response.Headers.SetCookie.ToString();
        return setCookie[..setCookie.IndexOf(';', StringComparison.Ordinal)];
    }

    private async Task<bool> UseAsync(string cookie) => (await Request(cookie).AuthenticateAsync(_provider.CookieScheme)).Succeeded;

    [Fact]
    public async Task ARequestEarlyInTheWindow_StillRestartsIt_TheSessionEndsOnlyAfterIdleTimeoutUnused()
    {
        var cookie = await SignInAsync();

        _time.Advance(Idle * 0.25);
        Assert.True(await UseAsync(cookie));

        // 55 minutes without a request since the last one: within the 60-minute idle timeout.
        _time.Advance(Idle * 0.9);
        Assert.True(await UseAsync(cookie), "a session used 55 minutes ago ended before its 60-minute idle timeout");

        _time.Advance(Idle * 0.5);
        Assert.True(await UseAsync(cookie));

        // Unused for the whole idle timeout: ended.
        _time.Advance(Idle + TimeSpan.FromSeconds(1));
        Assert.False(await UseAsync(cookie));
    }

    [Fact]
    public async Task TheIdentityExpiry_IsTheLastUsePlusIdleTimeout()
    {
        var cookie = await SignInAsync();
        _time.Advance(TimeSpan.FromMinutes(10));
        var result = await Request(cookie).AuthenticateAsync(_provider.CookieScheme);
        Assert.Equal(_time.GetUtcNow() + Idle, result.Properties!.ExpiresUtc);
    }
}
