using System.Collections.Frozen;
using System.Globalization;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Authentication.OpenIdConnect;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;
using Portcullis.Configuration;
using Portcullis.State;
using Portcullis.Pipeline;
using Portcullis.Traffic;

namespace Portcullis.Identity.Sessions;

/// <summary>
/// What browser sessions run on, built once at startup from the first snapshot: the providers (one
/// OpenIdConnect + one Cookie authentication scheme each), Data Protection (key ring in Redis with
/// store: redis, encrypted with the keyRing certificate; else ephemeral), the ticket store (Redis calls
/// through the counters' Redis client: timeout and circuit breaker) and the token refresher. A reload that
/// changes identity.sessions is logged and needs a restart to apply.
/// </summary>
internal sealed partial class SessionRuntime : IDisposable, IAsyncDisposable, ISnapshotParticipant
{
    private readonly ServiceProvider? _dataProtectionServices;
    private readonly RedisCounterStore? _redis;
    private readonly ILogger<SessionRuntime> _logger;

    public SessionRuntime(CompiledSessions? sessions, TimeProvider time, ILoggerFactory loggers)
    {
        Sessions = sessions;
        Time = time;
        _logger = loggers.CreateLogger<SessionRuntime>();
        ProviderErrors = new ProviderErrorLog(time);
        if (sessions is null) return;

        var services = new ServiceCollection();
        services.AddSingleton(time);
        services.AddSingleton(loggers);
        var builder = services.AddDataProtection().SetApplicationName("portcullis-sessions");
        if (sessions.Store == SessionStoreKind.Redis)
        {
            // The counters' Redis client, reused for its connection in the background, per-call timeout
            // (stores.redis.timeout) and circuit breaker (stores.redis.retryAfter); a connection of its own.
            // Its breaker opens at the first failure, as before: a session call has no local fallback, and each
            // caller would otherwise wait out the whole timeout.
            var redis = _redis = new RedisCounterStore(sessions.Redis!, time, loggers.CreateLogger<RedisCounterStore>(), BreakerPolicy.FirstFailure);
            builder.PersistKeysToStackExchangeRedis(() => redis.Database ?? throw new SessionStoreUnavailableException("not connected"), sessions.RedisKeyPrefix + "dataprotection-keys");
            // Encrypted at rest: reading Redis is not enough to decrypt sessions or forge cookies.
            if (sessions.KeyRingCertificate is { } certificate) builder.ProtectKeysWithCertificate(certificate);
        }
        else
        {
            builder.UseEphemeralDataProtectionProvider();
        }

        _dataProtectionServices = services.BuildServiceProvider();
        DataProtection = _dataProtectionServices.GetRequiredService<IDataProtectionProvider>();
        Store = _redis is not null
            ? new RedisSessionStore(sessions, _redis, DataProtection, time)
            : new LocalSessionStore(sessions, time);
    }

    /// <summary>The Redis client of store: redis (null for the local store), for its health at startup.</summary>
    internal RedisCounterStore? Redis => _redis;

    /// <summary>The sessions the schemes were built from (startup); null when identity.sessions is not configured.</summary>
    public CompiledSessions? Sessions { get; }

    public FrozenDictionary<string, CompiledSessionProvider> Providers => Sessions?.Providers ?? FrozenDictionary<string, CompiledSessionProvider>.Empty;

    public TimeProvider Time { get; }

    public IDataProtectionProvider? DataProtection { get; }

    public ITicketStore? Store { get; }

    /// <summary>Which provider errors were logged lately: each is logged once per window, not per page load.</summary>
    public ProviderErrorLog ProviderErrors { get; }

    /// <summary>A changed identity.sessions cannot be applied without a restart: reported, the running ones stay.</summary>
    public string Name => "sessions";

    public PreparedChange Prepare(GatewaySnapshot next, GatewaySnapshot current)
    {
        if (next.Sessions?.Fingerprint == Sessions?.Fingerprint) return PreparedChange.Unchanged();
        var reason = ConfigDiff.ReadAtStart.First(e => e.Setting == "identity.sessions").Reason;
        return PreparedChange.RestartRequired(reason, () => LogNeedsRestart(_logger));
    }

