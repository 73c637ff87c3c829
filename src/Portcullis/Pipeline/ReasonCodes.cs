using System.Collections.Frozen;
using System.Reflection;
using System.Text;

namespace Portcullis.Pipeline;

/// <summary>The stage of the request path (or the admin API) that decides with a reason code.</summary>
public enum ReasonStage : byte
{
    /// <summary>Listener limits and framing, before routing (some answered by Kestrel itself); the access log's `stages.edge.limits`.</summary>
    Edge,
    Routing,
    Identity,
    Authorization,
    Session,
    Traffic,
    Upstream,
    Response,
    Admin,
}

/// <summary>
/// One reason code: the stable text logs, metrics, problem bodies and audit records carry, the HTTP
/// status it answers with (0 when it does not refuse: an allowed or admitted decision) and what it means.
/// Instances exist only in <see cref="ReasonCodes"/>, so decisions compare and carry them by reference.
/// </summary>
public sealed class ReasonCode
{
    internal ReasonCode(string code, int status, ReasonStage stage, string meaning)
    {
        Code = code;
        Status = status;
        Stage = stage;
        Meaning = meaning;
    }

    public string Code { get; }

    /// <summary>The status of the answer; 0 when the decision lets the request through.</summary>
    public int Status { get; }

    public ReasonStage Stage { get; }

    public string Meaning { get; }

    public override string ToString() => Code;

    // Problem bodies, logs and metric tags take the text; the catalogue stays the only place that spells it.
    public static implicit operator string(ReasonCode code) => code.Code;
}

/// <summary>
/// Every reason code the gateway emits. Code elsewhere refers to these entries, never to the text
/// (ReasonCodesTests checks that no code literal remains outside this file), and docs/reason-codes.md
/// is generated from this list (<see cref="Markdown"/>).
/// </summary>
internal static class ReasonCodes
{
    // Edge: the gateway's own limits (GatewayMiddleware) and Kestrel's refusals (KestrelRejectionLog).
    public static readonly ReasonCode RequestHeadersTooLarge = new("request.headers-too-large", 431, ReasonStage.Edge, "More request headers, or more header bytes, than `limits` allow.");
    public static readonly ReasonCode RequestLineTooLong = new("request.line-too-long", 414, ReasonStage.Edge, "The request line (method, target, version) is longer than `limits.maxRequestLineSize`.");
    public static readonly ReasonCode RequestBadContentLength = new("request.bad-content-length", 400, ReasonStage.Edge, "A Content-Length that is not a plain decimal number, or several that disagree.");
    public static readonly ReasonCode RequestBodyTooLarge = new("request.body-too-large", 413, ReasonStage.Edge, "The request body is larger than `limits.maxRequestBodySize`.");
    public static readonly ReasonCode RequestBodyTimeout = new("request.body-timeout", 408, ReasonStage.Edge, "The request body arrived more slowly than the minimum data rate.");
    public static readonly ReasonCode RequestBodyInvalid = new("request.body-invalid", 400, ReasonStage.Edge, "The request body could not be read (bad framing or the client went away mid-body).");
    public static readonly ReasonCode JsonRequired = new("request.json-required", 415, ReasonStage.Edge, "A body that is not declared as JSON on a route whose `jsonLimits.requireJson` is set.");
    public static readonly ReasonCode JsonTooLarge = new("request.json-too-large", 413, ReasonStage.Edge, "A JSON body larger than the route's `jsonLimits.maxSize`.");
    public static readonly ReasonCode JsonTooDeep = new("request.json-too-deep", 400, ReasonStage.Edge, "A JSON body nested deeper than the route's `jsonLimits.maxDepth`.");
    public static readonly ReasonCode JsonStringTooLong = new("request.json-string-too-long", 400, ReasonStage.Edge, "A JSON string or property name (or another single token) longer than the route's `jsonLimits.maxStringLength`.");
    public static readonly ReasonCode JsonTooManyItems = new("request.json-too-many-items", 400, ReasonStage.Edge, "A JSON array with more items than the route's `jsonLimits.maxArrayItems`.");
    public static readonly ReasonCode JsonTooManyMembers = new("request.json-too-many-members", 400, ReasonStage.Edge, "A JSON object with more members than the route's `jsonLimits.maxObjectMembers`.");
    public static readonly ReasonCode JsonMalformed = new("request.json-malformed", 400, ReasonStage.Edge, "A body declared as JSON on a route with `jsonLimits` that is not one well-formed JSON value (comments and trailing commas included).");
    public static readonly ReasonCode RequestChunkExtensionTooLong = new("request.chunk-extension-too-long", 400, ReasonStage.Edge, "A chunk extension of a chunked body is longer than the gateway accepts.");
    public static readonly ReasonCode RequestHeadersTimeout = new("request.headers-timeout", 408, ReasonStage.Edge, "The request headers did not arrive in time (Kestrel's refusal).");
    public static readonly ReasonCode RequestLengthRequired = new("request.length-required", 411, ReasonStage.Edge, "A body without Content-Length or chunked framing (Kestrel's refusal).");
    public static readonly ReasonCode RequestBadChunkedBody = new("request.bad-chunked-body", 400, ReasonStage.Edge, "A malformed or incomplete chunked body (Kestrel's refusal).");
    public static readonly ReasonCode RequestBadTransferEncoding = new("request.bad-transfer-encoding", 400, ReasonStage.Edge, "A Transfer-Encoding that does not end in chunked (Kestrel's refusal).");
    public static readonly ReasonCode RequestBadHost = new("request.bad-host", 400, ReasonStage.Edge, "A missing, repeated or invalid Host header (Kestrel's refusal).");
    public static readonly ReasonCode RequestBadRequestLine = new("request.bad-request-line", 400, ReasonStage.Edge, "An invalid request line, target, method or HTTP version (Kestrel's refusal).");
    public static readonly ReasonCode RequestMalformed = new("request.malformed", 400, ReasonStage.Edge, "Any other malformed HTTP Kestrel refuses.");

