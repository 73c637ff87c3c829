using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Portcullis.Upstream;

/// <summary>A cached upstream access token. The token itself never leaves this type except as the header value.</summary>
internal sealed record UpstreamToken(string HeaderValue, DateTimeOffset FetchedAt, DateTimeOffset ExpiresAt, DateTimeOffset RefreshAt);

/// <summary>
/// One cluster's OAuth 2.0 client_credentials token: fetched at start-up (or by the very first request),
/// cached, refreshed in the background at <c>refreshAt</c> of its lifetime with at most one token request in
/// flight. Failed refreshes are retried with exponential backoff (1 s doubling up to 30 s) while the cached
/// token keeps serving until it expires; after that requests get 503 until a refresh succeeds. Requests
/// never fetch, except those that arrive before the first fetch has finished, which wait for it.
/// </summary>
internal sealed partial class ClientCredentialsTokenSource : IDisposable
{
    public const string HttpClientName = "Portcullis.UpstreamCredentials";

    private const int MaxResponseBytes = 64 * 1024;
    private static readonly TimeSpan FirstBackoff = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan DefaultLifetime = TimeSpan.FromMinutes(5);
    private static readonly TimeSpan AssertionLifetime = TimeSpan.FromSeconds(60);

    private readonly IHttpClientFactory _clients;
    private readonly TimeProvider _time;
    private readonly Func<string, string?> _environment;
    private readonly ILogger _logger;
    private readonly JsonWebTokenHandler _assertions = new() { SetDefaultTimesOnTokenCreation = false };
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _lock = new();
    private volatile UpstreamToken? _token;
    private Task? _first;
    private Task? _inflight;
    private ITimer? _timer;
    private int _consecutiveFailures;
    private long _tokenRequests;
    private long _failures;
    private volatile string? _lastError;
    private DateTimeOffset? _lastErrorAt;
    private DateTimeOffset? _nextAttemptAt;
    private volatile bool _expiryLogged;
    private bool _disposed;

    public ClientCredentialsTokenSource(ClientCredentialsSettings settings, IHttpClientFactory clients, TimeProvider time, Func<string, string?> environment, ILogger logger)
    {
        Settings = settings;
        _clients = clients;
        _time = time;
        _environment = environment;
        _logger = logger;
    }

    public ClientCredentialsSettings Settings { get; }

    /// <summary>Starts the first fetch in the background (idempotent).</summary>
    public void Start()
    {
        lock (_lock)
        {
            if (_first is not null || _disposed) return;
            _first = RefreshLocked();
        }
    }

    /// <summary>
    /// The header value for an upstream request, or null when no valid token is available (then the request
    /// gets 503). Only before the first fetch has completed does this wait (for that fetch).
    /// </summary>
    public ValueTask<string?> GetHeaderAsync()
    {
        var token = _token;
        if (token is not null) return new ValueTask<string?>(Valid(token));
        Task first;
        lock (_lock)
        {
            first = _first ??= RefreshLocked();
        }

        return first.IsCompleted ? new ValueTask<string?>(_token is { } t ? Valid(t) : null) : WaitForFirstAsync(first);
    }

    private async ValueTask<string?> WaitForFirstAsync(Task first)
    {
        await first.ConfigureAwait(false);
        return _token is { } token ? Valid(token) : null;
    }

    private string? Valid(UpstreamToken token)
    {
        if (_time.GetUtcNow() < token.ExpiresAt) return token.HeaderValue;
        if (!_expiryLogged)
        {
            _expiryLogged = true;
            Log.TokenExpired(_logger, Settings.Cluster, UpstreamFiles.Format(token.ExpiresAt), _lastError ?? "no refresh succeeded");
        }

        return null;
    }

    // Single flight: every caller gets the one token request in progress.
    private Task RefreshLocked()
    {
        if (_disposed) return Task.CompletedTask;
        return _inflight ??= Task.Run(FetchAsync);
    }

    private void Refresh()
    {
        lock (_lock) RefreshLocked();
    }

