using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using Portcullis.Observability;

namespace Portcullis.Tls;

/// <summary>The listener certificates' instrument: days until each certificate expires.</summary>
internal sealed class CertificateMetrics(IServiceProvider services, TimeProvider time) : IMetricsContributor
{
    public void Register(Meter meter) =>
        meter.CreateObservableGauge("portcullis.certificate.expiry", ObserveCertificates, "d", "Days until a listener certificate expires (negative once expired).");

    private IEnumerable<Measurement<double>> ObserveCertificates()
    {
        if (services.GetService<CertificateStore>() is not { } certificates) yield break;
        var now = time.GetUtcNow();
        foreach (var listener in certificates.Listeners)
        {
            foreach (var slot in listener.Slots)
            {
                yield return new Measurement<double>((slot.State.Current.NotAfter - now).TotalDays, new TagList
                {
                    { "listener", listener.Name },
                    { "certificate", slot.Source.Name },
                });
            }
        }
    }
}
