using System.Collections.Concurrent;
using System.Collections.Frozen;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text.Json;
using BitFaster.Caching;
using BitFaster.Caching.Lru;
using Microsoft.Extensions.Logging;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Identity;

/// <summary>
/// Checks opaque bearer tokens at OAuth 2.0 introspection endpoints (RFC 7662). The gateway authenticates
/// to the endpoint with HTTP Basic (RFC 7662 §2.1, credentials encoded per RFC 6749 §2.3.1). Answers are
/// remembered in a bounded cache keyed by introspector and the SHA-256 of the token (never the token itself): active ones until
/// min(exp, now + cacheTtl), inactive ones for negativeTtl. Concurrent requests carrying the same token
/// share one call (single flight). An endpoint that errors or times out yields 503, never a 500, and is
/// never cached.
/// </summary>
internal sealed partial class TokenIntrospector
{
    private const int MaxAnswerBytes = 256 * 1024;
    private static readonly JsonDocumentOptions StrictJson = new() { AllowDuplicateProperties = false, MaxDepth = 16 };
    private static readonly MediaTypeWithQualityHeaderValue AcceptJson = new("application/json");

    private readonly IHttpClientFactory _httpClients;
    private readonly TimeProvider _time;
    private readonly ILogger<TokenIntrospector> _logger;
    private readonly ICache<(string Scope, TokenHash Token), IntrospectionResult> _answers;
    private readonly ConcurrentDictionary<(string Scope, TokenHash Token), Lazy<Task<IntrospectionResult>>> _inFlight = new();

    public TokenIntrospector(IHttpClientFactory httpClients, TimeProvider time, ILogger<TokenIntrospector> logger, int cacheSize = 10_000)
    {
        _httpClients = httpClients;
        _time = time;
        _logger = logger;
        _answers = new ConcurrentLruBuilder<(string Scope, TokenHash Token), IntrospectionResult>()
            .WithCapacity(Math.Max(16, cacheSize))
            .WithExpireAfter(new AnswerExpiry(time))
            .WithMetrics()
            .Build();
    }

    /// <summary>Hits and misses of the token cache (read by metrics).</summary>
    internal BitFaster.Caching.ICacheMetrics? CacheMetrics => _answers.Metrics.HasValue ? _answers.Metrics.Value : null;

    /// <summary>Authenticates "Bearer …" (an opaque token) against the route's introspectors, in order; the first active answer wins.</summary>
    public ValueTask<AuthDecision> AuthenticateAsync(string authorization, CompiledRouteAuth auth, int maxTokenBytes)
    {
        var token = authorization.AsSpan(7).Trim();
        if (token.Length == 0) return ValueTask.FromResult(Invalid(ReasonCodes.IntrospectionMalformed, "The bearer token is empty."));
        if (token.Length > maxTokenBytes) return ValueTask.FromResult(Invalid(ReasonCodes.IntrospectionTooLarge, "The bearer token is too large."));
        if (!IsBearerToken(token)) return ValueTask.FromResult(Invalid(ReasonCodes.IntrospectionMalformed, "The bearer token is malformed."));

        var now = _time.GetUtcNow();
        var hash = TokenHash.Of(token);
        var introspectors = auth.Introspectors;
        for (var i = 0; i < introspectors.Length; i++)
        {
            if (!_answers.TryGet((introspectors[i].CacheScope, hash), out var cached) || cached.CachedUntil <= now)
            {
                return AuthenticateSlowAsync(hash, token.ToString(), introspectors, i);
            }

            if (cached.Identity is { } identity) return ValueTask.FromResult(AuthDecision.Allow(identity, ReasonCodes.IntrospectionCached));
        }

        return ValueTask.FromResult(Inactive());
    }

    private async ValueTask<AuthDecision> AuthenticateSlowAsync(TokenHash hash, string token, CompiledIntrospector[] introspectors, int start)
    {
        var unavailable = false;
        for (var i = start; i < introspectors.Length; i++)
        {
            var result = await IntrospectAsync(introspectors[i], hash, token).ConfigureAwait(false);
            if (result.Identity is { } identity) return AuthDecision.Allow(identity, result.Fresh ? ReasonCodes.IntrospectionActive : ReasonCodes.IntrospectionCached);
            unavailable |= result.Failed;
        }

        // One endpoint that could not answer means we cannot tell; fail closed with 503 rather than 401.
        return unavailable
            ? AuthDecision.Unavailable(ReasonCodes.IntrospectionUnavailable, "The token cannot be checked right now.")
            : Inactive();
    }