    public void ConfigureCookie(CookieAuthenticationOptions options, CompiledSessionProvider provider, TokenRefresher refresher)
    {
        var sessions = Sessions!;
        options.Cookie.Name = provider.CookieName;
        options.Cookie.HttpOnly = true;
        options.Cookie.SameSite = SameSiteMode.Lax;
        options.Cookie.Path = "/";
        options.Cookie.Domain = sessions.CookieDomain;
        options.Cookie.IsEssential = true;
        options.Cookie.SecurePolicy = sessions.CookieName.StartsWith("__Host-", StringComparison.Ordinal) || sessions.CookieName.StartsWith("__Secure-", StringComparison.Ordinal)
            ? CookieSecurePolicy.Always
            : CookieSecurePolicy.SameAsRequest;
        options.ExpireTimeSpan = sessions.IdleTimeout;
        // The store slides the idle window on every read and is the authority on expiry; the handler's own
        // sliding renewal (only after half the window has passed) would end sessions idle for half of it.
        options.SlidingExpiration = false;
        options.SessionStore = Store;
        options.DataProtectionProvider = DataProtection;
        options.TimeProvider = Time;
        // Never reached through the cookie scheme (routes challenge the OIDC scheme), but never an app path either.
        options.LoginPath = provider.CallbackPath + "/unused-login";
        options.LogoutPath = provider.CallbackPath + "/unused-logout";
        options.AccessDeniedPath = provider.CallbackPath + "/unused-denied";
        options.Events.OnSigningIn = context =>
        {
            context.Properties.Items.TryAdd(SessionTicket.StartedItem, Time.GetUtcNow().ToString("o", CultureInfo.InvariantCulture));
            return Task.CompletedTask;
        };
        options.Events.OnValidatePrincipal = context => ValidateAsync(context, provider, refresher);
    }

    public void ConfigureOidc(OpenIdConnectOptions options, CompiledSessionProvider provider)
    {
        options.Authority = provider.Authority.AbsoluteUri;
        options.RequireHttpsMetadata = provider.Authority.Scheme == Uri.UriSchemeHttps;
        options.ClientId = provider.ClientId;
        options.ClientSecret = provider.ClientSecret;
        options.ResponseType = OpenIdConnectResponseType.Code;
        // A top-level GET back to the gateway, so the SameSite=Lax correlation and nonce cookies come along.
        options.ResponseMode = OpenIdConnectResponseMode.Query;
        options.UsePkce = true;
        options.Scope.Clear();
        foreach (var scope in provider.Scopes) options.Scope.Add(scope);
        options.CallbackPath = provider.CallbackPath;
        options.SignedOutCallbackPath = provider.SignedOutPath;
        options.RemoteSignOutPath = "/.portcullis/remote-signout/" + provider.Name;
        options.SignInScheme = provider.CookieScheme;
        options.SignOutScheme = provider.CookieScheme;
        options.SaveTokens = true;
        options.MapInboundClaims = false;
        options.GetClaimsFromUserInfoEndpoint = false;
        options.DisableTelemetry = true;
        options.DataProtectionProvider = DataProtection;
        options.TimeProvider = Time;
        options.BackchannelTimeout = TimeSpan.FromSeconds(10);
        options.TokenValidationParameters.NameClaimType = "name";
        options.SignedOutRedirectUri = "/";
        ConfigureOidcCookies(options);
        ConfigureOidcEvents(options, provider);
    }

    private static void ConfigureOidcCookies(OpenIdConnectOptions options)
    {
        foreach (var cookie in new[] { options.CorrelationCookie, options.NonceCookie })
        {
            cookie.SameSite = SameSiteMode.Lax;
            cookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
            cookie.HttpOnly = true;
            cookie.IsEssential = true;
            // Path=/ rather than the callback path: the page load that starts a sign-in must see the pending
            // ones to drop the oldest (SignInStarter); they never reach an upstream (SessionGate.StripCookies).
            cookie.Path = "/";
        }

        options.CorrelationCookie.Name = CompiledSessions.CorrelationCookiePrefix;
        options.NonceCookie.Name = CompiledSessions.NonceCookiePrefix;
    }

