using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Portcullis.Tls;

/// <summary>
/// Readiness of the listeners' certificates: degraded when one has expired or its files changed into
/// something that could not be loaded (the previous certificate keeps serving).
/// </summary>
internal sealed class CertificatesHealthCheck(CertificateStore certificates, TimeProvider time) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow();
        List<string>? problems = null;
        foreach (var listener in certificates.Listeners)
        {
            foreach (var slot in listener.Slots)
            {
                var state = slot.State;
                if (state.LastError is not null) (problems ??= []).Add($"listener {listener.Name}, certificate {slot.Source.Name}: reload failed, the previous one serves");
                else if (state.Current.NotAfter <= now) (problems ??= []).Add($"listener {listener.Name}, certificate {slot.Source.Name}: expired");
            }
        }

        return Task.FromResult(problems is null ? HealthCheckResult.Healthy() : HealthCheckResult.Degraded(string.Join("; ", problems)));
    }
}
