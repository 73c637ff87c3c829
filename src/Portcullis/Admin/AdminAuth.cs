using System.Collections.Frozen;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;
using Portcullis.Configuration;
using Portcullis.Identity;
using Portcullis.Pipeline;

namespace Portcullis.Admin;

/// <summary>An admin bearer token: its holder's name, its scope and the SHA-256 of the token (never the token).</summary>
internal sealed record AdminToken(string Name, AdminScope Scope, byte[] Hash)
{
    /// <summary>The caller this token makes, built once per snapshot.</summary>
    public AdminCaller Caller { get; } = new("token:" + Name, Scope);
}

/// <summary>Client certificates allowed on the admin API: a claim rule on the certificate's identity.</summary>
internal sealed record AdminCertificateRule(string Name, AdminScope Scope, ClaimRule Rule);

/// <summary>The compiled `admin.auth` section; null in the snapshot when it is not configured.</summary>
internal sealed class CompiledAdminAuth
{
    public required AdminToken[] Tokens { get; init; }

    public required AdminCertificateRule[] Certificates { get; init; }

    /// <summary>Paths answered to GET and HEAD without credentials.</summary>
    public required FrozenSet<string> Open { get; init; }
}

/// <summary>Who made an admin request: "token:NAME", "cert:NAME" (with the certificate's subject), "loopback" or "anonymous".</summary>
internal sealed record AdminCaller(string Actor, AdminScope Scope, string? Subject = null)
{
    /// <summary>The caller as the audit log records it.</summary>
    public Observability.AuditActor Audit => new(Actor, Subject);

    /// <summary>No admin.auth on a loopback admin listener: everything is allowed, as it always was.</summary>
    public static readonly AdminCaller Loopback = new("loopback", AdminScope.Admin);

    /// <summary>An open path (admin.auth.open) asked for without credentials.</summary>
    public static readonly AdminCaller Anonymous = new("anonymous", AdminScope.Read);
}

/// <summary>The answer to one admin request: allowed (with its caller) or a 401/403 with a reason code.</summary>
internal readonly record struct AdminDecision(AdminCaller Caller, int Status = 0, string? Reason = null, string? Detail = null, string? Challenge = null)
{
    public bool Allowed => Status == 0;
}

/// <summary>
/// Decides who may call the admin API: a bearer token (hash compared in constant time against every
/// configured one) or the connection's client certificate (the listener's mTLS identity, matched by the
/// same claim rules routes use), then the scope: `read` may GET and HEAD, `admin` may do anything.
/// </summary>
internal static class AdminAuthenticator
{
    public const string Realm = "portcullis-admin";

    /// <summary>Longer presented tokens are refused without hashing (configured ones are limited too).</summary>
    public const int MaxTokenLength = 1024;

    private static readonly FrozenSet<string> HealthPaths = FrozenSet.Create(StringComparer.Ordinal, "/healthz", "/readyz");

