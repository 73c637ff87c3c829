using System.Globalization;
using System.Net;
using Portcullis.Configuration;

namespace Portcullis.Tls;

/// <summary>Validation of listener TLS: certificate files are loaded and checked like the gateway will.</summary>
internal static class TlsCompiler
{
    /// <summary>Certificates expiring within this time get a warning (here and, while running, in the log).</summary>
    internal static readonly TimeSpan ExpiryWarning = TimeSpan.FromDays(14);

    /// <summary>Most certificates on one listener.</summary>
    internal const int MaxCertificates = 256;

    /// <summary>A listener's tls section; every certificate file is loaded and checked like the gateway will.</summary>
    internal static ListenerTls? Compile(CompileContext context, ListenerTlsOptions options, string path)
    {
        var ok = true;
        if (options.Certificates.Count == 0)
        {
            context.Error(path + ".certificates", "tls has no certificates", "add certificates: [{ cert: certs/server.pem, key: certs/server.key }]");
            return null;
        }

        if (options.Certificates.Count > MaxCertificates)
        {
            context.Error(path + ".certificates", $"more than {MaxCertificates} certificates on one listener", "use wildcard certificates");
            ok = false;
        }

        var scan = new CertificateScan(options.Certificates.Count, context.Now);
        var sources = new List<CertificateSource>();
        for (var i = 0; i < options.Certificates.Count; i++)
        {
            if (CompileCertificate(context, scan, options.Certificates[i], $"{path}.certificates[{i}]", i) is { } source) sources.Add(source);
        }

        ok &= !scan.Failed;
        var defaultIndex = 0;
        if (options.Default is { } wanted)
        {
            defaultIndex = sources.FindIndex(s => s.Name == wanted);
            if (defaultIndex < 0 && !scan.Names.ContainsKey(wanted))
            {
                context.Error(path + ".default", $"no certificate is named '{wanted}'", scan.Names.Count == 0 ? null : "use one of: " + string.Join(", ", scan.Names.Keys));
                ok = false;
            }
        }

        var clientCertificate = CompileClientCertificate(context, options.ClientCertificate, path + ".clientCertificate", ref ok);
        var hsts = options.Hsts is null ? null : CompileHsts(context, options.Hsts, path + ".hsts");
        return ok ? new ListenerTls(options.MinVersion, sources, Math.Max(defaultIndex, 0), clientCertificate, hsts) : null;
    }

    /// <summary>What the certificates of one listener share while they are checked one by one.</summary>
    private sealed class CertificateScan(int count, DateTimeOffset now)
    {
        public int Count { get; } = count;

        public DateTimeOffset Now { get; } = now;

        public Dictionary<string, int> Names { get; } = new(StringComparer.Ordinal);

        public Dictionary<string, string> HostOwners { get; } = new(StringComparer.Ordinal);

        public bool Failed { get; set; }
    }