    private async Task FetchAsync()
    {
        var started = _time.GetUtcNow();
        TimeSpan next;
        try
        {
            Interlocked.Increment(ref _tokenRequests);
            var (token, lifetime) = await RequestTokenAsync(started).ConfigureAwait(false);
            var refreshIn = TimeSpan.FromTicks((long)(lifetime.Ticks * Settings.RefreshAt));
            _token = new UpstreamToken("Bearer " + token, started, started + lifetime, started + refreshIn);
            _expiryLogged = false;
            lock (_lock)
            {
                _consecutiveFailures = 0;
                _lastError = null;
                _lastErrorAt = null;
            }

            next = refreshIn - (_time.GetUtcNow() - started);
            Log.TokenFetched(_logger, Settings.Cluster, (int)lifetime.TotalSeconds, UpstreamFiles.Format(started + refreshIn));
        }
        catch (Exception ex)
        {
            // Every failure (network, provider answer, a key file that stopped parsing, anything else) is a
            // failed attempt that is retried: the refresh loop must never stop.
            Interlocked.Increment(ref _failures);
            var message = ex switch
            {
                TokenFetchException => ex.Message,
                OperationCanceledException => $"no answer within {Settings.Timeout.TotalSeconds:0.###}s",
                JsonException => "the token endpoint's answer is not JSON",
                HttpRequestException or IOException => ex.Message,
                _ => $"{ex.GetType().Name}: {ex.Message}",
            };
            int failures;
            lock (_lock)
            {
                failures = ++_consecutiveFailures;
                _lastError = message;
                _lastErrorAt = _time.GetUtcNow();
            }

            next = TimeSpan.FromTicks(Math.Min(MaxBackoff.Ticks, FirstBackoff.Ticks << Math.Min(failures - 1, 10)));
            var cached = _token is { } t && _time.GetUtcNow() < t.ExpiresAt ? $"the cached token serves until {UpstreamFiles.Format(t.ExpiresAt)}" : "no valid token: requests get 503";
            Log.TokenFailed(_logger, Settings.Cluster, message, (int)Math.Ceiling(next.TotalSeconds), cached);
        }

        lock (_lock)
        {
            _inflight = null;
            if (_disposed) return;
            if (next < TimeSpan.Zero) next = TimeSpan.Zero;
            _nextAttemptAt = _time.GetUtcNow() + next;
            _timer?.Dispose();
            _timer = _time.CreateTimer(_ => Refresh(), null, next, Timeout.InfiniteTimeSpan);
        }
    }

    private async Task<(string Token, TimeSpan Lifetime)> RequestTokenAsync(DateTimeOffset now)
    {
        var form = new List<KeyValuePair<string, string>> { new("grant_type", "client_credentials") };
        if (Settings.Scope is { } scope) form.Add(new("scope", scope));
        if (Settings.Audience is { } audience) form.Add(new("audience", audience));
        using var request = new HttpRequestMessage(HttpMethod.Post, Settings.TokenUrl);
        request.Headers.Accept.ParseAdd("application/json");
        if (Settings.Authentication == ClientAuthentication.PrivateKeyJwt)
        {
            form.Add(new("client_id", Settings.ClientId));
            form.Add(new("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"));
            form.Add(new("client_assertion", CreateAssertion(now)));
        }
        else
        {
            var secret = UpstreamFiles.ReadSecret(Settings.SecretFile, Settings.SecretEnv, _environment, out var error) ?? throw new TokenFetchException(error!);
            // RFC 6749 2.3.1: both parts form-urlencoded before Basic encoding.
            var credentials = Encoding.UTF8.GetBytes(Uri.EscapeDataString(Settings.ClientId) + ":" + Uri.EscapeDataString(secret));
            request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(credentials));
        }

