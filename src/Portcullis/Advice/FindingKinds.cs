namespace Portcullis.Advice;

/// <summary>
/// Every kind of finding, by group. The text is stable: it is the `kind` of the API, the metric label and the
/// webhook. docs/advisor.md describes each one (method, thresholds, patch).
/// </summary>
internal static class FindingKinds
{
    // Rate limits (RateLimitAdvice*).
    public const string RateLimitSuggested = "ratelimit.suggested";
    public const string RateLimitTooLoose = "ratelimit.too-loose";
    public const string RateLimitTooTight = "ratelimit.too-tight";
    public const string RateLimitKeyAbsent = "ratelimit.key-absent";

    // Unusual routes and callers (AnomalyAdvice*).
    public const string UnmatchedScanner = "traffic.scanner";
    public const string UnmatchedEnumeration = "traffic.enumeration";
    public const string RouteVolume = "route.volume-anomaly";
    public const string RouteErrors = "route.error-anomaly";
    public const string RouteLatency = "route.latency-anomaly";
    public const string GatewayLatency = "gateway.latency-anomaly";
    public const string ConsumerNewRoute = "consumer.new-route";
    public const string ConsumerSurge = "consumer.rate-surge";
    public const string AuthFailureBurst = "auth.failure-burst";
    public const string NewPathShape = "route.new-path-shape";

    // Misconfigured services (ServiceAdvice*).
    public const string UpstreamErrors = "upstream.errors";
    public const string UpstreamTimeouts = "upstream.timeouts";
    public const string TimeoutTooTight = "upstream.timeout-too-tight";
    public const string TimeoutTooLoose = "upstream.timeout-too-loose";
    public const string DestinationFlapping = "destination.flapping";
    public const string SingleDestination = "cluster.single-destination";
    public const string NoHealthCheck = "cluster.no-health-check";
    public const string RetryNonIdempotent = "cluster.retry-non-idempotent";
    public const string UnauthenticatedSibling = "route.unauthenticated-sibling";
    public const string MissingSecurityHeaders = "headers.missing-security";
    public const string LeakingHeaders = "headers.leaking";
    public const string CertificateExpiring = "certificate.expiring";
    public const string JwksFailing = "issuer.jwks-failing";
}