    // Routing (the listener's HTTPS redirect included).
    public static readonly ReasonCode RedirectNoHost = new("redirect.no-host", 400, ReasonStage.Routing, "A request to be redirected to HTTPS has no Host header.");
    public static readonly ReasonCode RequestPathAmbiguous = new("request.path-ambiguous", 400, ReasonStage.Routing, "The path could mean different things to the gateway and the upstream (see path normalization).");
    public static readonly ReasonCode RouteUnmatched = new("route.unmatched", 404, ReasonStage.Routing, "No route matches the request.");
    public static readonly ReasonCode RouteClusterUnresolved = new("route.cluster-unresolved", 503, ReasonStage.Routing, "A map-driven route selected no cluster.");

    // Identity: authentication.
    public static readonly ReasonCode AuthMissing = new("auth.missing", 401, ReasonStage.Identity, "No credential the route accepts (no bearer token, no API key).");
    public static readonly ReasonCode AuthAmbiguous = new("auth.ambiguous", 401, ReasonStage.Identity, "More than one Authorization header.");
    public static readonly ReasonCode JwtValid = new("jwt.valid", 0, ReasonStage.Identity, "The JWT was validated in full.");
    public static readonly ReasonCode JwtCached = new("jwt.cached", 0, ReasonStage.Identity, "The JWT was validated earlier and is still trusted (token cache).");
    public static readonly ReasonCode JwtMissing = new("jwt.missing", 401, ReasonStage.Identity, "`Authorization: Bearer` with an empty token.");
    public static readonly ReasonCode JwtTooLarge = new("jwt.too-large", 401, ReasonStage.Identity, "The token is longer than `identity.maxTokenSize`.");
    public static readonly ReasonCode JwtMalformed = new("jwt.malformed", 401, ReasonStage.Identity, "Not a well-formed JWT, or a header or payload with a repeated member.");
    public static readonly ReasonCode JwtEncrypted = new("jwt.encrypted", 401, ReasonStage.Identity, "An encrypted token (JWE).");
    public static readonly ReasonCode JwtCritUnsupported = new("jwt.crit-unsupported", 401, ReasonStage.Identity, "The token has a `crit` header.");
    public static readonly ReasonCode JwtMalformedClaim = new("jwt.malformed-claim", 401, ReasonStage.Identity, "`exp`, `nbf` or `iat` is not a JSON number.");
    public static readonly ReasonCode JwtIssuer = new("jwt.issuer", 401, ReasonStage.Identity, "`iss` is not one of the route's issuers.");
    public static readonly ReasonCode JwtUnknownKid = new("jwt.unknown-kid", 401, ReasonStage.Identity, "Signed with a key the issuer does not publish (triggers a key refresh).");
    public static readonly ReasonCode JwtSignature = new("jwt.signature", 401, ReasonStage.Identity, "The signature does not verify.");
    public static readonly ReasonCode JwtAlgorithm = new("jwt.algorithm", 401, ReasonStage.Identity, "An algorithm not in the issuer's `algorithms`.");
    public static readonly ReasonCode JwtAlgMismatch = new("jwt.alg-mismatch", 401, ReasonStage.Identity, "An algorithm other than the `alg` the verifying JWKS key declares.");
    public static readonly ReasonCode JwtIatFuture = new("jwt.iat-future", 401, ReasonStage.Identity, "`iat` later than now plus `clockSkew`.");
    public static readonly ReasonCode JwtAudience = new("jwt.audience", 401, ReasonStage.Identity, "No accepted `aud`.");
    public static readonly ReasonCode JwtExpired = new("jwt.expired", 401, ReasonStage.Identity, "Past its `exp` (with `clockSkew`).");
    public static readonly ReasonCode JwtNotYetValid = new("jwt.not-yet-valid", 401, ReasonStage.Identity, "Before its `nbf` (with `clockSkew`).");
    public static readonly ReasonCode JwtLifetime = new("jwt.lifetime", 401, ReasonStage.Identity, "Any other lifetime failure.");
    public static readonly ReasonCode JwtMissingExp = new("jwt.missing-exp", 401, ReasonStage.Identity, "The token lacks `exp` and the issuer requires it.");
    public static readonly ReasonCode JwtMissingClaim = new("jwt.missing-claim", 401, ReasonStage.Identity, "The token lacks one of the issuer's `requiredClaims`.");
    public static readonly ReasonCode JwtType = new("jwt.type", 401, ReasonStage.Identity, "Not `typ: at+jwt` where `requireAccessTokenType` is on.");
    public static readonly ReasonCode JwtInvalid = new("jwt.invalid", 401, ReasonStage.Identity, "Any other JWT validation failure.");
    public static readonly ReasonCode JwtKeysLoading = new("jwt.keys-loading", 503, ReasonStage.Identity, "The issuer's keys have not been fetched yet.");
    public static readonly ReasonCode JwtKeysExpired = new("jwt.keys-expired", 503, ReasonStage.Identity, "The issuer's keys are older than `refreshInterval` + `staleFor`.");
    public static readonly ReasonCode IntrospectionActive = new("introspection.active", 0, ReasonStage.Identity, "The introspection endpoint says the opaque token is active.");
    public static readonly ReasonCode IntrospectionCached = new("introspection.cached", 0, ReasonStage.Identity, "The opaque token was found active earlier (token cache).");
    public static readonly ReasonCode IntrospectionMalformed = new("introspection.malformed", 401, ReasonStage.Identity, "An opaque token that is empty or has invalid characters.");
    public static readonly ReasonCode IntrospectionTooLarge = new("introspection.too-large", 401, ReasonStage.Identity, "An opaque token longer than `identity.maxTokenSize`.");
    public static readonly ReasonCode IntrospectionInactive = new("introspection.inactive", 401, ReasonStage.Identity, "The provider says the token is not active (or it has expired).");
    public static readonly ReasonCode IntrospectionUnavailable = new("introspection.unavailable", 503, ReasonStage.Identity, "The introspection endpoint failed, timed out or answered nonsense.");
    public static readonly ReasonCode ApiKeyValid = new("apikey.valid", 0, ReasonStage.Identity, "A valid API key.");
    public static readonly ReasonCode ApiKeyUnknown = new("apikey.unknown", 401, ReasonStage.Identity, "No such API key.");
    public static readonly ReasonCode ApiKeyRevoked = new("apikey.revoked", 401, ReasonStage.Identity, "The API key has been revoked.");
    public static readonly ReasonCode ApiKeyExpired = new("apikey.expired", 401, ReasonStage.Identity, "The API key has expired.");
    public static readonly ReasonCode ApiKeyNotYetValid = new("apikey.not-yet-valid", 401, ReasonStage.Identity, "The API key is not valid yet.");
    public static readonly ReasonCode ApiKeyAmbiguous = new("apikey.ambiguous", 401, ReasonStage.Identity, "More than one API key header.");
    public static readonly ReasonCode CertValid = new("cert.valid", 0, ReasonStage.Identity, "A client certificate the listener validated (mTLS).");
    public static readonly ReasonCode CertMissing = new("cert.missing", 401, ReasonStage.Identity, "A route that accepts only client certificates, on a connection without a trusted one.");
    public static readonly ReasonCode CertExpired = new("cert.expired", 401, ReasonStage.Identity, "The connection's client certificate expired since the handshake.");

