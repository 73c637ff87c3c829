using System.Globalization;
using BitFaster.Caching.Lru;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;
using Portcullis.State;
using Portcullis.Traffic;
using Portcullis.Pipeline;

namespace Portcullis.Identity.Sessions;

/// <summary>
/// Starts a browser sign-in (the OpenIdConnect challenge: correlation and nonce cookies, PAR when the provider
/// offers it, the redirect) for a session route's page load and for the login path. Each start is bounded:
/// a client address may start <see cref="CompiledSessions.SignInsPerMinute"/> a minute, and a browser keeps at
/// most <see cref="MaxPending"/> pending sign-ins (the oldest cookies are deleted), so repeated page loads
/// cannot pile up cookies until the callback's Cookie header is too large to be read. A provider that cannot
/// be reached or refuses the request gives a "Sign-in unavailable" page (problem+json for script), never a 500.
/// </summary>
internal sealed partial class SignInStarter(SessionRuntime runtime, ILogger<SignInStarter> logger)
{
    /// <summary>Pending sign-ins one browser keeps (several tabs may sign in at once); older ones are dropped.</summary>
    public const int MaxPending = 3;

    // One GCRA cell per client address; an evicted address starts afresh, which only ever allows more.
    private readonly ConcurrentLru<string, LocalCounterStore.Cell> _starts = new(10_000);

    public const string LoginHintItem = "login_hint";

