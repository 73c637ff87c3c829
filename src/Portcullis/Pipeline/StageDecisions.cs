
namespace Portcullis.Pipeline;

/// <summary>How authentication and authorization ended for a request.</summary>
public enum AuthResult : byte
{
    /// <summary>Not decided: the route has no auth, or the request was answered before identity ran.</summary>
    None,
    Allowed,

    /// <summary>401: credentials missing or invalid (a browser-session route may answer with a sign-in redirect).</summary>
    Unauthenticated,

    /// <summary>403: authenticated, but the route's conditions do not hold.</summary>
    Forbidden,

    /// <summary>503: the credential could not be checked (keys, introspection or the session store unavailable).</summary>
    Unavailable,
}

/// <summary>The kind of credential the identity stage checked.</summary>
public enum AuthMethod : byte
{
    None,
    Jwt,
    ApiKey,
    Introspection,
    Session,
    Mtls,
}

/// <summary>The identity stage's decision (a value on the feature: recording it allocates nothing).</summary>
public readonly record struct AuthDecision(AuthResult Result, AuthMethod Method, ReasonCode? Reason)
{
    /// <summary>The credential was good (allowed, or refused by authorization only).</summary>
    public bool Authenticated => Result is AuthResult.Allowed or AuthResult.Forbidden;

    /// <summary>Refused by authentication or authorization (or not checkable).</summary>
    public bool Denied => Result is AuthResult.Unauthenticated or AuthResult.Forbidden or AuthResult.Unavailable;
}

/// <summary>How traffic control ended for a request.</summary>
public enum TrafficResult : byte
{
    /// <summary>Not decided: the route has no traffic control, or the request was answered before it.</summary>
    None,
    Admitted,

    /// <summary>Refused by a rate limit, quota or concurrency limit.</summary>
    Refused,

    /// <summary>Refused because the limit store could not answer (`onStoreFailure: closed`).</summary>
    StoreUnavailableRefused,

    /// <summary>Admitted unchecked because the limit store could not answer (`onStoreFailure: open`).</summary>
    FailOpen,

    /// <summary>The limit store could not answer; this instance's local share admitted the request.</summary>
    FallbackAdmitted,

    /// <summary>The limit store could not answer; this instance's local share refused the request.</summary>
    FallbackRefused,
}

/// <summary>The traffic stage's decision: result, reason code and the policy or scope behind it.</summary>
public readonly record struct TrafficDecision(TrafficResult Result, ReasonCode? Reason, string? Policy)
{
    public bool Refused => Result is TrafficResult.Refused or TrafficResult.StoreUnavailableRefused or TrafficResult.FallbackRefused;

    /// <summary>Taken while the limit store could not answer (any of the store-failure modes).</summary>
    public bool StoreUnavailable => Result is TrafficResult.StoreUnavailableRefused or TrafficResult.FailOpen or TrafficResult.FallbackAdmitted or TrafficResult.FallbackRefused;
}

/// <summary>
/// What happened upstream: attempts made (1 + retries; 0 when not proxied), the upstream's status (0 when
/// none arrived) and, when the gateway answered for a failed upstream, its reason (upstream.timeout, ...).
/// </summary>
public readonly record struct UpstreamOutcome(int Attempts, int Status, ReasonCode? Reason);