    // Identity: authorization.
    public static readonly ReasonCode AuthzScope = new("authz.scope", 403, ReasonStage.Authorization, "A required scope is missing.");
    public static readonly ReasonCode AuthzGroup = new("authz.group", 403, ReasonStage.Authorization, "Not in any of the route's groups.");
    public static readonly ReasonCode AuthzConsumer = new("authz.consumer", 403, ReasonStage.Authorization, "The consumer is not in the route's `consumers`.");
    public static readonly ReasonCode AuthzClaims = new("authz.claims", 403, ReasonStage.Authorization, "A claim rule of the route does not hold.");

    // Browser sessions.
    public static readonly ReasonCode SessionValid = new("session.valid", 0, ReasonStage.Session, "A valid sign-in session.");
    public static readonly ReasonCode SessionMissing = new("session.missing", 401, ReasonStage.Session, "No session cookie: browsers are sent to sign in, scripts get 401.");
    public static readonly ReasonCode SessionInvalid = new("session.invalid", 401, ReasonStage.Session, "A session cookie that names no live session: browsers are sent to sign in, scripts get 401.");
    public static readonly ReasonCode SessionStoreUnavailable = new("session.store-unavailable", 503, ReasonStage.Session, "The session store cannot be read or written right now.");
    public static readonly ReasonCode SessionProviderNotStarted = new("session.provider-not-started", 503, ReasonStage.Session, "The route's sign-in provider was added by a reload and starts only with a restart.");
    public static readonly ReasonCode SessionLogin = new("session.login", 0, ReasonStage.Session, "The gateway's sign-in endpoint answered (a redirect to the provider).");
    public static readonly ReasonCode SessionCallback = new("session.callback", 0, ReasonStage.Session, "The provider's callback to the gateway was handled.");
    public static readonly ReasonCode SessionCallbackUnexpected = new("session.callback-unexpected", 404, ReasonStage.Session, "A request to the callback path that is no sign-in answer.");
    public static readonly ReasonCode SessionCallbackFailed = new("session.callback-failed", 400, ReasonStage.Session, "The provider's sign-in answer could not be accepted (state, code or token failure).");
    public static readonly ReasonCode SessionLogout = new("session.logout", 0, ReasonStage.Session, "The gateway's sign-out endpoint ended the session.");
    public static readonly ReasonCode SessionLogoutConfirm = new("session.logout-confirm", 0, ReasonStage.Session, "A GET of the sign-out endpoint: the confirmation page.");
    public static readonly ReasonCode SessionLogoutMethod = new("session.logout-method", 405, ReasonStage.Session, "The sign-out endpoint with a method other than GET, HEAD or POST.");
    public static readonly ReasonCode SessionLogoutCrossSite = new("session.logout-cross-site", 403, ReasonStage.Session, "A sign-out POST that did not come from this site.");
    public static readonly ReasonCode SessionSignInRateLimited = new("session.signin-rate-limited", 429, ReasonStage.Session, "Too many sign-ins started from one client address.");
    public static readonly ReasonCode SessionProviderRefused = new("session.provider-refused", 502, ReasonStage.Session, "The provider refused to start a sign-in (an OAuth error from its pushed-authorization endpoint).");
    public static readonly ReasonCode SessionProviderUnavailable = new("session.provider-unavailable", 503, ReasonStage.Session, "The provider cannot be reached to start a sign-in.");

