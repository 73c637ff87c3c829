using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Authentication.OpenIdConnect;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Portcullis.Identity.Sessions;

internal enum RefreshResult
{
    Refreshed,

    /// <summary>The provider refused the refresh token (invalid_grant: expired, revoked, reused): the session ends.</summary>
    Rejected,

    /// <summary>The provider could not be reached or answered oddly: the session stays, a request after the backoff tries again.</summary>
    Failed,
}

internal sealed record RefreshOutcome(RefreshResult Result, string? AccessToken = null, string? RefreshToken = null, string? IdToken = null, DateTimeOffset? ExpiresAt = null);

/// <summary>
/// Refreshes a session's access token with its refresh token (grant_type=refresh_token) at the provider's
/// token endpoint. One refresh per refresh token: concurrent requests of one session, and requests that read
/// the session just before a refresh was saved, share the same answer for a minute, so a rotating refresh
/// token is never redeemed twice by this instance. A failed refresh (provider unreachable or answering
/// oddly) is shared only for a backoff: the first request after 1 s tries again, the wait doubling with
/// each consecutive failure up to 30 s.
/// </summary>
internal sealed partial class TokenRefresher(IOptionsMonitor<OpenIdConnectOptions> oidc, TimeProvider time, ILogger<TokenRefresher> logger)
{
    private const int MaxRemembered = 10_000;
    private static readonly TimeSpan Remember = TimeSpan.FromMinutes(1);

    /// <summary>The wait after the first failed refresh of a token; it doubles with each further failure.</summary>
    internal static readonly TimeSpan FirstRetry = TimeSpan.FromSeconds(1);

    /// <summary>The longest wait between two refresh attempts of a token while the provider keeps failing.</summary>
    internal static readonly TimeSpan MaxRetry = TimeSpan.FromSeconds(30);

    private readonly ConcurrentDictionary<(string Provider, TokenHash Token), Flight> _flights = new();

    private sealed class Flight(DateTimeOffset started, int failures)
    {
        public DateTimeOffset Started { get; } = started;

        /// <summary>Failed attempts before this one, in a row.</summary>
        public int Failures { get; } = failures;

        public Lazy<Task<RefreshOutcome>> Task { get; set; } = null!;

        /// <summary>When this attempt failed, and may be tried again (set before its task completes).</summary>
        public DateTimeOffset RetryAt { get; set; } = DateTimeOffset.MaxValue;

        public bool FailedBefore(DateTimeOffset now) =>
            Task.IsValueCreated && Task.Value.IsCompletedSuccessfully && Task.Value.Result.Result == RefreshResult.Failed && RetryAt <= now;
    }

    public static TimeSpan Backoff(int failures) =>
        failures >= 5 ? MaxRetry : TimeSpan.FromTicks(Math.Min(MaxRetry.Ticks, FirstRetry.Ticks << failures));

    public Task<RefreshOutcome> RefreshAsync(CompiledSessionProvider provider, string refreshToken)
    {
        var now = time.GetUtcNow();
        Prune(now);
        var key = (provider.Name, TokenHash.Of(refreshToken));
        var flight = _flights.GetOrAdd(key, _ => NewFlight(provider, refreshToken, now, 0));
        if (flight.FailedBefore(now))
        {
            // Past its backoff: one new attempt, shared again by every request that arrives meanwhile.
            var next = NewFlight(provider, refreshToken, now, flight.Failures + 1);
            flight = _flights.TryUpdate(key, next, flight) ? next : _flights.GetValueOrDefault(key) ?? next;
        }

        return flight.Task.Value;
    }

    private Flight NewFlight(CompiledSessionProvider provider, string refreshToken, DateTimeOffset now, int failures)
    {
        var flight = new Flight(now, failures);
        flight.Task = new Lazy<Task<RefreshOutcome>>(() => RunFlightAsync(flight, provider, refreshToken));
        return flight;
    }

    private async Task<RefreshOutcome> RunFlightAsync(Flight flight, CompiledSessionProvider provider, string refreshToken)
    {
        var backoff = Backoff(flight.Failures);
        var outcome = await RunAsync(provider, refreshToken, backoff);
        if (outcome.Result == RefreshResult.Failed) flight.RetryAt = time.GetUtcNow() + backoff;
        return outcome;
    }