    private void ConfigureOidcEvents(OpenIdConnectOptions options, CompiledSessionProvider provider)
    {
        options.Events.OnTicketReceived = context =>
        {
            context.Properties ??= new AuthenticationProperties();
            context.Properties.Items[SessionTicket.StartedItem] = Time.GetUtcNow().ToString("o", CultureInfo.InvariantCulture);
            context.Properties.RedirectUri = SessionPages.SafeReturnUrl(context.Properties.RedirectUri) ?? "/";
            LogSignedIn(_logger, provider.Name);
            return Task.CompletedTask;
        };
        options.Events.OnRedirectToIdentityProvider = context =>
        {
            // Before PAR (when the provider offers it) and before the redirect: both carry the parameters.
            foreach (var (name, value) in provider.AuthorizationParameters) context.ProtocolMessage.SetParameter(name, value);
            if (context.Properties.Parameters.TryGetValue(SignInStarter.LoginHintItem, out var hint) && hint is string loginHint)
            {
                context.ProtocolMessage.LoginHint = loginHint;
            }

            return Task.CompletedTask;
        };
        options.Events.OnRemoteFailure = context => OnRemoteFailureAsync(context, provider);

        // Session fixation: a successful sign-in never continues a session already in the browser.
        var ticketReceived = options.Events.OnTicketReceived;
        options.Events.OnTicketReceived = async context =>
        {
            await SessionRotation.DropPreviousAsync(context.HttpContext, provider, Store);
            await ticketReceived(context);
        };
    }

    private async Task OnRemoteFailureAsync(RemoteFailureContext context, CompiledSessionProvider provider)
    {
        // State or nonce mismatch, a replayed or forged callback, a refused code, the provider's own error
        // (at its authorization or token endpoint): the browser gets a plain page offering a fresh sign-in,
        // never the exception. Provider error codes are logged once per window; the rest per callback.
        var code = SignInStarter.ProviderErrorCode(context.Failure);
        if (context.Failure is OpenIdConnectProtocolException)
        {
            if (ProviderErrors.ShouldLog(provider.Name, code)) LogProviderError(_logger, provider.Name, code);
        }
        else
        {
            LogCallbackFailed(_logger, provider.Name, context.Failure?.Message ?? "unknown");
        }

        context.HandleResponse();
        if (context.HttpContext.Features.Get<Portcullis.Pipeline.GatewayFeature>() is { } gateway) gateway.Refusal = ReasonCodes.SessionCallbackFailed;
        const string detail = "The sign-in could not be completed (it may have expired or been used already).";
        if (SessionPages.IsApiRequest(context.Request))
        {
            await ProblemWriter.WriteAsync(context.HttpContext, StatusCodes.Status400BadRequest, "Sign-in failed", detail, ReasonCodes.SessionCallbackFailed);
        }
        else
        {
            await SessionPages.WriteAsync(context.HttpContext, StatusCodes.Status400BadRequest, "Sign-in failed", detail, ("Try again", "/"));
        }
    }

    private async Task ValidateAsync(CookieValidatePrincipalContext context, CompiledSessionProvider provider, TokenRefresher refresher)
    {
        var sessions = Sessions!;
        var now = Time.GetUtcNow();
        var started = SessionTicket.Started(context.Properties);
        if (started is null || now - started.Value >= sessions.AbsoluteTimeout)
        {
            context.RejectPrincipal();
            await context.HttpContext.SignOutAsync(provider.CookieScheme);
            return;
        }

        var refreshToken = context.Properties.GetTokenValue("refresh_token");
        var expiresText = context.Properties.GetTokenValue("expires_at");
        if (refreshToken is null || expiresText is null ||
            !DateTimeOffset.TryParse(expiresText, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var expiresAt) ||
            expiresAt - now > sessions.RefreshBefore)
        {
            return;
        }

        var outcome = await refresher.RefreshAsync(provider, refreshToken);
        switch (outcome.Result)
        {
            case RefreshResult.Refreshed:
                context.Properties.UpdateTokenValue("access_token", outcome.AccessToken!);
                if (outcome.RefreshToken is not null) context.Properties.UpdateTokenValue("refresh_token", outcome.RefreshToken);
                if (outcome.IdToken is not null) context.Properties.UpdateTokenValue("id_token", outcome.IdToken);
                if (outcome.ExpiresAt is { } newExpiry) context.Properties.UpdateTokenValue("expires_at", newExpiry.ToString("o", CultureInfo.InvariantCulture));
                context.ShouldRenew = true;
                break;
            case RefreshResult.Rejected:
                context.RejectPrincipal();
                await context.HttpContext.SignOutAsync(provider.CookieScheme);
                break;
        }
    }

