using System.Collections.Frozen;

namespace Portcullis.Clusters;

/// <summary>A cluster's gateway-side settings (YARP holds destinations and health state).</summary>
internal sealed class CompiledCluster
{
    public required string Name { get; init; }

    /// <summary>The cluster's `retries` (attempts 0 when off).</summary>
    public CompiledRetryPolicy Retry { get; init; } = CompiledRetryPolicy.None;

    public int UnhealthyThreshold { get; init; } = 2;

    public int HealthyThreshold { get; init; } = 1;

    public int PassiveFailures { get; init; } = 3;

    public TimeSpan PassiveReactivation { get; init; } = TimeSpan.FromSeconds(30);

    public FrozenSet<int> FailureStatusCodes { get; init; } = FrozenSet<int>.Empty;

    /// <summary>healthCheck.passive is set: N failed requests in a row eject a destination.</summary>
    public bool ConsecutiveFailures { get; init; } = true;

    /// <summary>Null when the cluster has no healthCheck.outlierDetection.</summary>
    public CompiledOutlierDetection? Outliers { get; init; }

    public Traffic.ConcurrencyGate? Concurrency { get; init; }

    /// <summary>Set for loadBalancing: consistentHash.</summary>
    public CompiledConsistentHash? ConsistentHash { get; init; }

    /// <summary>Null when the cluster has no `tls` section.</summary>
    public Upstream.UpstreamTlsSettings? Tls { get; init; }

    /// <summary>Null when the cluster has no client credentials.</summary>
    public Upstream.ClientCredentialsSettings? Credentials { get; init; }

    /// <summary>Null when the cluster has no `responseHeaders`.</summary>
    public Observability.CompiledResponseHeaderPolicy? ResponseHeaders { get; init; }
}