    /// <param name="listenerOnLoopback">Whether the running admin listener is bound to loopback only.</param>
    public static AdminDecision Decide(HttpContext context, CompiledAdminAuth? auth, bool listenerOnLoopback)
    {
        var request = context.Request;
        var read = HttpMethods.IsGet(request.Method) || HttpMethods.IsHead(request.Method);
        var path = request.Path.Value ?? "/";
        if (auth is null)
        {
            if (listenerOnLoopback) return new AdminDecision(AdminCaller.Loopback);
            // validate refuses this; it remains possible when a reload drops admin.auth while the listener
            // still runs on the address it was started on (listener changes need a restart).
            if (read && HealthPaths.Contains(path)) return new AdminDecision(AdminCaller.Anonymous);
            return Deny(AdminCaller.Anonymous, 403, ReasonCodes.AdminAuthNotConfigured,
                "The admin listener is reachable from other hosts and the running configuration has no admin.auth.");
        }

        if (read && auth.Open.Contains(path)) return new AdminDecision(AdminCaller.Anonymous);

        AdminCaller? caller = null;
        var authorization = request.Headers.Authorization;
        if (authorization.Count > 1)
        {
            return Deny(AdminCaller.Anonymous, 401, ReasonCodes.AdminAuthAmbiguous, "Send exactly one Authorization header.", BearerChallenge(auth, "invalid_request"));
        }

        if (authorization.Count == 1)
        {
            var value = authorization[0] ?? "";
            if (!value.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) || FindToken(auth.Tokens, value.AsSpan(7).Trim(' ')) is not { } token)
            {
                return Deny(new AdminCaller("token:unknown", AdminScope.Read), 401, ReasonCodes.AdminTokenInvalid,
                    "The bearer token is not one of the admin API's tokens.", BearerChallenge(auth, "invalid_token"));
            }

            caller = token.Caller;
        }
        else if (ClientCertificateIdentity.Get(context) is { } certificate && auth.Certificates.Length > 0)
        {
            AdminCertificateRule? allowed = null;
            foreach (var rule in auth.Certificates)
            {
                // The widest scope among the rules the certificate satisfies.
                if ((allowed is null || rule.Scope > allowed.Scope) && rule.Rule.Evaluate(certificate)) allowed = rule;
            }

            if (allowed is null)
            {
                return Deny(new AdminCaller("cert:unknown", AdminScope.Read, certificate.Subject), 403, ReasonCodes.AdminCertificateNotAllowed,
                    "The client certificate is trusted but no admin.auth.clientCertificates rule allows it.");
            }

            caller = new AdminCaller("cert:" + allowed.Name, allowed.Scope, certificate.Subject);
        }

        if (caller is null)
        {
            var detail = auth.Tokens.Length > 0 ? "The admin API needs a bearer token (Authorization: Bearer TOKEN)." : "The admin API needs an allowed client certificate.";
            return Deny(AdminCaller.Anonymous, 401, ReasonCodes.AdminUnauthenticated, detail, BearerChallenge(auth, null));
        }

        if (!read && caller.Scope != AdminScope.Admin)
        {
            return Deny(caller, 403, ReasonCodes.AdminScopeInsufficient, "This credential has the read scope; POST actions (reload, drain, undrain, issuer key refresh) need the admin scope.",
                auth.Tokens.Length > 0 && caller.Actor.StartsWith("token:", StringComparison.Ordinal) ? $"Bearer realm=\"{Realm}\", error=\"insufficient_scope\", scope=\"admin\"" : null);
        }

        return new AdminDecision(caller);
    }

    /// <summary>SHA-256 of a token as the snapshot keeps it.</summary>
    public static byte[] Hash(string token) => SHA256.HashData(Encoding.UTF8.GetBytes(token));

    /// <summary>
    /// The configured token equal to <paramref name="presented"/>: its hash is compared with every configured
    /// hash in constant time, without stopping at a match, so timing tells nothing about which or how many.
    /// </summary>
    internal static AdminToken? FindToken(AdminToken[] tokens, ReadOnlySpan<char> presented)
    {
        if (presented.IsEmpty || presented.Length > MaxTokenLength || tokens.Length == 0) return null;
        Span<byte> utf8 = stackalloc byte[MaxTokenLength * 3];
        Span<byte> digest = stackalloc byte[32];
        var length = Encoding.UTF8.GetBytes(presented, utf8);
        SHA256.HashData(utf8[..length], digest);
        CryptographicOperations.ZeroMemory(utf8[..length]);
        AdminToken? match = null;
        foreach (var token in tokens)
        {
            if (CryptographicOperations.FixedTimeEquals(digest, token.Hash)) match ??= token;
        }

        return match;
    }

    // RFC 6750 §3: a challenge names the realm, and the error when a token was sent.
    private static string? BearerChallenge(CompiledAdminAuth auth, string? error) =>
        auth.Tokens.Length == 0 ? null : error is null ? $"Bearer realm=\"{Realm}\"" : $"Bearer realm=\"{Realm}\", error=\"{error}\"";

    private static AdminDecision Deny(AdminCaller caller, int status, string reason, string detail, string? challenge = null) =>
        new(caller, status, reason, detail, challenge);
}
