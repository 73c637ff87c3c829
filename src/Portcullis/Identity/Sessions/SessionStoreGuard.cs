using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Identity.Sessions;

/// <summary>
/// Wraps the gateway's own session paths (callbacks, login, logout) when sessions live in Redis: a store
/// that cannot answer (see <see cref="RedisSessionStore"/>) while a sign-in is saved or a session ended
/// becomes a 503 page (problem+json for script) with reason session.store-unavailable, never a blank 500.
/// Session routes get the same answer from <see cref="SessionGate"/>. Other requests pass straight through.
/// </summary>
internal sealed partial class SessionStoreGuard(RequestDelegate next, SessionRuntime runtime, ILogger<SessionStoreGuard> logger)
{
    public Task InvokeAsync(HttpContext context)
    {
        var sessions = runtime.Sessions;
        if (sessions is not { Store: SessionStoreKind.Redis }) return next(context);
        var path = context.Request.Path.Value ?? "";
        return path.StartsWith(CompiledSessions.PathPrefix, StringComparison.Ordinal) || string.Equals(path, sessions.LogoutPath, StringComparison.Ordinal) || IsCallback(path)
            ? GuardAsync(context)
            : next(context);
    }

    private bool IsCallback(string path)
    {
        foreach (var provider in runtime.Providers.Values)
        {
            if (string.Equals(path, provider.CallbackPath, StringComparison.Ordinal)) return true;
        }

        return false;
    }

    private async Task GuardAsync(HttpContext context)
    {
        try
        {
            await next(context);
        }
        catch (Exception e) when (IsStoreFailure(e) && !context.Response.HasStarted)
        {
            LogStoreFailed(logger, e.GetType().Name);
            if (context.Features.Get<GatewayFeature>() is { } gateway)
            {
                // The path's own reason (set by SessionEndpoints) names the step the store failed at.
                gateway.SessionStoreDecision = gateway.Refusal == ReasonCodes.SessionLogin ? "login.refused"
                    : gateway.Refusal == ReasonCodes.SessionLogout ? "logout.refused"
                    : "sign-in.refused";
                gateway.Refusal = ReasonCodes.SessionStoreUnavailable;
            }

            context.Response.Clear();
            context.Response.Headers.RetryAfter = "5";
            if (SessionPages.IsApiRequest(context.Request))
            {
                await ProblemWriter.WriteAsync(context, 503, "Sessions unavailable", "Sessions cannot be saved or ended right now.", ReasonCodes.SessionStoreUnavailable);
            }
            else
            {
                await SessionPages.WriteAsync(context, StatusCodes.Status503ServiceUnavailable, "Temporarily unavailable",
                    "Your sign-in cannot be completed right now. Please try again in a moment.", ("Try again", "/"));
            }
        }
    }

    /// <summary>The session store (or the key ring in it) did not answer: a 503, not a 500.</summary>
    public static bool IsStoreFailure(Exception e) =>
        e is SessionStoreUnavailableException or StackExchange.Redis.RedisException or TimeoutException
        || e is System.Security.Cryptography.CryptographicException { InnerException: SessionStoreUnavailableException or StackExchange.Redis.RedisException or TimeoutException };

    [LoggerMessage(EventId = 7022, Level = LogLevel.Warning, Message = "Session store unavailable at a sign-in, login or logout ({Error}); answered 503")]
    private static partial void LogStoreFailed(ILogger logger, string error);
}
