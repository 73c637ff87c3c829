using System.Security.Cryptography.X509Certificates;

namespace Portcullis.Advice;

/// <summary>
/// certificate.expiring (the certificates in use when live; offline, the listeners' PEM certificate files named in
/// the config) and issuer.jwks-failing (live: an issuer whose key refresh has been failing for jwksFailingFor).
/// </summary>
internal sealed class ServiceTrustDetector : IAdviceDetector
{
    public string Name => "services.trust";

    public IReadOnlyList<Finding> Detect(AdviceContext context)
    {
        var findings = new List<Finding>();
        var certificates = context.Runtime.IsLive ? context.Runtime.Certificates() : FromConfig(context);
        foreach (var certificate in certificates) Certificate(context, certificate, findings);
        if (context.Runtime.IsLive)
        {
            foreach (var jwks in context.Runtime.Jwks()) Jwks(context, jwks, findings);
        }

        return findings;
    }

    private static void Certificate(AdviceContext context, RuntimeCertificate certificate, List<Finding> findings)
    {
        var options = context.Settings.Services;
        var left = certificate.NotAfter - context.Now;
        if (left >= options.CertificateWarning) return;
        var severity = left < options.CertificateCritical ? FindingSeverity.Critical : FindingSeverity.Warning;
        var days = Math.Floor(left.TotalDays);
        var where = certificate.OwnerKind == SubjectKind.Listener ? $"the server certificate {certificate.Name} of listener {certificate.Owner}" : $"the client certificate of cluster {certificate.Owner}";
        var when = left <= TimeSpan.Zero ? $"expired on {certificate.NotAfter:yyyy-MM-dd HH:mm} UTC" : $"expires on {certificate.NotAfter:yyyy-MM-dd HH:mm} UTC, in {ServiceAdvice.Number(days)} days";
        var files = certificate.Files.Count > 0 ? $" Replace {string.Join(", ", certificate.Files)}: the gateway reloads it when the file changes." : " Replace its file: the gateway reloads it when the file changes.";
        var evidence = new Evidence(context.Now, certificate.NotAfter,
        [
            new("days to expiry", days, "days", options.CertificateWarning.TotalDays),
        ])
        {
            Basis = context.Runtime.IsLive ? "the certificate in use" : "the certificate file named in the configuration",
        };
        findings.Add(ServiceAdvice.Make(context, FindingKinds.CertificateExpiring, severity,
            new FindingSubject(SubjectKind.Certificate, certificate.Owner + "/" + certificate.Name),
            $"Certificate {certificate.Owner}/{certificate.Name} {(left <= TimeSpan.Zero ? "has expired" : $"expires in {ServiceAdvice.Number(days)} days")}",
            $"{char.ToUpperInvariant(where[0])}{where[1..]} ({certificate.Subject}) {when}. "
            + (certificate.OwnerKind == SubjectKind.Listener ? "After that, clients refuse the TLS handshake." : "After that, the upstream refuses the gateway's connections.") + files,
            evidence) with { FirstSeen = context.Now });
    }

    private static List<RuntimeCertificate> FromConfig(AdviceContext context)
    {
        var result = new List<RuntimeCertificate>();
        foreach (var listener in context.Snapshot.Listeners)
        {
            if (listener.Tls is null) continue;
            foreach (var source in listener.Tls.Certificates)
            {
                if (source.CertFile is not { } file) continue;
                try
                {
                    using var certificate = X509CertificateLoader.LoadCertificateFromFile(file);
                    result.Add(new RuntimeCertificate(SubjectKind.Listener, listener.Name, source.Name, certificate.Subject, certificate.NotAfter.ToUniversalTime(), [file]));
                }
                catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
                {
                    // The loader reports unreadable files when the config is validated; nothing to add here.
                }
            }
        }

        return result;
    }

    private static void Jwks(AdviceContext context, RuntimeJwks jwks, List<Finding> findings)
    {
        var options = context.Settings.Services;
        if (jwks.FailingSince is not { } since) return;
        var failing = context.Now - since;
        if (failing < options.JwksFailingFor) return;
        var noKeys = jwks.KeysFetchedAt is null || jwks.KeysExpired;
        var state = jwks.KeysFetchedAt is not { } fetched ? "It has no keys at all, so every token of this issuer is refused."
            : jwks.KeysExpired ? $"Its last good keys (fetched {fetched:yyyy-MM-dd HH:mm:ss} UTC) are past their stale window: tokens of this issuer are refused."
            : $"Its last good keys (fetched {fetched:yyyy-MM-dd HH:mm:ss} UTC) still serve until their stale window ends; a key the provider rotates in meanwhile is unknown.";
        var evidence = new Evidence(since, context.Now,
        [
            new("failing for", Math.Round(failing.TotalSeconds), "s"),
            new("failed fetches since start", jwks.Failures, "fetches"),
            new("good fetches since start", jwks.Fetches, "fetches"),
        ])
        {
            Basis = "the issuer's key cache (also on /readyz and /admin/issuers)",
            DashboardLink = DashboardLinks.Samples(since, context.Now, ("status", "401")),
        };
        findings.Add(ServiceAdvice.Make(context, FindingKinds.JwksFailing, noKeys ? FindingSeverity.Critical : FindingSeverity.Warning,
            new FindingSubject(SubjectKind.Issuer, jwks.Issuer),
            $"Keys of issuer {jwks.Issuer} cannot be fetched (for {ServiceAdvice.Number(Math.Round(failing.TotalMinutes, 1))} min)",
            $"Every refresh of issuer {jwks.Issuer}'s signing keys from {jwks.Source} has failed since {since:HH:mm:ss} UTC ({jwks.LastError ?? "no detail"}). {state} "
            + "Check that the provider is up and reachable from the gateway (POST /admin/issuers/{name}/refresh retries at once).",
            evidence) with { FirstSeen = since });
    }
}