    // Traffic control (also the access log's `rateLimit` field).
    public static readonly ReasonCode Admitted = new("admitted", 0, ReasonStage.Traffic, "Every rate limit, concurrency limit and quota of the route admitted the request.");
    public static readonly ReasonCode RateLimitExceeded = new("ratelimit.exceeded", 429, ReasonStage.Traffic, "A rate-limit policy refused the request.");
    public static readonly ReasonCode RateLimitStoreUnavailable = new("ratelimit.store-unavailable", 503, ReasonStage.Traffic, "Redis cannot answer and the rate limit says `onStoreFailure: closed`.");
    public static readonly ReasonCode RateLimitStoreUnavailableOpen = new("ratelimit.store-unavailable.open", 0, ReasonStage.Traffic, "Redis cannot answer and the rate limit says `onStoreFailure: open`: admitted unchecked.");
    public static readonly ReasonCode RateLimitStoreUnavailableLocal = new("ratelimit.store-unavailable.local", 0, ReasonStage.Traffic, "Redis cannot answer; admitted by this instance's local share (`onStoreFailure: local`).");
    public static readonly ReasonCode RateLimitStoreUnavailableLocalExceeded = new("ratelimit.store-unavailable.local-exceeded", 429, ReasonStage.Traffic, "Redis cannot answer; refused by this instance's local share (the client sees `ratelimit.exceeded`).");
    public static readonly ReasonCode QuotaExceeded = new("quota.exceeded", 429, ReasonStage.Traffic, "The route's quota is used up until the period renews.");
    public static readonly ReasonCode QuotaStoreUnavailable = new("quota.store-unavailable", 503, ReasonStage.Traffic, "Redis cannot answer and the quota says `onStoreFailure: closed`.");
    public static readonly ReasonCode QuotaStoreUnavailableOpen = new("quota.store-unavailable.open", 0, ReasonStage.Traffic, "Redis cannot answer and the quota says `onStoreFailure: open`: admitted uncounted.");
    public static readonly ReasonCode QuotaStoreUnavailableLocal = new("quota.store-unavailable.local", 0, ReasonStage.Traffic, "Redis cannot answer; admitted by this instance's local share of the quota.");
    public static readonly ReasonCode QuotaStoreUnavailableLocalExceeded = new("quota.store-unavailable.local-exceeded", 429, ReasonStage.Traffic, "Redis cannot answer; refused by this instance's local share (the client sees `quota.exceeded`).");
    public static readonly ReasonCode PlanRouteNotIncluded = new("plan.route-not-included", 403, ReasonStage.Traffic, "The caller's plan (`plans.<name>.routes`) does not include the route.");
    public static readonly ReasonCode PlanNone = new("plan.none", 403, ReasonStage.Traffic, "The caller has no plan: its `plan.from` source is missing or names no plan, and there is no `plan.default`.");
    public static readonly ReasonCode ConcurrencyLimit = new("concurrency.limit", 503, ReasonStage.Traffic, "The route's or cluster's in-flight limit is reached (after the queue timeout, if queued).");
    public static readonly ReasonCode ConcurrencyStoreUnavailable = new("concurrency.store-unavailable", 503, ReasonStage.Traffic, "Redis cannot answer and the shared concurrency limit says `onStoreFailure: closed`.");
    public static readonly ReasonCode ConcurrencyStoreUnavailableOpen = new("concurrency.store-unavailable.open", 0, ReasonStage.Traffic, "Redis cannot answer and the shared concurrency limit says `onStoreFailure: open`: admitted without a slot.");
    public static readonly ReasonCode ConcurrencyStoreUnavailableLocal = new("concurrency.store-unavailable.local", 0, ReasonStage.Traffic, "Redis cannot answer; admitted within this instance's local share of the concurrency limit.");
    public static readonly ReasonCode ConcurrencyStoreUnavailableLocalExceeded = new("concurrency.store-unavailable.local-exceeded", 503, ReasonStage.Traffic, "Redis cannot answer; refused by this instance's local share (the client sees `concurrency.limit`).");

