using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Extensions;
using Microsoft.Extensions.Primitives;
using Portcullis.Configuration;
using Yarp.ReverseProxy.Model;
using Portcullis.Pipeline;
using Portcullis.Routing;

namespace Portcullis.Identity;

/// <summary>
/// Identity and authorization, after routing chose a route: authenticates (JWT, opaque token by introspection,
/// or API key) and authorizes routes with `auth` (deny by default), and tells the upstream who called through
/// identity headers. Identity headers a client sent were already removed, before routing, by
/// <see cref="InboundHeaderScrubMiddleware"/>; public routes pass here untouched (but for session cookies).
/// </summary>
internal sealed class IdentityMiddleware(RequestDelegate next, JwtAuthenticator jwt, AssertionSigner signer, TokenIntrospector introspector, TimeProvider time, Sessions.SessionGate sessions, Observability.AuditLog audit)
{
    private const string Realm = "portcullis";

    public Task InvokeAsync(HttpContext context)
    {
        var gateway = context.Features.Get<GatewayFeature>();
        if (gateway is null) return next(context);
        var snapshot = gateway.Snapshot;

        // Inbound identity headers (in any spelling), the assertion and X-Original-URL / X-Rewrite-URL were
        // removed before routing (InboundHeaderScrubMiddleware): a client can never assert an identity.
        // The assertion's JWKS is an endpoint of its own (AssertionJwksEndpoint), answered before this stage.
        if (gateway.ResolveRoute(context) is not { Auth: { Anonymous: false } auth })
        {
            sessions.StripCookies(context); // the gateway's session cookies never reach an upstream
            return next(context);
        }

        gateway.Times.IdentityStart = System.Diagnostics.Stopwatch.GetTimestamp();
        var pending = AuthenticateAsync(context, auth, snapshot, out var method);
        if (pending.IsCompletedSuccessfully) return Continue(context, gateway, auth, snapshot, pending.Result, method);
        return ContinueAsync(context, gateway, auth, snapshot, pending, method);
    }

    private async Task ContinueAsync(HttpContext context, GatewayFeature gateway, CompiledRouteAuth auth, GatewaySnapshot snapshot, ValueTask<AuthDecision> pending, AuthMethod method)
    {
        var decision = await pending;
        await Continue(context, gateway, auth, snapshot, decision, method);
    }

    private Task Continue(HttpContext context, GatewayFeature gateway, CompiledRouteAuth auth, GatewaySnapshot snapshot, AuthDecision decision, AuthMethod method)
    {
        if (decision.Allowed) decision = Authorize(auth, decision);
        gateway.Times.IdentityEnd = System.Diagnostics.Stopwatch.GetTimestamp();
        gateway.Auth = new Portcullis.Pipeline.AuthDecision(ResultOf(decision.Status), method, decision.Reason);
        if (!decision.Allowed) audit.RecordDenial(context, gateway, decision.Status, decision.Identity?.Consumer, decision.Identity?.Subject);
        if (!decision.Allowed && auth.Session is not null) return sessions.DenyAsync(context, auth, decision);
        if (!decision.Allowed) return Deny(context, decision, auth, snapshot);

        var identity = decision.Identity!;
        gateway.Caller = identity;
        sessions.StripCookies(context);
        var headers = context.Request.Headers;
        var names = snapshot.Config.Identity.Headers;
        if (!auth.ForwardCredentials)
        {
            headers.Remove("Authorization");
            if (snapshot.ApiKeys is { } keys)
            {
                headers.Remove(keys.Header);
                if (keys.QueryParameter is { } parameter && context.Request.QueryString.HasValue)
                {
                    // A key accepted from the query string must not travel on to the upstream (or its logs).
                    context.Request.QueryString = WithoutParameter(context.Request.QueryString, parameter);
                }
            }
        }

        if (auth.ForwardCertificate is { } certificateHeader)
        {
            // Only the certificate the listener validated, and only for a caller it identified.
            headers.Remove(certificateHeader);
            if (identity.Kind == CredentialKind.ClientCertificate && context.Connection.ClientCertificate is { } certificate)
            {
                headers[certificateHeader] = ClientCertificateIdentity.EscapedPem(certificate);
            }
        }

        if (snapshot.Assertion is { } assertion)
        {
            headers[assertion.Header] = signer.Sign(identity, auth.AssertionAudience, assertion);
        }

        // Percent-encoded where not plain ASCII (IdentityHeaderValue); the assertion above has the exact values.
        if (identity.ConsumerHeader is { } consumer) headers[names.Consumer] = consumer;
        if (identity.ConsumerGroupHeader is { } consumerGroup) headers[names.ConsumerGroup] = consumerGroup;
        if (identity.SubjectHeader is { } subject) headers[names.Subject] = subject;
        if (identity.Groups.Length > 0) headers[names.Groups] = identity.GroupsHeader;
        if (identity.Scopes.Count > 0) headers[names.Scopes] = identity.ScopesHeader;
        return next(context);
    }

