using Microsoft.Extensions.DependencyInjection;

namespace Portcullis.Advice;

/// <summary>
/// The running gateway's state for the service checks, read at each advisor run (never on the request path):
/// destination health transitions, the certificates in use, the issuers' key fetching and the response-header
/// findings. Each source is optional: a host without it (e.g. a test host) just has nothing to report.
/// </summary>
internal sealed class LiveAdviceRuntime(IServiceProvider services) : IAdviceRuntime
{
    /// <summary>True inside the gateway (it registers the health history); a host that only built the detectors (the CLI) is offline.</summary>
    public bool IsLive => services.GetService<Clusters.DestinationHealthHistory>() is not null;

    public IReadOnlyList<Clusters.HealthTransition> HealthTransitions(DateTime since) =>
        services.GetService<Clusters.DestinationHealthHistory>()?.Since(new DateTimeOffset(DateTime.SpecifyKind(since, DateTimeKind.Utc))) ?? [];

    public IReadOnlyList<RuntimeCertificate> Certificates()
    {
        var result = new List<RuntimeCertificate>();
        if (services.GetService<Tls.CertificateStore>() is { } listeners)
        {
            foreach (var listener in listeners.Listeners)
            {
                foreach (var slot in listener.Slots)
                {
                    var current = slot.State.Current;
                    result.Add(new RuntimeCertificate(SubjectKind.Listener, listener.Name, slot.Source.Name, current.Subject, current.NotAfter.UtcDateTime, [.. slot.Source.Files]));
                }
            }
        }

        if (services.GetService<Upstream.UpstreamTlsStore>() is { } upstream)
        {
            foreach (var cluster in upstream.Clusters)
            {
                if (cluster.Client.Current is { } client)
                {
                    result.Add(new RuntimeCertificate(SubjectKind.Cluster, cluster.Settings.Cluster, "client", client.Certificate.Subject, client.NotAfter.UtcDateTime, []));
                }
            }
        }

        return result;
    }

    public IReadOnlyList<RuntimeJwks> Jwks()
    {
        if (services.GetService<Identity.IssuerRegistry>() is not { } issuers) return [];
        var result = new List<RuntimeJwks>();
        foreach (var (name, cache) in issuers.Caches)
        {
            var source = cache.Source.JwksUri ?? cache.Source.JwksFile ?? cache.Source.Authority ?? "";
            result.Add(new RuntimeJwks(name, source, cache.FailingSince?.UtcDateTime, cache.LastError, cache.Fetches, cache.Failures,
                cache.Keys?.FetchedAt.UtcDateTime, cache.Availability == Identity.KeyAvailability.Expired));
        }

        return result;
    }

    public IReadOnlyList<(string Route, string Finding, long Count)> ResponseHeaderFindings() =>
        services.GetService<Observability.ResponseHeaderFindings>()?.Counts() ?? [];
}
