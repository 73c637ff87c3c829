namespace Portcullis.Configuration;

/// <summary>advice.services (owned by the misconfigured-services checks; docs/advisor.md#misconfigured-services).</summary>
internal sealed record AdviceServiceOptions
{
}
