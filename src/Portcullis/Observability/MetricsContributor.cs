using System.Diagnostics.Metrics;

namespace Portcullis.Observability;

/// <summary>
/// A capability's own observable instruments on the gateway's meter ("Portcullis"): each capability reads
/// its runtime state itself, so Observability names none of them (docs/architecture.md, dependency rules).
/// Register with <c>services.TryAddEnumerable(ServiceDescriptor.Singleton&lt;IMetricsContributor, X&gt;())</c>;
/// <see cref="GatewayMetrics"/> calls <see cref="Register"/> once, when it creates the meter. Observations
/// run only when a reader collects, and their tags are config-bounded names and fixed values.
/// </summary>
internal interface IMetricsContributor
{
    void Register(Meter meter);
}
