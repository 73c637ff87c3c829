namespace Portcullis.Configuration;

/// <summary>advice.anomalies (owned by the unusual routes and callers checks; docs/advisor.md#unusual-routes-and-callers).</summary>
internal sealed record AdviceAnomalyOptions
{
}