    /// <summary>The cached answer, or the answer of the one call in flight for this token (starting it if needed).</summary>
    private async Task<IntrospectionResult> IntrospectAsync(CompiledIntrospector introspector, TokenHash hash, string token)
    {
        var key = (introspector.CacheScope, hash);
        if (TryGetFresh(key, out var cached)) return cached;

        var flight = _inFlight.GetOrAdd(key, static (key, state) => new Lazy<Task<IntrospectionResult>>(
            () => state.Self.FetchAsync(key, state.Introspector, state.Token)), (Self: this, Introspector: introspector, Token: token));
        try
        {
            return await flight.Value.ConfigureAwait(false);
        }
        finally
        {
            // Only this flight's entry; its answer is already cached, so a request arriving now hits the cache.
            _inFlight.TryRemove(KeyValuePair.Create(key, flight));
        }
    }

    private bool TryGetFresh((string, TokenHash) key, out IntrospectionResult result)
    {
        if (_answers.TryGet(key, out var cached) && cached.CachedUntil > _time.GetUtcNow())
        {
            result = cached.Fresh ? cached.AsCached() : cached;
            return true;
        }

        result = null!;
        return false;
    }

    private async Task<IntrospectionResult> FetchAsync((string, TokenHash) key, CompiledIntrospector introspector, string token)
    {
        // A flight that finished just before this one started has already cached the answer.
        if (TryGetFresh(key, out var cached)) return cached;

        IntrospectionResult result;
        try
        {
            result = await CallAsync(introspector, token).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            // Whatever went wrong talking to the provider is a 503 for the client, never a 500.
            Log.Failed(_logger, introspector.Name, ex.GetType().Name + ": " + ex.Message);
            result = IntrospectionResult.Failure;
        }

        if (!result.Failed && result.CachedUntil > _time.GetUtcNow()) _answers.AddOrUpdate(key, result);
        return result;
    }

    private async Task<IntrospectionResult> CallAsync(CompiledIntrospector introspector, string token)
    {
        using var timeout = new CancellationTokenSource(introspector.Timeout, _time);
        using var request = new HttpRequestMessage(HttpMethod.Post, introspector.Endpoint)
        {
            Content = new FormUrlEncodedContent(
            [
                KeyValuePair.Create("token", token),
                KeyValuePair.Create("token_type_hint", "access_token"),
            ]),
        };
        request.Headers.TryAddWithoutValidation("Authorization", introspector.BasicCredentials);
        request.Headers.Accept.Add(AcceptJson);

        byte[] body;
        try
        {
            var client = _httpClients.CreateClient(IssuerRegistry.HttpClientName);
            using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                Log.Failed(_logger, introspector.Name, "endpoint answered " + ((int)response.StatusCode).ToString(CultureInfo.InvariantCulture));
                return IntrospectionResult.Failure;
            }

            body = await ReadBoundedAsync(response.Content, timeout.Token).ConfigureAwait(false) ?? [];
            if (body.Length == 0)
            {
                Log.Failed(_logger, introspector.Name, "empty or oversized answer");
                return IntrospectionResult.Failure;
            }
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            Log.Failed(_logger, introspector.Name, "timed out after " + introspector.Timeout.TotalMilliseconds.ToString(CultureInfo.InvariantCulture) + "ms");
            return IntrospectionResult.Failure;
        }
        catch (HttpRequestException ex)
        {
            Log.Failed(_logger, introspector.Name, ex.Message);
            return IntrospectionResult.Failure;
        }

