using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.OpenIdConnect;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Portcullis.Pipeline;
using Portcullis.Routing;

namespace Portcullis.Identity.Sessions;

/// <summary>
/// The gateway's own browser paths, mapped as endpoints on the route listeners ahead of every route: each
/// provider's callback and signed-out callback (handled by ASP.NET Core's OpenIdConnect handler: state,
/// nonce, PKCE, code exchange), the logout path, and GET /.portcullis/login/{provider}?rd=/path to start a
/// sign-in explicitly. Return URLs stay on this origin. The paths are read at start (sessions need a restart).
/// </summary>
internal sealed partial class SessionEndpoints(SessionRuntime runtime, IOptionsMonitor<OpenIdConnectOptions> oidc, SignInStarter signIn, ILogger<SessionEndpoints> logger)
{
    public static void Map(IEndpointRouteBuilder endpoints)
    {
        var runtime = endpoints.ServiceProvider.GetRequiredService<SessionRuntime>();
        if (runtime.Sessions is not { } sessions) return;
        var handlers = ActivatorUtilities.CreateInstance<SessionEndpoints>(endpoints.ServiceProvider);
        Path(endpoints, sessions.LogoutPath, handlers.LogoutAsync);
        var login = sessions.LoginPath + "/";
        endpoints.Map(login + "{**provider}", context => handlers.LoginAsync(context, context.Request.Path.Value![login.Length..])).AsGatewayPath(login, prefix: true);
        foreach (var provider in runtime.Providers.Values)
        {
            Path(endpoints, provider.CallbackPath, context => HandleCallbackAsync(context, provider));
            Path(endpoints, provider.SignedOutPath, context => HandleCallbackAsync(context, provider));
        }
    }

    // Any method: the handlers answer the ones they do not take themselves (logout: 405 with Allow).
    private static void Path(IEndpointRouteBuilder endpoints, string path, RequestDelegate handler)
    {
        if (GatewayEndpointConventions.Literal(path) is { } pattern) endpoints.Map(pattern, handler).AsGatewayPath(path);
    }

    private static async Task HandleCallbackAsync(HttpContext context, CompiledSessionProvider provider)
    {
        SetReason(context, ReasonCodes.SessionCallback);
        // The handler provider is scoped: it caches handlers initialised for one request. Taken from the
        // middleware's constructor it would hand a later callback a handler bound to an earlier (recycled or
        // disposed) HttpContext.
        var handlers = context.RequestServices.GetRequiredService<IAuthenticationHandlerProvider>();
        if (await handlers.GetHandlerAsync(context, provider.OidcScheme) is IAuthenticationRequestHandler handler && await handler.HandleRequestAsync()) return;
        await ProblemWriter.WriteAsync(context, 404, "Not found", "Nothing here.", ReasonCodes.SessionCallbackUnexpected);
    }

    private async Task LoginAsync(HttpContext context, string name)
    {
        SetReason(context, ReasonCodes.SessionLogin);
        if (!runtime.Providers.TryGetValue(name, out var provider))
        {
            await SessionPages.WriteAsync(context, 404, "Unknown sign-in", "There is no such sign-in provider.", ("Home", "/"));
            return;
        }

        var returnUrl = SessionPages.SafeReturnUrl(context.Request.Query["rd"].ToString()) ?? "/";
        // ?login_hint=alice@example.com is passed on to the provider (it pre-fills its form); anything odd is dropped.
        var hint = context.Request.Query["login_hint"].ToString();
        var loginHint = hint.Length is > 0 and <= 256 && !hint.Any(char.IsControl) ? hint : null;
        await signIn.StartAsync(context, provider, returnUrl, loginHint);
    }