        request.Content = new FormUrlEncodedContent(form);
        using var timeout = new CancellationTokenSource(Settings.Timeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, _stopping.Token);
        var client = _clients.CreateClient(HttpClientName);
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, linked.Token).ConfigureAwait(false);
        var body = await ReadBodyAsync(response, linked.Token).ConfigureAwait(false);
        using var json = body.Length == 0 ? null : JsonDocument.Parse(body);
        var root = json?.RootElement;
        if (!response.IsSuccessStatusCode)
        {
            var error = root is { ValueKind: JsonValueKind.Object } r && r.TryGetProperty("error", out var e) && e.ValueKind == JsonValueKind.String ? e.GetString() : null;
            var description = root is { ValueKind: JsonValueKind.Object } d && d.TryGetProperty("error_description", out var ed) && ed.ValueKind == JsonValueKind.String ? ed.GetString() : null;
            throw new TokenFetchException($"the token endpoint answered {(int)response.StatusCode}" + (error is null ? "" : $": {error}") + (description is null ? "" : $" ({Truncate(description)})"));
        }

        if (root is not { ValueKind: JsonValueKind.Object } answer) throw new TokenFetchException("the token endpoint's answer is not a JSON object");
        if (!answer.TryGetProperty("access_token", out var accessToken) || accessToken.ValueKind != JsonValueKind.String || accessToken.GetString() is not { Length: > 0 } token)
        {
            throw new TokenFetchException("the token endpoint's answer has no access_token");
        }

        if (!token.All(c => c is > ' ' and < '\u007f')) throw new TokenFetchException("the access token holds characters a header cannot carry");
        if (answer.TryGetProperty("token_type", out var type) && type.ValueKind == JsonValueKind.String
            && !string.Equals(type.GetString(), "Bearer", StringComparison.OrdinalIgnoreCase))
        {
            throw new TokenFetchException($"the token type is '{Truncate(type.GetString() ?? "")}', not Bearer");
        }

        var lifetime = Lifetime(answer, token, now);
        if (lifetime <= TimeSpan.Zero) throw new TokenFetchException("the token has already expired (expires_in <= 0)");
        return (token, lifetime);
    }

    // expires_in when given (a number, or a numeric string as some providers send), counted from before the
    // request was sent; a JWT's exp when it is earlier (exp has whole seconds) or expires_in is missing; else 5 minutes.
    private static TimeSpan Lifetime(JsonElement answer, string token, DateTimeOffset now)
    {
        TimeSpan? lifetime = null;
        if (answer.TryGetProperty("expires_in", out var expiresIn))
        {
            if (expiresIn.ValueKind == JsonValueKind.Number && expiresIn.TryGetDouble(out var seconds)) lifetime = TimeSpan.FromSeconds(seconds);
            else if (expiresIn.ValueKind == JsonValueKind.String && double.TryParse(expiresIn.GetString(), NumberStyles.Float, CultureInfo.InvariantCulture, out seconds)) lifetime = TimeSpan.FromSeconds(seconds);
        }

        if (token.Count(c => c == '.') == 2)
        {
            try
            {
                var jwt = new JsonWebToken(token);
                var untilExp = new DateTimeOffset(jwt.ValidTo, TimeSpan.Zero) - now;
                if (jwt.ValidTo > DateTime.UnixEpoch && (lifetime is null || untilExp < lifetime)) lifetime = untilExp;
            }
            catch (ArgumentException)
            {
                // Not a readable JWT: its lifetime is what expires_in says.
            }
        }

        return lifetime ?? DefaultLifetime;
    }

    private string CreateAssertion(DateTimeOffset now)
    {
        var credentials = UpstreamFiles.LoadSigningKey(Settings.KeyFile!, Settings.Kid, Settings.Algorithm, out var error) ?? throw new TokenFetchException(error!);
        try
        {
            return _assertions.CreateToken(new SecurityTokenDescriptor
            {
                Issuer = Settings.ClientId,
                Audience = Settings.AssertionAudience ?? Settings.TokenUrl.AbsoluteUri,
                IssuedAt = now.UtcDateTime,
                NotBefore = now.UtcDateTime,
                Expires = (now + AssertionLifetime).UtcDateTime,
                Claims = new Dictionary<string, object>(StringComparer.Ordinal)
                {
                    [JwtRegisteredClaimNames.Sub] = Settings.ClientId,
                    [JwtRegisteredClaimNames.Jti] = Guid.NewGuid().ToString("N"),
                },
                SigningCredentials = credentials,
                // Explicitly typed (draft-ietf-oauth-rfc7523bis), so it cannot pass for any other kind of JWT signed with this key.
                TokenType = "client-authentication+jwt",
            });
        }
        finally
        {
            switch (credentials.Key)
            {
                case RsaSecurityKey { Rsa: { } rsa }: rsa.Dispose(); break;
                case ECDsaSecurityKey { ECDsa: { } ecdsa }: ecdsa.Dispose(); break;
            }
        }
    }

    private static async Task<byte[]> ReadBodyAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        if (response.Content.Headers.ContentLength > MaxResponseBytes) throw new TokenFetchException("the token endpoint's answer is larger than 64 KiB");
        await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        using var buffer = new MemoryStream();
        var chunk = new byte[8192];
        int read;
        while ((read = await stream.ReadAsync(chunk, cancellationToken).ConfigureAwait(false)) > 0)
        {
            if (buffer.Length + read > MaxResponseBytes) throw new TokenFetchException("the token endpoint's answer is larger than 64 KiB");
            buffer.Write(chunk, 0, read);
        }

        return buffer.ToArray();
    }

    private static string Truncate(string text) => text.Length <= 200 ? text : text[..200] + "…";

    /// <summary>GET /admin/upstream-credentials: state and timing, never the token.</summary>
    public void WriteStatus(Utf8JsonWriter w)
    {
        var now = _time.GetUtcNow();
        var token = _token;
        w.WriteStartObject();
        w.WriteString("cluster", Settings.Cluster);
        w.WriteString("tokenUrl", Settings.TokenUrl.AbsoluteUri);
        w.WriteString("clientId", Settings.ClientId);
        w.WriteString("authentication", Settings.Authentication switch
        {
            ClientAuthentication.PrivateKeyJwt => "private_key_jwt",
            _ => "client_secret_basic",
        });
        w.WriteString("header", Settings.Header);
        var lastError = _lastError;
        w.WriteString("state", token is null ? (lastError is null ? "pending" : "unavailable") : now >= token.ExpiresAt ? "expired" : lastError is not null ? "stale" : "ok");
        if (token is not null)
        {
            w.WriteString("fetchedAt", token.FetchedAt);
            w.WriteString("expiresAt", token.ExpiresAt);
            w.WriteString("refreshAt", token.RefreshAt);
        }

        lock (_lock)
        {
            if (_nextAttemptAt is { } next) w.WriteString("nextAttemptAt", next);
            w.WriteNumber("tokenRequests", Interlocked.Read(ref _tokenRequests));
            w.WriteNumber("failures", Interlocked.Read(ref _failures));
            w.WriteNumber("consecutiveFailures", _consecutiveFailures);
            if (lastError is null)
            {
                w.WriteNull("lastError");
            }
            else
            {
                w.WriteString("lastError", lastError);
                if (_lastErrorAt is { } at) w.WriteString("lastErrorAt", at);
            }
        }

        w.WriteEndObject();
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            _timer?.Dispose();
        }

        _stopping.Cancel();
    }

    private sealed class TokenFetchException(string message) : Exception(message);

    private static partial class Log
    {
        [LoggerMessage(7201, LogLevel.Information, "Upstream token for cluster {Cluster} fetched: valid {Seconds}s, refreshed from {RefreshAt}")]
        public static partial void TokenFetched(ILogger logger, string cluster, int seconds, string refreshAt);

        [LoggerMessage(7202, LogLevel.Warning, "Upstream token for cluster {Cluster} could not be fetched: {Error}; retrying in {RetrySeconds}s; {Cached}")]
        public static partial void TokenFailed(ILogger logger, string cluster, string error, int retrySeconds, string cached);

        [LoggerMessage(7203, LogLevel.Error, "Upstream token for cluster {Cluster} expired at {ExpiresAt} and no refresh succeeded ({Error}): its requests get 503 until one does")]
        public static partial void TokenExpired(ILogger logger, string cluster, string expiresAt, string error);
    }
}