    // Drops one parameter (any case, as the lookup matched it) and keeps the rest byte for byte.
    private static QueryString WithoutParameter(QueryString query, string parameter)
    {
        var kept = new List<string>();
        foreach (var pair in (query.Value ?? "").TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var name = Uri.UnescapeDataString(pair.Split('=', 2)[0].Replace('+', ' '));
            if (!string.Equals(name, parameter, StringComparison.OrdinalIgnoreCase)) kept.Add(pair);
        }

        return kept.Count == 0 ? QueryString.Empty : new QueryString("?" + string.Join('&', kept));
    }

    // The stage's status as the feature's result: 0 allowed, 401, 403, 503.
    private static AuthResult ResultOf(int status) => status switch
    {
        0 => AuthResult.Allowed,
        StatusCodes.Status403Forbidden => AuthResult.Forbidden,
        StatusCodes.Status503ServiceUnavailable => AuthResult.Unavailable,
        _ => AuthResult.Unauthenticated,
    };

    private ValueTask<AuthDecision> AuthenticateAsync(HttpContext context, CompiledRouteAuth auth, GatewaySnapshot snapshot, out AuthMethod method)
    {
        method = AuthMethod.None;
        if (auth.Session is not null)
        {
            method = AuthMethod.Session;
            return sessions.AuthenticateAsync(context, auth);
        }

        var request = context.Request;
        var authorization = request.Headers.Authorization;
        if (authorization.Count > 1)
        {
            return ValueTask.FromResult(AuthDecision.Unauthenticated(ReasonCodes.AuthAmbiguous, "Send exactly one Authorization header.", true));
        }

        if ((auth.AcceptsJwt || auth.AcceptsIntrospection) && authorization.Count == 1)
        {
            var value = authorization[0]!;
            if (value.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            {
                var maxTokenBytes = (int)Math.Min(int.MaxValue, snapshot.Config.Identity.MaxTokenSize.Bytes);
                // A JWT (header.payload.signature) goes to the issuers; an opaque token to introspection.
                // A route with only one of the two sends every bearer token there.
                if (auth.AcceptsIntrospection && (!auth.AcceptsJwt || !LooksLikeJwt(value)))
                {
                    method = AuthMethod.Introspection;
                    return introspector.AuthenticateAsync(value, auth, maxTokenBytes);
                }

                method = AuthMethod.Jwt;
                return jwt.AuthenticateAsync(value, auth, maxTokenBytes);
            }
        }

        if (auth.ApiKey && snapshot.ApiKeys is { } keys)
        {
            var presented = request.Headers[keys.Header];
            if (presented.Count > 1)
            {
                method = AuthMethod.ApiKey;
                return ValueTask.FromResult(AuthDecision.Unauthenticated(ReasonCodes.ApiKeyAmbiguous, "Send exactly one API key.", true));
            }

            if (presented.Count == 1)
            {
                method = AuthMethod.ApiKey;
                return ValueTask.FromResult(keys.Authenticate(presented[0], time.GetUtcNow()));
            }

            if (keys.QueryParameter is { } parameter && request.Query[parameter] is { Count: 1 } fromQuery)
            {
                method = AuthMethod.ApiKey;
                return ValueTask.FromResult(keys.Authenticate(fromQuery[0], time.GetUtcNow()));
            }
        }

        if (auth.ClientCertificate)
        {
            // Built by the listener's handshake validation, only for a certificate its CA bundle trusts.
            if (ClientCertificateIdentity.Get(context) is { } certificate)
            {
                method = AuthMethod.Mtls;
                return ValueTask.FromResult(certificate.Expires > time.GetUtcNow()
                    ? AuthDecision.Allow(certificate, ReasonCodes.CertValid)
                    : AuthDecision.Unauthenticated(ReasonCodes.CertExpired, "The client certificate of this connection has expired; reconnect with a current one.", false));
            }

            if (!auth.AcceptsJwt && !auth.AcceptsIntrospection && !auth.ApiKey)
            {
                method = AuthMethod.Mtls;
                return ValueTask.FromResult(AuthDecision.Unauthenticated(ReasonCodes.CertMissing, "This route needs a trusted client certificate (mTLS).", false));
            }
        }

        return ValueTask.FromResult(AuthDecision.Unauthenticated(ReasonCodes.AuthMissing, "This route needs credentials.", authorization.Count > 0));
    }

    private static bool LooksLikeJwt(string authorization) => authorization.AsSpan(7).Count('.') >= 2;

    private static AuthDecision Authorize(CompiledRouteAuth auth, AuthDecision decision)
    {
        var identity = decision.Identity!;
        foreach (var scope in auth.Scopes)
        {
            if (!identity.Scopes.Contains(scope))
            {
                return AuthDecision.Forbidden(ReasonCodes.AuthzScope, "The caller lacks a required scope.", identity, auth.ScopesJoined);
            }
        }

        if (auth.Groups.Count > 0)
        {
            var member = false;
            foreach (var group in identity.Groups)
            {
                if (auth.Groups.Contains(group))
                {
                    member = true;
                    break;
                }
            }

            if (!member) return AuthDecision.Forbidden(ReasonCodes.AuthzGroup, "The caller is not in an allowed group.", identity);
        }

        if (auth.Consumers.Count > 0 && (identity.Consumer is null || !auth.Consumers.Contains(identity.Consumer)))
        {
            return AuthDecision.Forbidden(ReasonCodes.AuthzConsumer, "This consumer may not use this route.", identity);
        }

        if (auth.Rule is { } rule && !rule.Evaluate(identity))
        {
            return AuthDecision.Forbidden(ReasonCodes.AuthzClaims, "The caller's claims do not satisfy this route's rules.", identity);
        }

        return decision;
    }

    private static Task Deny(HttpContext context, AuthDecision decision, CompiledRouteAuth auth, GatewaySnapshot snapshot)
    {
        var response = context.Response;
        switch (decision.Status)
        {
            case 401:
                // One challenge per way this route accepts credentials: a client of an API-key route learns
                // the header to send, not to fetch a bearer token.
                var apiKeys = auth.ApiKey ? snapshot.ApiKeys : null;
                string? bearer = null;
                if (apiKeys is null || auth.AcceptsJwt || auth.AcceptsIntrospection)
                {
                    var challenge = new StringBuilder("Bearer realm=\"").Append(Realm).Append('"');
                    if (decision.ChallengeError is { } error) challenge.Append(", error=\"").Append(error).Append('"');
                    bearer = challenge.ToString();
                }

                var apiKey = apiKeys is null ? null
                    : $"ApiKey realm=\"{Realm}\", header=\"{apiKeys.Header}\"" + (decision.ChallengeError is { } keyError ? $", error=\"{keyError}\"" : "");
                response.Headers.WWWAuthenticate = (bearer, apiKey) switch
                {
                    (null, _) => apiKey,
                    (_, null) => bearer,
                    _ => new Microsoft.Extensions.Primitives.StringValues([bearer, apiKey]),
                };
                return ProblemWriter.WriteAsync(context, 401, "Unauthorized", decision.Detail ?? "Credentials are missing or invalid.", decision.Reason);
            case 403:
                if (decision.ChallengeError is not null)
                {
                    response.Headers.WWWAuthenticate = $"Bearer realm=\"{Realm}\", error=\"insufficient_scope\", scope=\"{decision.RequiredScope}\"";
                }

                return ProblemWriter.WriteAsync(context, 403, "Forbidden", decision.Detail ?? "Access denied.", decision.Reason);
            default:
                response.Headers.RetryAfter = "5";
                return ProblemWriter.WriteAsync(context, 503, "Identity provider unavailable", decision.Detail ?? "Credentials cannot be checked right now.", decision.Reason);
        }
    }
}
