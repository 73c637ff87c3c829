using System.Globalization;
using System.Net;
using Portcullis.Tls;

namespace Portcullis.Configuration;

/// <summary>Validation of listener TLS: certificate files are loaded and checked like the gateway will.</summary>
public sealed partial class SnapshotBuilder
{
    /// <summary>Certificates expiring within this time get a warning (here and, while running, in the log).</summary>
    internal static readonly TimeSpan ExpiryWarning = TimeSpan.FromDays(14);

    /// <summary>Most certificates on one listener.</summary>
    internal const int MaxCertificates = 256;

    private ListenerTls? CompileListenerTls(Context context, ListenerTlsOptions options, string path)
    {
        var ok = true;
        var certificateOk = true;
        void Fail(string at, string message, string? hint = null)
        {
            context.Error(at, message, hint);
            ok = certificateOk = false;
        }

        if (options.Certificates.Count == 0)
        {
            Fail(path + ".certificates", "tls has no certificates", "add certificates: [{ cert: certs/server.pem, key: certs/server.key }]");
            return null;
        }

        if (options.Certificates.Count > MaxCertificates)
        {
            Fail(path + ".certificates", $"more than {MaxCertificates} certificates on one listener", "use wildcard certificates");
        }

        var now = _time.GetUtcNow();
        var sources = new List<CertificateSource>();
        var names = new Dictionary<string, int>(StringComparer.Ordinal);
        var hostOwners = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < options.Certificates.Count; i++)
        {
            var certificate = options.Certificates[i];
            certificateOk = true;
            var certPath = $"{path}.certificates[{i}]";
            var name = string.IsNullOrWhiteSpace(certificate.Name) ? "cert" + (i + 1).ToString(CultureInfo.InvariantCulture) : certificate.Name;
            if (!names.TryAdd(name, i))
            {
                Fail(certPath + ".name", $"duplicate certificate name '{name}' (first at certificates[{names[name]}])", "give each certificate its own name");
            }

            var pem = certificate.Cert is not null;
            var pfx = certificate.Pfx is not null;
            if (pem && pfx)
            {
                Fail(certPath + ".pfx", "a certificate has either `cert` (PEM) or `pfx`, not both", "remove one");
                continue;
            }

            if (!pem && !pfx)
            {
                Fail(certPath, "certificate has neither `cert` nor `pfx`", "add cert: certs/server.pem and key: certs/server.key, or pfx: certs/server.pfx");
                continue;
            }

            if (pfx && certificate.Key is not null) Fail(certPath + ".key", "`key` goes with `cert`; a PFX file holds its own key", "remove key");
            if (pem && certificate.PasswordEnv is not null) Fail(certPath + ".passwordEnv", "`passwordEnv` is for a PFX file; PEM keys must be unencrypted", "remove passwordEnv");

            var hosts = new List<string>();
            for (var h = 0; h < certificate.Hosts.Count; h++)
            {
                var host = CertificateLoader.Normalize(certificate.Hosts[h]);
                if (!IsSniName(host, out var problem))
                {
                    Fail($"{certPath}.hosts[{h}]", $"'{certificate.Hosts[h]}' is not an SNI host name: {problem}", "write api.example.com or \"*.example.com\"");
                    continue;
                }

                hosts.Add(host);
            }

            if (!certificateOk) continue;
            var source = new CertificateSource(
                name,
                certPath,
                certificate.Cert is null ? null : context.Loaded.Resolve(certificate.Cert),
                certificate.Key is null ? null : context.Loaded.Resolve(certificate.Key),
                certificate.Pfx is null ? null : context.Loaded.Resolve(certificate.Pfx),
                certificate.PasswordEnv,
                hosts);

            if (!CertificateLoader.TryLoad(source, _environment, now, out var loaded, out var error))
            {
                Fail(certPath + "." + error!.Key, error.Message, error.Hint);
                continue;
            }

            using (loaded!.Certificate)
            {
                var at = certPath + "." + (pfx ? "pfx" : "cert");
                if (loaded.NotAfter - now < ExpiryWarning)
                {
                    context.Warning(at, $"certificate '{name}' ({loaded.Subject}) expires in {(int)Math.Floor((loaded.NotAfter - now).TotalDays)} day(s), on {CertificateLoader.Format(loaded.NotAfter)}", "renew it; the gateway loads the new file without a restart");
                }

                if (loaded.Hosts.Length == 0 && options.Certificates.Count > 1)
                {
                    context.Warning(certPath, $"certificate '{name}' names no DNS host (no `hosts`, no DNS subject alternative names); it can only serve as the default", "add hosts: [api.example.com]");
                }

                foreach (var host in loaded.Hosts)
                {
                    if (!hostOwners.TryAdd(host, name))
                    {
                        context.Warning(certPath, $"host '{host}' is served by certificate '{hostOwners[host]}' already; '{name}' is not used for it", "set hosts to pick which certificate serves it");
                    }
                }
            }

            sources.Add(source);
        }

        var defaultIndex = 0;
        if (options.Default is { } wanted)
        {
            defaultIndex = sources.FindIndex(s => s.Name == wanted);
            if (defaultIndex < 0 && !names.ContainsKey(wanted))
            {
                Fail(path + ".default", $"no certificate is named '{wanted}'", names.Count == 0 ? null : "use one of: " + string.Join(", ", names.Keys));
            }
        }

        return ok ? new ListenerTls(options.MinVersion, sources, Math.Max(defaultIndex, 0)) : null;
    }

    /// <summary>A DNS name (letters, digits, hyphens; at least one dot) or `*.` followed by one.</summary>
    internal static bool IsSniName(string host, out string problem)
    {
        problem = "";
        if (host.Length is 0 or > 253)
        {
            problem = "empty or longer than 253 characters";
            return false;
        }

        if (IPAddress.TryParse(host.Trim('[', ']'), out _))
        {
            problem = "SNI carries DNS names only; clients connecting by IP address send none and get the default certificate";
            return false;
        }

        var name = host.StartsWith("*.", StringComparison.Ordinal) ? host[2..] : host;
        var labels = name.Split('.');
        foreach (var label in labels)
        {
            if (label.Length is 0 or > 63 || label.StartsWith('-') || label.EndsWith('-') || !label.All(c => char.IsAsciiLetterOrDigit(c) || c == '-'))
            {
                problem = label.Contains('*') ? "a wildcard is `*.` followed by a domain, covering one label" : $"bad label '{label}'";
                return false;
            }
        }

        if (host.StartsWith("*.", StringComparison.Ordinal) && labels.Length < 2)
        {
            problem = "a wildcard needs a domain with at least two labels, e.g. *.example.com";
            return false;
        }

        return true;
    }
}
