using Portcullis.Analytics;
using Portcullis.Configuration;

namespace Portcullis.Advice;

/// <summary>
/// What one advisor run reads: the time, the live snapshot (routes, clusters, limits as compiled), the analytics
/// store (null when there is none: config-only checks still run) and the runtime state (health history,
/// certificates, JWKS fetches; an offline run has none). Built by the engine once per run, shared by every detector.
/// </summary>
internal sealed class AdviceContext
{
    /// <summary>Now, UTC, from the engine's TimeProvider (tests use fake time).</summary>
    public required DateTime Now { get; init; }

    public required GatewaySnapshot Snapshot { get; init; }

    public required CompiledAdvice Settings { get; init; }

    /// <summary>The store (or fleet folder) to read rollups and samples from; null without analytics.</summary>
    public AnalyticsSource? Analytics { get; init; }

    public required IAdviceRuntime Runtime { get; init; }

    public CancellationToken Cancellation { get; init; }

    /// <summary>Start of the learning window: Now - advice.window.</summary>
    public DateTime WindowStart => Now - Settings.Window;
}

/// <summary>
/// The live state the service checks read (destination health transitions, certificates, JWKS fetch results).
/// The running gateway registers its implementation; <see cref="OfflineAdviceRuntime"/> is used by
/// `portcullis advise` and whenever nothing is registered.
/// </summary>
internal interface IAdviceRuntime
{
    /// <summary>False offline: checks that need live state skip themselves rather than report on nothing.</summary>
    bool IsLive { get; }

    /// <summary>Destination health changes (active and passive checks) at or after <paramref name="since"/>.</summary>
    IReadOnlyList<Clusters.HealthTransition> HealthTransitions(DateTime since);

    /// <summary>The certificates in use now: listener server certificates and upstream client certificates.</summary>
    IReadOnlyList<RuntimeCertificate> Certificates();

    /// <summary>Each issuer's JWKS fetch state (issuers with keys fetched from a URL or file).</summary>
    IReadOnlyList<RuntimeJwks> Jwks();

    /// <summary>Response-header findings counted since start, per route and finding ("forbid:Server", "require:X-Content-Type-Options").</summary>
    IReadOnlyList<(string Route, string Finding, long Count)> ResponseHeaderFindings();
}

/// <summary>A certificate the gateway uses: <paramref name="Owner"/> is the listener (server certificate) or the cluster (upstream client certificate).</summary>
internal sealed record RuntimeCertificate(SubjectKind OwnerKind, string Owner, string Name, string Subject, DateTime NotAfter, IReadOnlyList<string> Files);

/// <summary>An issuer's key fetching: failing since when (null: the latest fetch succeeded), why, and the counts since start.</summary>
internal sealed record RuntimeJwks(string Issuer, string Source, DateTime? FailingSince, string? LastError, long Fetches, long Failures, DateTime? KeysFetchedAt, bool KeysExpired);

internal sealed class OfflineAdviceRuntime : IAdviceRuntime
{
    public static readonly OfflineAdviceRuntime Instance = new();

    public bool IsLive => false;

    public IReadOnlyList<Clusters.HealthTransition> HealthTransitions(DateTime since) => [];

    public IReadOnlyList<RuntimeCertificate> Certificates() => [];

    public IReadOnlyList<RuntimeJwks> Jwks() => [];

    public IReadOnlyList<(string Route, string Finding, long Count)> ResponseHeaderFindings() => [];
}

/// <summary>
/// One group of checks. Detectors are singletons that depend only on what exists offline too (TimeProvider,
/// loggers): everything live comes through the <see cref="AdviceContext"/>. A run is synchronous, in the
/// background, never on the request path; a detector that throws is logged and skipped for that run.
/// </summary>
internal interface IAdviceDetector
{
    /// <summary>For logs and the run's timing ("ratelimits", "anomalies.unmatched", …).</summary>
    string Name { get; }

    IReadOnlyList<Finding> Detect(AdviceContext context);
}