    public async Task StartAsync(HttpContext context, CompiledSessionProvider provider, string returnUrl, string? loginHint = null)
    {
        var api = SessionPages.IsApiRequest(context.Request);
        if (!Admit(context, out var retryAfter))
        {
            // ShouldLog lets one line through per 5 minutes, so the address is computed only then.
            if (runtime.ProviderErrors.ShouldLog(provider.Name, "rate-limited"))
            {
                var client = ClientAddress(context);
                LogRateLimited(logger, provider.Name, client);
            }
            context.Response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(retryAfter.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
            await WriteAsync(context, api, StatusCodes.Status429TooManyRequests, "Too many sign-ins",
                "Too many sign-ins were started from here. Please wait a moment, then try again.", ReasonCodes.SessionSignInRateLimited, returnUrl);
            return;
        }

        DropOldestPending(context);
        var properties = new AuthenticationProperties { RedirectUri = returnUrl };
        if (loginHint is not null) properties.Parameters[LoginHintItem] = loginHint; // parameters are not kept in the state
        try
        {
            await context.ChallengeAsync(provider.OidcScheme, properties);
        }
        catch (OpenIdConnectProtocolException e)
        {
            // The provider answered its pushed-authorization endpoint with an OAuth error (invalid_client,
            // unauthorized_client, ...): a configuration problem on one side, so retrying soon does not help.
            var code = ProviderErrorCode(e);
            if (runtime.ProviderErrors.ShouldLog(provider.Name, code)) LogRefused(logger, provider.Name, code);
            Discard(context);
            await WriteAsync(context, api, StatusCodes.Status502BadGateway, "Sign-in unavailable",
                "The sign-in service refused to start a sign-in for this site. Please try again later or tell the site's administrators.", ReasonCodes.SessionProviderRefused, returnUrl);
        }
        catch (Exception e) when (e is InvalidOperationException or HttpRequestException or IOException or OperationCanceledException || SessionStoreGuard.IsStoreFailure(e))
        {
            // Discovery or the pushed-authorization request failed: the provider is down, slow or misconfigured
            // (or the key ring that protects the sign-in state cannot be read from Redis).
            if (runtime.ProviderErrors.ShouldLog(provider.Name, e.GetType().Name)) LogUnavailable(logger, provider.Name, e.GetType().Name);
            Discard(context);
            context.Response.Headers.RetryAfter = "5";
            var store = SessionStoreGuard.IsStoreFailure(e);
            if (store && context.Features.Get<GatewayFeature>() is { } gateway) gateway.SessionStoreDecision = "login.refused";
            await WriteAsync(context, api, StatusCodes.Status503ServiceUnavailable, "Sign-in unavailable",
                "The sign-in service cannot be reached right now. Please try again in a moment.", store ? ReasonCodes.SessionStoreUnavailable : ReasonCodes.SessionProviderUnavailable, returnUrl);
        }
    }

    /// <summary>The OAuth error code the provider sent (the handler keeps it in Data["error"]); a short token, safe to log.</summary>
    internal static string ProviderErrorCode(Exception? e)
    {
        var code = e?.Data["error"] as string;
        if (string.IsNullOrEmpty(code)) return e is null ? "unknown" : e.GetType().Name;
        return code.Length <= 64 && code.All(c => c is >= '!' and <= '~') ? code : "malformed";
    }

    private bool Admit(HttpContext context, out TimeSpan retryAfter)
    {
        retryAfter = TimeSpan.Zero;
        var perMinute = runtime.Sessions!.SignInsPerMinute;
        if (perMinute <= 0) return true;
        var cell = _starts.GetOrAdd(ClientAddress(context), static _ => new LocalCounterStore.Cell());
        var emission = TimeSpan.FromMinutes(1).Ticks / perMinute;
        var now = runtime.Time.GetUtcNow().UtcTicks;
        while (true)
        {
            var tat = Volatile.Read(ref cell.State);
            var decision = RateLimitMath.Gcra(tat, now, emission, perMinute, perMinute, out var next);
            if (decision.Outcome != RateOutcome.Allowed)
            {
                retryAfter = decision.RetryAfter;
                return false;
            }

            if (Interlocked.CompareExchange(ref cell.State, next, tat) == tat) return true;
        }
    }

    private static string ClientAddress(HttpContext context) =>
        context.Features.Get<GatewayFeature>()?.ClientAddress(context) ?? context.Connection.RemoteIpAddress?.ToString() ?? "unknown";

    /// <summary>
    /// Deletes the oldest correlation and nonce cookies so that, with the pair the challenge adds, at most
    /// <see cref="MaxPending"/> of each remain. Browsers send cookies of one path oldest first (RFC 6265 5.4).
    /// </summary>
    private static void DropOldestPending(HttpContext context)
    {
        List<string>? correlation = null, nonce = null;
        foreach (var header in context.Request.Headers.Cookie)
        {
            if (header is null) continue;
            foreach (var part in header.Split(';', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                var name = part.Split('=', 2)[0].Trim();
                if (name.StartsWith(CompiledSessions.CorrelationCookiePrefix, StringComparison.Ordinal)) (correlation ??= []).Add(name);
                else if (name.StartsWith(CompiledSessions.NonceCookiePrefix, StringComparison.Ordinal)) (nonce ??= []).Add(name);
            }
        }

        Drop(context, correlation);
        Drop(context, nonce);
    }

    private static void Drop(HttpContext context, List<string>? names)
    {
        if (names is null || names.Count < MaxPending) return;
        var options = PendingCookieOptions(context);
        for (var i = 0; i <= names.Count - MaxPending; i++) context.Response.Cookies.Delete(names[i], options);
    }

    /// <summary>What the correlation and nonce cookies are written with (see SessionRuntime.ConfigureOidc); a deletion must match.</summary>
    internal static CookieOptions PendingCookieOptions(HttpContext context) => new()
    {
        Path = "/",
        HttpOnly = true,
        SameSite = SameSiteMode.Lax,
        Secure = context.Request.IsHttps,
        IsEssential = true,
    };

    // A challenge that failed after writing its correlation and nonce cookies: they would only pile up.
    private static void Discard(HttpContext context)
    {
        if (context.Response.HasStarted) return;
        context.Response.Headers.Remove("Set-Cookie");
        context.Response.Headers.Remove("Location");
    }

    private static Task WriteAsync(HttpContext context, bool api, int status, string title, string detail, ReasonCode reason, string returnUrl)
    {
        if (context.Features.Get<GatewayFeature>() is { } gateway) gateway.Refusal = reason;
        return api
            ? ProblemWriter.WriteAsync(context, status, title, detail, reason)
            : SessionPages.WriteAsync(context, status, title, detail, ("Try again", returnUrl));
    }

    [LoggerMessage(EventId = 7040, Level = LogLevel.Warning, Message = "Session provider {Provider}: the provider refused to start a sign-in ({Error}); check the client registration (client id, secret or public client, allowed endpoints). Repeats are logged at most every 5 minutes")]
    private static partial void LogRefused(ILogger logger, string provider, string error);

    [LoggerMessage(EventId = 7041, Level = LogLevel.Warning, Message = "Session provider {Provider}: cannot start a sign-in ({Error}); is the provider reachable? Repeats are logged at most every 5 minutes")]
    private static partial void LogUnavailable(ILogger logger, string provider, string error);

    [LoggerMessage(EventId = 7042, Level = LogLevel.Information, Message = "Session provider {Provider}: too many sign-ins started by {Client}; answering 429. Repeats are logged at most every 5 minutes")]
    private static partial void LogRateLimited(ILogger logger, string provider, string client);
}

/// <summary>
/// Logs each provider error once per window (per provider and error code) rather than on every page load:
/// a misconfigured provider refuses every sign-in, and a log line per request would drown the rest.
/// Bounded: at most 256 keys are remembered; when full, the memory starts over.
/// </summary>
internal sealed class ProviderErrorLog(TimeProvider time)
{
    private static readonly TimeSpan Window = TimeSpan.FromMinutes(5);
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(string Provider, string Code), long> _last = new();

    public bool ShouldLog(string provider, string code)
    {
        var now = time.GetUtcNow().UtcTicks;
        var key = (provider, code);
        while (true)
        {
            if (!_last.TryGetValue(key, out var last))
            {
                if (_last.Count >= 256) _last.Clear();
                if (_last.TryAdd(key, now)) return true;
                continue;
            }

            if (now - last < Window.Ticks) return false;
            if (_last.TryUpdate(key, now, last)) return true;
        }
    }
}