    public async ValueTask DisposeAsync()
    {
        _dataProtectionServices?.Dispose();
        if (_redis is not null) await _redis.DisposeAsync();
    }

    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();

    [LoggerMessage(EventId = 7010, Level = LogLevel.Warning, Message = "identity.sessions changed; providers, cookie and store apply after a restart (the running ones stay)")]
    private static partial void LogNeedsRestart(ILogger logger);

    [LoggerMessage(EventId = 7011, Level = LogLevel.Information, Message = "Session provider {Provider}: a user signed in")]
    private static partial void LogSignedIn(ILogger logger, string provider);

    [LoggerMessage(EventId = 7012, Level = LogLevel.Information, Message = "Session provider {Provider}: sign-in callback refused ({Reason})")]
    private static partial void LogCallbackFailed(ILogger logger, string provider, string reason);

    [LoggerMessage(EventId = 7013, Level = LogLevel.Warning, Message = "Session provider {Provider}: the provider answered the sign-in with error {Error}; repeats are logged at most every 5 minutes")]
    private static partial void LogProviderError(ILogger logger, string provider, string error);
}

/// <summary>Registers browser sessions: one cookie and one OpenIdConnect scheme per provider of the first snapshot.</summary>
internal static class SessionServiceCollectionExtensions
{
    public static IServiceCollection AddPortcullisSessions(this IServiceCollection services, GatewaySnapshot initial)
    {
        services.AddSingleton(sp => new SessionRuntime(initial.Sessions, sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILoggerFactory>()));
        services.AddHostedService<SessionStoreStartup>();
        services.AddSingleton<SessionDiscoveryMonitor>(); // /readyz: each provider's discovery, checked in the background
        services.AddHostedService(sp => sp.GetRequiredService<SessionDiscoveryMonitor>());
        services.AddSingleton<SessionGate>();
        services.AddSingleton<SignInStarter>();
        // AddAuthentication registers the host's own Data Protection, whose default writes a key ring in plain XML
        // to ~/.aspnet/DataProtection-Keys at start-up. Nothing of the gateway protects with it (sessions have
        // their own provider, the admin UI an ephemeral one), so its keys live in memory only and die with the
        // process. Configured first: the default setup looks for (and creates) the folder only when no repository is set.
        services.Configure<Microsoft.AspNetCore.DataProtection.KeyManagement.KeyManagementOptions>(options => options.XmlRepository = new InMemoryKeyRepository());
        services.AddDataProtection().UseEphemeralDataProtectionProvider();
        var authentication = services.AddAuthentication(); // the session endpoints need the handler provider even without providers
        if (initial.Sessions is not { Providers.Count: > 0 } sessions) return services;

        services.AddSingleton<TokenRefresher>();
        foreach (var provider in sessions.Providers.Values)
        {
            authentication.AddCookie(provider.CookieScheme, _ => { });
            authentication.AddOpenIdConnect(provider.OidcScheme, _ => { });
            services.AddOptions<CookieAuthenticationOptions>(provider.CookieScheme)
                .Configure<SessionRuntime, TokenRefresher>((options, runtime, refresher) => runtime.ConfigureCookie(options, provider, refresher));
            services.AddOptions<OpenIdConnectOptions>(provider.OidcScheme)
                .Configure<SessionRuntime>((options, runtime) => runtime.ConfigureOidc(options, provider));
        }

        return services;
    }
}

/// <summary>A Data Protection key repository that keeps its keys in memory: nothing is written to disk.</summary>
internal sealed class InMemoryKeyRepository : Microsoft.AspNetCore.DataProtection.Repositories.IXmlRepository
{
    private readonly List<System.Xml.Linq.XElement> _elements = [];
    private readonly Lock _lock = new();

    public IReadOnlyCollection<System.Xml.Linq.XElement> GetAllElements()
    {
        lock (_lock) return [.. _elements.Select(e => new System.Xml.Linq.XElement(e))];
    }

    public void StoreElement(System.Xml.Linq.XElement element, string friendlyName)
    {
        lock (_lock) _elements.Add(new System.Xml.Linq.XElement(element));
    }
}