    // Upstream.
    public static readonly ReasonCode UpstreamUnavailable = new("upstream.unavailable", 503, ReasonStage.Upstream, "No healthy, undrained destination.");
    public static readonly ReasonCode UpstreamTimeout = new("upstream.timeout", 504, ReasonStage.Upstream, "The upstream stayed silent longer than `timeouts.request` (or no connection within `timeouts.connect`).");
    public static readonly ReasonCode UpstreamError = new("upstream.error", 502, ReasonStage.Upstream, "The upstream failed (connection refused or reset after retries, a bad answer).");
    public static readonly ReasonCode UpstreamCredentialsUnavailable = new("upstream.credentials-unavailable", 503, ReasonStage.Upstream, "The gateway has no valid client-credentials token for the cluster right now.");
    public static readonly ReasonCode ClientCanceled = new("client.canceled", 499, ReasonStage.Upstream, "The client went away before the upstream answered.");

    // Response.
    public static readonly ReasonCode ResponseHeaderPolicy = new("response.header-policy", 502, ReasonStage.Response, "The upstream's response broke a response-header rule in `enforce` mode; its body is never sent.");

    // Admin API.
    public static readonly ReasonCode AdminAuthNotConfigured = new("admin.auth-not-configured", 403, ReasonStage.Admin, "The admin listener has no `admin.auth`: only the open paths answer.");
    public static readonly ReasonCode AdminAuthAmbiguous = new("admin.auth-ambiguous", 401, ReasonStage.Admin, "More than one Authorization header on the admin API.");
    public static readonly ReasonCode AdminTokenInvalid = new("admin.token-invalid", 401, ReasonStage.Admin, "A bearer token that is none of `admin.auth.tokens`.");
    public static readonly ReasonCode AdminCertificateNotAllowed = new("admin.certificate-not-allowed", 403, ReasonStage.Admin, "A client certificate no `admin.auth.certificates` rule allows.");
    public static readonly ReasonCode AdminUnauthenticated = new("admin.unauthenticated", 401, ReasonStage.Admin, "No admin credential.");
    public static readonly ReasonCode AdminScopeInsufficient = new("admin.scope-insufficient", 403, ReasonStage.Admin, "A read-scope credential asked for an action that needs the admin scope.");
    public static readonly ReasonCode AdminUiCrossOrigin = new("admin.ui-cross-origin", 403, ReasonStage.Admin, "A dashboard sign-in or sign-out posted from another origin (a cross-site form).");
    public static readonly ReasonCode AdminNotFound = new("admin.not-found", 404, ReasonStage.Admin, "No admin endpoint has this method and path.");
    public static readonly ReasonCode AdminQuotaUnknown = new("admin.quota-unknown", 404, ReasonStage.Admin, "No quota has this name.");
    public static readonly ReasonCode AdminPlanUnknown = new("admin.plan-unknown", 404, ReasonStage.Admin, "A quota lookup for a plan's copy (`/admin/quotas/{quota}@{plan}`) names no plan.");
    public static readonly ReasonCode AdminQuotaKeyMissing = new("admin.quota-key-missing", 400, ReasonStage.Admin, "A quota lookup without the counted key.");
    public static readonly ReasonCode AdminStoreUnavailable = new("admin.store-unavailable", 503, ReasonStage.Admin, "The quota's store cannot answer right now.");
    public static readonly ReasonCode AdminUnknownCluster = new("admin.unknown-cluster", 404, ReasonStage.Admin, "No cluster has this name.");
    public static readonly ReasonCode AdminUnknownDestination = new("admin.unknown-destination", 404, ReasonStage.Admin, "The cluster has no destination of this name.");
    public static readonly ReasonCode AdminDrainScopeInvalid = new("admin.drain-scope-invalid", 400, ReasonStage.Admin, "A drain or undrain with a `scope` other than `instance` or `fleet`.");
    public static readonly ReasonCode AdminFleetStoreMissing = new("admin.fleet-store-missing", 409, ReasonStage.Admin, "A fleet-wide drain (`scope=fleet`) without `stores.redis` to keep it in.");
    public static readonly ReasonCode AdminFleetStoreUnavailable = new("admin.fleet-store-unavailable", 503, ReasonStage.Admin, "Redis cannot answer, so a fleet-wide drain was not changed.");
    public static readonly ReasonCode AdminUnknownIssuer = new("admin.unknown-issuer", 404, ReasonStage.Admin, "No issuer has this name.");
    public static readonly ReasonCode AnalyticsBadParameter = new("analytics.bad-parameter", 400, ReasonStage.Admin, "An analytics query with an unknown parameter or a bad value (the detail names the parameter).");
    public static readonly ReasonCode AnalyticsOff = new("analytics.off", 404, ReasonStage.Admin, "An analytics query while analytics is off (no `analytics.path` or `analytics.fleetPath`).");
    public static readonly ReasonCode AnalyticsUnavailable = new("analytics.unavailable", 503, ReasonStage.Admin, "The analytics store or fleet folder cannot answer right now (busy, timed out, or failing).");
    public static readonly ReasonCode AdviceBadParameter = new("admin.advice-bad-parameter", 400, ReasonStage.Admin, "A findings query with an unknown parameter or a bad value (the detail names the parameter).");
    public static readonly ReasonCode AdviceUnknownFinding = new("admin.advice-unknown-finding", 404, ReasonStage.Admin, "No current or recently resolved finding has this id.");
    public static readonly ReasonCode AdviceStateUnwritable = new("admin.advice-state-unwritable", 503, ReasonStage.Admin, "Acknowledging or muting a finding failed: advice.statePath cannot be written (nothing was changed).");