    /// <summary>One certificate entry, loaded once to check it; null when it cannot be used.</summary>
    private static CertificateSource? CompileCertificate(CompileContext context, CertificateScan scan, CertificateOptions certificate, string certPath, int i)
    {
        var certificateOk = true;
        void Fail(string at, string message, string? hint = null)
        {
            context.Error(at, message, hint);
            certificateOk = false;
            scan.Failed = true;
        }

        var name = string.IsNullOrWhiteSpace(certificate.Name) ? "cert" + (i + 1).ToString(CultureInfo.InvariantCulture) : certificate.Name;
        if (!scan.Names.TryAdd(name, i))
        {
            Fail(certPath + ".name", $"duplicate certificate name '{name}' (first at certificates[{scan.Names[name]}])", "give each certificate its own name");
        }

        var pem = certificate.Cert is not null;
        var pfx = certificate.Pfx is not null;
        if (pem && pfx)
        {
            Fail(certPath + ".pfx", "a certificate has either `cert` (PEM) or `pfx`, not both", "remove one");
            return null;
        }

        if (!pem && !pfx)
        {
            Fail(certPath, "certificate has neither `cert` nor `pfx`", "add cert: certs/server.pem and key: certs/server.key, or pfx: certs/server.pfx");
            return null;
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

        if (!certificateOk) return null;
        var source = new CertificateSource(
            name,
            certPath,
            certificate.Cert is null ? null : context.Loaded.Resolve(certificate.Cert),
            certificate.Key is null ? null : context.Loaded.Resolve(certificate.Key),
            certificate.Pfx is null ? null : context.Loaded.Resolve(certificate.Pfx),
            certificate.PasswordEnv,
            hosts);

        if (!CertificateLoader.TryLoad(source, context.Environment, scan.Now, out var loaded, out var error))
        {
            Fail(certPath + "." + error!.Key, error.Message, error.Hint);
            return null;
        }

        using (loaded!.Certificate)
        {
            WarnAbout(context, scan, loaded, name, certPath, certPath + "." + (pfx ? "pfx" : "cert"));
        }

        return source;
    }

    /// <summary>Expiry soon, no host to be chosen for, and hosts another certificate serves already.</summary>
    private static void WarnAbout(CompileContext context, CertificateScan scan, LoadedCertificate loaded, string name, string certPath, string at)
    {
        var now = scan.Now;
        if (loaded.NotAfter - now < ExpiryWarning)
        {
            context.Warning(at, $"certificate '{name}' ({loaded.Subject}) expires in {(int)Math.Floor((loaded.NotAfter - now).TotalDays)} day(s), on {CertificateLoader.Format(loaded.NotAfter)}", "renew it; the gateway loads the new file without a restart");
        }

        if (loaded.Hosts.Length == 0 && scan.Count > 1)
        {
            context.Warning(certPath, $"certificate '{name}' names no DNS host (no `hosts`, no DNS subject alternative names); it can only serve as the default", "add hosts: [api.example.com]");
        }

        foreach (var host in loaded.Hosts)
        {
            if (!scan.HostOwners.TryAdd(host, name))
            {
                context.Warning(certPath, $"host '{host}' is served by certificate '{scan.HostOwners[host]}' already; '{name}' is not used for it", "set hosts to pick which certificate serves it");
            }
        }
    }

    private static ClientCertificatePolicy? CompileClientCertificate(CompileContext context, ClientCertificateOptions options, string path, ref bool ok)
    {
        var problems = false;
        void Fail(string at, string message, string? hint = null)
        {
            context.Error(at, message, hint);
            problems = true;
        }

        if (options.Mode == ClientCertificateMode.None)
        {
            if (options.Ca is not null) context.Warning(path + ".ca", "a client CA bundle is given but mode is none: no client certificate is asked for", "set mode: optional or required");
            return null;
        }

        var usages = new List<string>();
        for (var i = 0; i < options.AllowedUsages.Count; i++)
        {
            var usage = options.AllowedUsages[i];
            if (ClientCertificateValidator.UsageNames.TryGetValue(usage, out var oid)) usages.Add(oid);
            else if (IsOid(usage)) usages.Add(usage);
            else Fail($"{path}.allowedUsages[{i}]", $"'{usage}' is not a known extended key usage or an OID", "use clientAuth, serverAuth or a dotted OID such as 1.3.6.1.5.5.7.3.2");
        }

        if (options.AllowedUsages.Count == 0) Fail(path + ".allowedUsages", "allowedUsages is empty: no client certificate with an extended key usage could pass", "e.g. allowedUsages: [clientAuth]");

        for (var i = 0; i < options.Consumer.Count; i++)
        {
            if (!Identity.ClientCertificateIdentity.ClaimNames.Contains(options.Consumer[i]))
            {
                Fail($"{path}.consumer[{i}]", $"'{options.Consumer[i]}' is not a client-certificate claim", "use " + string.Join(", ", Identity.ClientCertificateIdentity.ClaimNames.Order(StringComparer.Ordinal)));
            }
        }

        if (options.Ca is null)
        {
            Fail(path + ".ca", $"clientCertificate mode {options.Mode.ToString().ToLowerInvariant()} needs `ca`, the PEM bundle of trusted client CAs", "add ca: certs/clients-ca.pem");
        }
        else
        {
            var file = context.Loaded.Resolve(options.Ca);
            if (!ClientCaLoader.TryLoad(file, context.Now, out var bundle, out var error, out var hint))
            {
                Fail(path + ".ca", error!, hint);
            }
            else
            {
                var now = context.Now;
                foreach (var ca in bundle!.Certificates)
                {
                    if (ca.NotAfter.ToUniversalTime() - now < ExpiryWarning)
                    {
                        context.Warning(path + ".ca", $"client CA '{ca.Subject}' expires on {CertificateLoader.Format(ca.NotAfter.ToUniversalTime())}", "add its successor to the bundle; the gateway reloads it without a restart");
                    }

                    ca.Dispose();
                }

                if (!problems)
                {
                    if (!ok) return null;
                    return new ClientCertificatePolicy(options.Mode, file, path, options.Revocation, usages, [.. options.Consumer]);
                }
            }
        }

        ok = false;
        return null;
    }

    private static string CompileHsts(CompileContext context, HstsOptions options, string path)
    {
        if (options.MaxAge < TimeSpan.Zero) context.Error(path + ".maxAge", "hsts.maxAge cannot be negative", "e.g. maxAge: 180d; 0s tells browsers to forget the policy");
        if (options.Preload && (!options.IncludeSubDomains || options.MaxAge < TimeSpan.FromDays(365)))
        {
            context.Warning(path + ".preload", "preload lists accept only includeSubDomains: true with maxAge of at least 365d", "set both, or drop preload");
        }

        var value = "max-age=" + ((long)options.MaxAge.TotalSeconds).ToString(CultureInfo.InvariantCulture);
        if (options.IncludeSubDomains) value += "; includeSubDomains";
        if (options.Preload) value += "; preload";
        return value;
    }

    /// <summary>A cleartext listener's redirectToHttps, checked.</summary>
    internal static HttpsRedirect? CompileRedirect(CompileContext context, ListenerOptions listener, string path)
    {
        if (listener.RedirectToHttps is not { } redirect) return null;
        var ok = true;
        if (listener.Tls is not null)
        {
            context.Error(path + ".redirectToHttps", "redirectToHttps is for a cleartext listener; this one has tls", "put redirectToHttps on the plain-HTTP listener (e.g. port 80), or remove it");
            ok = false;
        }

        if (listener.Admin)
        {
            context.Error(path + ".redirectToHttps", "the admin listener cannot redirect to HTTPS", "remove redirectToHttps");
            ok = false;
        }

        if (redirect.Port is < 1 or > 65535)
        {
            context.Error(path + ".redirectToHttps.port", $"port {redirect.Port} is not between 1 and 65535", "e.g. port: 443");
            ok = false;
        }

        if (redirect.Status is not (301 or 308))
        {
            context.Error(path + ".redirectToHttps.status", $"status {redirect.Status} is not 301 or 308", "308 keeps the method and body; 301 only for very old clients");
            ok = false;
        }

        return ok ? new HttpsRedirect(redirect.Port, redirect.Status) : null;
    }

    private static bool IsOid(string text)
    {
        var parts = text.Split('.');
        return parts.Length >= 2 && parts.All(p => p.Length > 0 && p.All(char.IsAsciiDigit));
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