    private async Task LogoutAsync(HttpContext context)
    {
        SetReason(context, ReasonCodes.SessionLogout);
        var request = context.Request;
        var returnUrl = SessionPages.SafeReturnUrl(request.Query["rd"].ToString()) ?? "/";
        if (HttpMethods.IsGet(request.Method) || HttpMethods.IsHead(request.Method))
        {
            // A GET never ends the session (a link or image on any site could send one): it asks, and the form POSTs.
            SetReason(context, ReasonCodes.SessionLogoutConfirm);
            context.Response.Headers["X-Frame-Options"] = "DENY";
            await SessionPages.WritePageAsync(context, StatusCodes.Status200OK, "Sign out", "Sign out of this site?",
                (request.PathBase + request.Path + request.QueryString, "Sign out"), ("Cancel", returnUrl));
            return;
        }

        if (!HttpMethods.IsPost(request.Method))
        {
            context.Response.Headers.Allow = "GET, HEAD, POST";
            await ProblemWriter.WriteAsync(context, 405, "Method not allowed", "POST to sign out (GET shows a confirmation page).", ReasonCodes.SessionLogoutMethod);
            return;
        }

        if (!IsSameOrigin(request))
        {
            SetReason(context, ReasonCodes.SessionLogoutCrossSite);
            // Any site can send these: logged once per window, not per request.
            if (runtime.ProviderErrors.ShouldLog("logout", "cross-site")) LogCrossSiteLogout(logger, request.Headers["Sec-Fetch-Site"].ToString() is { Length: > 0 } site ? "Sec-Fetch-Site " + site : "Origin");
            const string detail = "Signing out must start from this site.";
            if (SessionPages.IsApiRequest(request)) await ProblemWriter.WriteAsync(context, 403, "Forbidden", detail, ReasonCodes.SessionLogoutCrossSite);
            else await SessionPages.WriteAsync(context, 403, "Sign-out refused", detail, ("Sign out here", runtime.Sessions!.LogoutPath));
            return;
        }

        string? only = request.Query["provider"].ToString() is { Length: > 0 } named ? named : null;
        CompiledSessionProvider? endSession = null;
        var signedIn = new List<CompiledSessionProvider>();
        foreach (var provider in runtime.Providers.Values)
        {
            if (only is not null && provider.Name != only) continue;
            var result = await context.AuthenticateAsync(provider.CookieScheme);
            if (!result.Succeeded) continue;
            signedIn.Add(provider);
            if (endSession is null && result.Properties?.GetTokenValue("id_token") is not null && await HasEndSessionAsync(provider, context.RequestAborted)) endSession = provider;
        }

        if (endSession is not null)
        {
            // Writes the redirect to the provider's end_session_endpoint (id_token_hint, post_logout_redirect_uri,
            // protected state carrying the return URL); the provider sends the browser back to SignedOutPath.
            await context.SignOutAsync(endSession.OidcScheme, new AuthenticationProperties { RedirectUri = returnUrl });
        }

        foreach (var provider in signedIn)
        {
            await context.SignOutAsync(provider.CookieScheme);
            LogSignedOut(logger, provider.Name);
        }

        if (endSession is null)
        {
            context.Response.StatusCode = StatusCodes.Status302Found;
            context.Response.Headers.Location = returnUrl;
        }

        context.Response.Headers.CacheControl = "no-store";
    }

    /// <summary>
    /// CSRF protection for the logout POST: a browser says where the request comes from. Sec-Fetch-Site (set by the
    /// browser, not by page script) must be same-origin or none (typed, bookmarked); without it the Origin's host
    /// must be this request's host. A request with neither header is not from a browser, so no cross-site request.
    /// </summary>
    private static bool IsSameOrigin(HttpRequest request)
    {
        var site = request.Headers["Sec-Fetch-Site"].ToString();
        if (site.Length > 0) return site is "same-origin" or "none";
        var origin = request.Headers.Origin.ToString();
        if (origin.Length == 0) return true;
        return Uri.TryCreate(origin, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https" &&
            string.Equals(uri.Authority, request.Host.Value, StringComparison.OrdinalIgnoreCase);
    }

    private async Task<bool> HasEndSessionAsync(CompiledSessionProvider provider, CancellationToken cancel)
    {
        try
        {
            var options = oidc.Get(provider.OidcScheme);
            var configuration = await options.ConfigurationManager!.GetConfigurationAsync(cancel);
            return !string.IsNullOrEmpty(configuration.EndSessionEndpoint);
        }
        catch (Exception e) when (e is InvalidOperationException or HttpRequestException or IOException)
        {
            LogNoDiscovery(logger, provider.Name, e.GetType().Name);
            return false;
        }
    }

    private static void SetReason(HttpContext context, ReasonCode reason)
    {
        if (context.Features.Get<GatewayFeature>() is { } gateway) gateway.Refusal = reason;
    }

    [LoggerMessage(EventId = 7030, Level = LogLevel.Information, Message = "Session provider {Provider}: a user signed out")]
    private static partial void LogSignedOut(ILogger logger, string provider);

    [LoggerMessage(EventId = 7033, Level = LogLevel.Information, Message = "Refused a cross-site sign-out POST ({Header}); repeats are logged at most every 5 minutes")]
    private static partial void LogCrossSiteLogout(ILogger logger, string header);

    [LoggerMessage(EventId = 7031, Level = LogLevel.Warning, Message = "Session provider {Provider}: discovery failed at logout ({Error}); the local session ends without the provider's end_session_endpoint")]
    private static partial void LogNoDiscovery(ILogger logger, string provider, string error);
}