    /// <summary>Every entry, in declaration order.</summary>
    public static IReadOnlyList<ReasonCode> All { get; } = typeof(ReasonCodes)
        .GetFields(BindingFlags.Public | BindingFlags.Static)
        .Where(f => f.FieldType == typeof(ReasonCode))
        .OrderBy(f => f.MetadataToken)
        .Select(f => (ReasonCode)f.GetValue(null)!)
        .ToArray();

    private static readonly FrozenDictionary<string, ReasonCode> ByCode = All.ToFrozenDictionary(c => c.Code, StringComparer.Ordinal);

    /// <summary>The entry with this text, or null.</summary>
    public static ReasonCode? Find(string? code) => code is not null && ByCode.TryGetValue(code, out var entry) ? entry : null;

    /// <summary>docs/reason-codes.md: one table per stage, in catalogue order.</summary>
    public static string Markdown()
    {
        var text = new StringBuilder();
        text.Append("# Reason codes\n\n");
        text.Append("<!-- Generated from src/Portcullis/Pipeline/ReasonCodes.cs by ReasonCodesTests; do not edit by hand. -->\n\n");
        text.Append("Every decision the gateway takes carries a reason code: in problem+json bodies (`reason`), the access\n");
        text.Append("log (`authReason`, `rateLimit`, `reason`), metrics (`portcullis.auth.failures`, `portcullis.traffic.*`),\n");
        text.Append("spans and the audit log. Status `-` means the decision lets the request through.\n");
        foreach (var stage in Enum.GetValues<ReasonStage>())
        {
            text.Append("\n## ").Append(stage).Append("\n\n| Code | Status | Meaning |\n| --- | --- | --- |\n");
            foreach (var code in All)
            {
                if (code.Stage != stage) continue;
                text.Append("| `").Append(code.Code).Append("` | ").Append(code.Status == 0 ? "-" : code.Status.ToString(System.Globalization.CultureInfo.InvariantCulture))
                    .Append(" | ").Append(code.Meaning).Append(" |\n");
            }
        }

        return text.ToString();
    }
}