    private void Prune(DateTimeOffset now)
    {
        if (_flights.IsEmpty) return;
        foreach (var (key, flight) in _flights)
        {
            if (now - flight.Started > Remember && flight.Task.IsValueCreated && flight.Task.Value.IsCompleted) _flights.TryRemove(key, out _);
        }

        while (_flights.Count > MaxRemembered)
        {
            var oldest = _flights.MinBy(f => f.Value.Started);
            if (!_flights.TryRemove(oldest.Key, out _)) break;
        }
    }

    private async Task<RefreshOutcome> RunAsync(CompiledSessionProvider provider, string refreshToken, TimeSpan retryIn)
    {
        await Task.Yield();
        try
        {
            var options = oidc.Get(provider.OidcScheme);
            using var timeout = new CancellationTokenSource(options.BackchannelTimeout);
            var configuration = await options.ConfigurationManager!.GetConfigurationAsync(timeout.Token);
            var form = new Dictionary<string, string>
            {
                ["grant_type"] = "refresh_token",
                ["refresh_token"] = refreshToken,
                ["client_id"] = provider.ClientId,
            };
            if (provider.ClientSecret is not null) form["client_secret"] = provider.ClientSecret; // none for a public client
            using var request = new HttpRequestMessage(HttpMethod.Post, configuration.TokenEndpoint) { Content = new FormUrlEncodedContent(form) };
            using var response = await options.Backchannel.SendAsync(request, timeout.Token);
            var text = await response.Content.ReadAsStringAsync(timeout.Token);
            if (response.StatusCode is HttpStatusCode.BadRequest or HttpStatusCode.Unauthorized)
            {
                var error = TryError(text);
                if (error is "invalid_grant")
                {
                    LogRejected(logger, provider.Name, (int)response.StatusCode, error);
                    return new RefreshOutcome(RefreshResult.Rejected);
                }

                LogFailed(logger, provider.Name, $"token endpoint answered {(int)response.StatusCode} {error ?? "unknown"}", retryIn);
                return new RefreshOutcome(RefreshResult.Failed);
            }

            if (!response.IsSuccessStatusCode)
            {
                LogFailed(logger, provider.Name, $"token endpoint answered {(int)response.StatusCode}", retryIn);
                return new RefreshOutcome(RefreshResult.Failed);
            }

            using var json = JsonDocument.Parse(text);
            var root = json.RootElement;
            var accessToken = root.TryGetProperty("access_token", out var at) ? at.GetString() : null;
            if (accessToken is null)
            {
                LogFailed(logger, provider.Name, "no access_token in the answer", retryIn);
                return new RefreshOutcome(RefreshResult.Failed);
            }

            DateTimeOffset? expiresAt = root.TryGetProperty("expires_in", out var expiresIn) && expiresIn.TryGetInt64(out var seconds)
                ? time.GetUtcNow().AddSeconds(seconds)
                : null;
            LogRefreshed(logger, provider.Name);
            return new RefreshOutcome(
                RefreshResult.Refreshed,
                accessToken,
                root.TryGetProperty("refresh_token", out var rt) ? rt.GetString() : null,
                root.TryGetProperty("id_token", out var it) ? it.GetString() : null,
                expiresAt);
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or JsonException or InvalidOperationException or IOException)
        {
            LogFailed(logger, provider.Name, e.GetType().Name + ": " + e.Message, retryIn);
            return new RefreshOutcome(RefreshResult.Failed);
        }
    }

    private static string? TryError(string text)
    {
        try
        {
            using var json = JsonDocument.Parse(text);
            return json.RootElement.TryGetProperty("error", out var error) ? error.GetString() : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    public static string FormatExpiry(DateTimeOffset at) => at.ToString("o", CultureInfo.InvariantCulture);

    [LoggerMessage(EventId = 7001, Level = LogLevel.Information, Message = "Session provider {Provider}: access token refreshed")]
    private static partial void LogRefreshed(ILogger logger, string provider);

    [LoggerMessage(EventId = 7002, Level = LogLevel.Information, Message = "Session provider {Provider} refused a refresh token ({Status} {Error}); the session ends")]
    private static partial void LogRejected(ILogger logger, string provider, int status, string error);

    [LoggerMessage(EventId = 7003, Level = LogLevel.Warning, Message = "Session provider {Provider}: token refresh failed ({Reason}); the session stays, and the first request after {RetryIn} tries again")]
    private static partial void LogFailed(ILogger logger, string provider, string reason, TimeSpan retryIn);
}