        return Parse(introspector, body);
    }

    private static async Task<byte[]?> ReadBoundedAsync(HttpContent content, CancellationToken cancellationToken)
    {
        if (content.Headers.ContentLength is > MaxAnswerBytes) return null;
        await using var stream = await content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        using var buffer = new MemoryStream();
        var chunk = new byte[8192];
        int read;
        while ((read = await stream.ReadAsync(chunk, cancellationToken).ConfigureAwait(false)) > 0)
        {
            if (buffer.Length + read > MaxAnswerBytes) return null;
            buffer.Write(chunk, 0, read);
        }

        return buffer.ToArray();
    }

    /// <summary>Reads an RFC 7662 answer; a malformed one counts as a failure (503), not as inactive.</summary>
    private IntrospectionResult Parse(CompiledIntrospector introspector, byte[] body)
    {
        var now = _time.GetUtcNow();
        var negative = new IntrospectionResult(null, now + introspector.NegativeTtl, Fresh: true, Failed: false);
        Dictionary<string, string[]> claims;
        DateTimeOffset? expires = null;
        try
        {
            using var document = JsonDocument.Parse(body, StrictJson);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("active", out var active) || active.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            {
                Log.Failed(_logger, introspector.Name, "the answer has no boolean 'active' member");
                return IntrospectionResult.Failure;
            }

            if (active.ValueKind == JsonValueKind.False) return negative;

            claims = new Dictionary<string, string[]>(StringComparer.Ordinal);
            foreach (var property in root.EnumerateObject())
            {
                if (property.NameEquals("active")) continue;
                var values = Strings(property.Value);
                if (values.Length > 0) claims[property.Name] = values;
            }

            if (root.TryGetProperty("exp", out var exp))
            {
                if (UnixSeconds(exp) is not { } seconds)
                {
                    Log.Failed(_logger, introspector.Name, "the answer's 'exp' is not a number");
                    return IntrospectionResult.Failure;
                }

                expires = DateTimeOffset.FromUnixTimeSeconds(seconds);
            }

            if (root.TryGetProperty("nbf", out var nbf) && UnixSeconds(nbf) is { } notBefore && notBefore > now.ToUnixTimeSeconds())
            {
                return negative;
            }
        }
        catch (JsonException ex)
        {
            Log.Failed(_logger, introspector.Name, "the answer is not valid JSON: " + ex.Message);
            return IntrospectionResult.Failure;
        }

        // Active but already expired by our clock: refuse it, as a JWT would be refused.
        if (expires is { } expiry && expiry <= now) return negative;

        var until = now + introspector.CacheTtl;
        if (expires is { } end && end < until) until = end;
        var identity = BuildIdentity(introspector, claims.ToFrozenDictionary(StringComparer.Ordinal), expires ?? until);
        return new IntrospectionResult(identity, until, Fresh: true, Failed: false);
    }

    /// <summary>A NumericDate (RFC 7519 §2), clamped to what DateTimeOffset holds; null when not a number.</summary>
    private static long? UnixSeconds(JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Number) return null;
        if (value.TryGetInt64(out var seconds)) return Math.Clamp(seconds, 0, 253_402_300_799);
        return value.TryGetDouble(out var fractional) && double.IsFinite(fractional) ? (long)Math.Clamp(Math.Floor(fractional), 0, 253_402_300_799) : null;
    }

    private static string[] Strings(JsonElement value)
    {
        switch (value.ValueKind)
        {
            case JsonValueKind.String:
                return [value.GetString()!];
            case JsonValueKind.Array:
                var list = new List<string>();
                foreach (var item in value.EnumerateArray())
                {
                    if (item.ValueKind == JsonValueKind.String) list.Add(item.GetString()!);
                    else if (item.ValueKind != JsonValueKind.Null) list.Add(item.GetRawText());
                }

                return [.. list];
            case JsonValueKind.True:
                return ["true"];
            case JsonValueKind.False:
                return ["false"];
            case JsonValueKind.Null or JsonValueKind.Undefined:
                return [];
            default:
                return [value.GetRawText()];
        }
    }

    private static CallerIdentity BuildIdentity(CompiledIntrospector introspector, FrozenDictionary<string, string[]> claims, DateTimeOffset expires) =>
        CallerIdentity.FromClaims(CredentialKind.Introspection, introspector.Name, introspector.Claims, claims, expires);

    /// <summary>RFC 6750 b64token: ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/", then any "=".</summary>
    private static bool IsBearerToken(ReadOnlySpan<char> token)
    {
        var padding = false;
        foreach (var c in token)
        {
            if (c == '=')
            {
                padding = true;
                continue;
            }

            if (padding || !(char.IsAsciiLetterOrDigit(c) || c is '-' or '.' or '_' or '~' or '+' or '/')) return false;
        }

        return true;
    }

    private static AuthDecision Invalid(ReasonCode reason, string detail) => AuthDecision.Unauthenticated(reason, detail, true);

    private static AuthDecision Inactive() => Invalid(ReasonCodes.IntrospectionInactive, "The bearer token is not active.");

    /// <summary>One endpoint answer: an identity when active; how long it may be reused.</summary>
    private sealed record IntrospectionResult(CallerIdentity? Identity, DateTimeOffset CachedUntil, bool Fresh, bool Failed)
    {
        public static readonly IntrospectionResult Failure = new(null, DateTimeOffset.MinValue, Fresh: true, Failed: true);

        public IntrospectionResult AsCached() => this with { Fresh = false };
    }

    /// <summary>Entries live until their answer's bound (a hit re-checks against TimeProvider too).</summary>
    private sealed class AnswerExpiry(TimeProvider time) : IExpiryCalculator<(string Scope, TokenHash Token), IntrospectionResult>
    {
        public Duration GetExpireAfterCreate((string Scope, TokenHash Token) key, IntrospectionResult value)
        {
            var remaining = value.CachedUntil - time.GetUtcNow();
            return Duration.FromTimeSpan(remaining < TimeSpan.Zero ? TimeSpan.Zero : remaining > TimeSpan.FromHours(24) ? TimeSpan.FromHours(24) : remaining);
        }

        public Duration GetExpireAfterRead((string Scope, TokenHash Token) key, IntrospectionResult value, Duration current) => current;

        public Duration GetExpireAfterUpdate((string Scope, TokenHash Token) key, IntrospectionResult value, Duration current) => GetExpireAfterCreate(key, value);
    }

    private static partial class Log
    {
        [LoggerMessage(4201, LogLevel.Warning, "Token introspection at {Introspector} failed: {Problem}")]
        public static partial void Failed(ILogger logger, string introspector, string problem);
    }
}
