using System.Collections.Frozen;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Primitives;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Identity.Sessions;

/// <summary>
/// The session side of IdentityMiddleware for routes with auth.session: authenticates the session cookie
/// into a <see cref="CallerIdentity"/> (then the usual rules, headers and assertion apply), sends a browser
/// without a session to its provider, answers script with 401/403 problem+json and people with a 403 page,
/// and keeps the gateway's cookies away from upstreams.
/// </summary>
internal sealed partial class SessionGate(SessionRuntime runtime, SignInStarter signIn, ILogger<SessionGate> logger)
{
    public async ValueTask<AuthDecision> AuthenticateAsync(HttpContext context, CompiledRouteAuth auth)
    {
        if (!runtime.Providers.TryGetValue(auth.Session!, out var provider))
        {
            return AuthDecision.Unavailable(ReasonCodes.SessionProviderNotStarted, "Sign-in for this route is not available until the gateway restarts.");
        }

        AuthenticateResult result;
        try
        {
            result = await context.AuthenticateAsync(provider.CookieScheme);
        }
        catch (Exception e) when (SessionStoreGuard.IsStoreFailure(e))
        {
            // Also the key ring in Redis failing to load (a CryptographicException around the store's failure).
            LogStoreFailed(logger, e.GetType().Name);
            if (context.Features.Get<Portcullis.Pipeline.GatewayFeature>() is { } gateway) gateway.SessionStoreDecision = "session-check.refused";
            return AuthDecision.Unavailable(ReasonCodes.SessionStoreUnavailable, "Sessions cannot be checked right now.");
        }

        if (!result.Succeeded || result.Principal is null)
        {
            // No cookie, a tampered or foreign one, an expired or removed session: a fresh sign-in.
            return AuthDecision.Unauthenticated(result.None ? ReasonCodes.SessionMissing : ReasonCodes.SessionInvalid, "This page needs you to sign in.", false);
        }

        var claims = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (var claim in result.Principal.Claims)
        {
            if (!claims.TryGetValue(claim.Type, out var values)) claims[claim.Type] = values = [];
            values.Add(claim.Value);
        }

        var identity = CallerIdentity.FromClaims(
            CredentialKind.Session,
            provider.Name,
            provider.Claims,
            claims.ToFrozenDictionary(pair => pair.Key, pair => pair.Value.ToArray(), StringComparer.Ordinal),
            result.Properties?.ExpiresUtc ?? runtime.Time.GetUtcNow() + runtime.Sessions!.IdleTimeout);
        return AuthDecision.Allow(identity, ReasonCodes.SessionValid);
    }

    public async Task DenyAsync(HttpContext context, CompiledRouteAuth auth, AuthDecision decision)
    {
        var request = context.Request;
        var api = SessionPages.IsApiRequest(request);
        var logout = runtime.Sessions?.LogoutPath ?? "/";
        switch (decision.Status)
        {
            case 401 when !api && (HttpMethods.IsGet(request.Method) || HttpMethods.IsHead(request.Method)) && runtime.Providers.TryGetValue(auth.Session!, out var provider):
                // Bounded and rate-limited; a provider that is down or refuses gives a page, not a 500 (SignInStarter).
                await signIn.StartAsync(context, provider, SessionPages.SafeReturnUrl(request.PathBase + request.Path + request.QueryString) ?? "/");
                return;
            case 401:
                context.Response.Headers.WWWAuthenticate = "Portcullis-Session realm=\"portcullis\"";
                await ProblemWriter.WriteAsync(context, 401, "Unauthorized", "Sign in first: this route needs a browser session.", decision.Reason);
                return;
            case 403 when api:
                await ProblemWriter.WriteAsync(context, 403, "Forbidden", "Your account may not use this page.", decision.Reason);
                return;
            case 403:
                var who = decision.Identity?.Claims.TryGetValue("email", out var email) == true && email.Length > 0 ? email[0] : decision.Identity?.Subject;
                await SessionPages.WriteAsync(context, StatusCodes.Status403Forbidden, "Access denied",
                    who is null ? "Your account does not have access to this page." : $"You are signed in as {who}, which does not have access to this page.",
                    ("Sign in as someone else", logout));
                return;
            default:
                context.Response.Headers.RetryAfter = "5";
                if (api) await ProblemWriter.WriteAsync(context, 503, "Sessions unavailable", decision.Detail ?? "Sessions cannot be checked right now.", decision.Reason);
                else await SessionPages.WriteAsync(context, StatusCodes.Status503ServiceUnavailable, "Temporarily unavailable", "Sign-in cannot be checked right now. Please try again in a moment.");
                return;
        }
    }

    /// <summary>Removes the session, correlation and nonce cookies from the Cookie header the upstream receives.</summary>
    public void StripCookies(HttpContext context)
    {
        var sessions = runtime.Sessions;
        if (sessions is null) return;
        var headers = context.Request.Headers;
        var cookies = headers.Cookie;
        if (cookies.Count == 0) return;
        var kept = new List<string>();
        var removed = false;
        foreach (var header in cookies)
        {
            if (header is null) continue;
            foreach (var part in header.Split(';'))
            {
                var pair = part.Trim();
                if (pair.Length == 0) continue;
                var name = pair.Split('=', 2)[0].Trim();
                if (name.StartsWith(sessions.CookieName, StringComparison.Ordinal) ||
                    name.StartsWith(CompiledSessions.CorrelationCookiePrefix, StringComparison.Ordinal) ||
                    name.StartsWith(CompiledSessions.NonceCookiePrefix, StringComparison.Ordinal))
                {
                    removed = true;
                    continue;
                }

                kept.Add(pair);
            }
        }

        if (!removed) return;
        if (kept.Count == 0) headers.Remove("Cookie");
        else headers.Cookie = new StringValues(string.Join("; ", kept));
    }

    [LoggerMessage(EventId = 7020, Level = LogLevel.Warning, Message = "Session store unavailable ({Error}); session routes answer 503")]
    private static partial void LogStoreFailed(ILogger logger, string error);
}
