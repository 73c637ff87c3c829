using System.CommandLine;
using System.Net;
using Portcullis.Configuration;
using Portcullis.Tls;

namespace Portcullis.Cli;

/// <summary>
/// `portcullis certs dev`: a local CA, a server certificate and a client certificate as PEM files, for
/// trying TLS (and later mTLS) without OpenSSL. Exit codes: 0 ok, 1 failure (files exist, cannot write), 2 usage error.
/// </summary>
internal static class CertsCommand
{
    public static Command Create(TextWriter output, TextWriter errors) => Create(output, errors, TimeProvider.System);

    internal static Command Create(TextWriter output, TextWriter errors, TimeProvider time)
    {
        var certs = new Command("certs", "Create certificates for local development.");
        var outDir = new Option<string>("--out", "-o") { Description = "Folder to write the files to.", DefaultValueFactory = _ => "certs" };
        var hosts = new Option<string>("--hosts") { Description = "Names and IP addresses of the server certificate, comma-separated.", DefaultValueFactory = _ => "localhost,127.0.0.1,::1" };
        var force = new Option<bool>("--force") { Description = "Replace files that already exist." };
        var dev = new Command("dev", "Create a local CA, a server certificate (SANs from --hosts) and a client certificate, as PEM files: ca.pem/ca.key, server.pem/server.key, client.pem/client.key.")
        {
            outDir, hosts, force,
        };
        dev.SetAction(result => Dev(result.GetValue(outDir)!, result.GetValue(hosts)!, result.GetValue(force), time, output, errors));
        certs.Subcommands.Add(dev);
        return certs;
    }

    private static int Dev(string directory, string hostList, bool force, TimeProvider time, TextWriter output, TextWriter errors)
    {
        var hosts = hostList.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Distinct(StringComparer.OrdinalIgnoreCase).ToList();
        if (hosts.Count == 0)
        {
            errors.WriteLine("error: --hosts names no host; e.g. --hosts localhost,127.0.0.1");
            return PortcullisCli.Usage;
        }

        foreach (var host in hosts)
        {
            // Digits and dots only is meant as an IPv4 address: 999.1.1.1 or 10.1 must not become a DNS name
            // (or, through IPAddress's lenient forms, some other address).
            if (host.All(c => char.IsAsciiDigit(c) || c == '.') && !IsDottedQuad(host))
            {
                errors.WriteLine($"error: --hosts: '{host}' is not a valid IPv4 address (four numbers 0-255, e.g. 127.0.0.1)");
                return PortcullisCli.Usage;
            }

            if (!IPAddress.TryParse(host, out _) && !TlsCompiler.IsSniName(host.ToLowerInvariant(), out var problem) && host != "localhost")
            {
                errors.WriteLine($"error: --hosts: '{host}' is not a host name or IP address: {problem}");
                return PortcullisCli.Usage;
            }
        }

        var existing = DevCertificates.FileNames.Select(f => Path.Combine(directory, f)).Where(File.Exists).ToList();
        if (existing.Count > 0 && !force)
        {
            errors.WriteLine($"error: {string.Join(", ", existing)} already exist{(existing.Count == 1 ? "s" : "")}; use --force to replace them");
            return PortcullisCli.Invalid;
        }

        try
        {
            DevCertificates.Write(directory, hosts, time.GetUtcNow());
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            errors.WriteLine($"error: cannot write to {directory}: {ex.Message}");
            return PortcullisCli.Invalid;
        }

        output.WriteLine($"Wrote a development CA, a server certificate for {string.Join(", ", hosts)} and a client certificate to {Path.GetFullPath(directory)}:");
        output.WriteLine("  ca.pem, ca.key          the CA (trust ca.pem in clients; keep ca.key private)");
        output.WriteLine("  server.pem, server.key  listener certificate");
        output.WriteLine($"  client.pem, client.key  client certificate (CN={DevCertificates.ClientName}, URI {DevCertificates.ClientUri})");
        output.WriteLine("Use them in a listener:");
        output.WriteLine($"  tls: {{ certificates: [{{ cert: {Path.Combine(directory, "server.pem")}, key: {Path.Combine(directory, "server.key")} }}] }}");
        output.WriteLine($"Try it: curl --cacert {Path.Combine(directory, "ca.pem")} https://{UrlHost(hosts[0])}:8443/");
        return PortcullisCli.Ok;
    }

    private static bool IsDottedQuad(string host)
    {
        var parts = host.Split('.');
        return parts.Length == 4 && parts.All(p => p.Length is > 0 and <= 3 && int.Parse(p, System.Globalization.CultureInfo.InvariantCulture) <= 255);
    }

    // The first of --hosts as a URL host: an IPv6 address in brackets.
    private static string UrlHost(string host) =>
        IPAddress.TryParse(host, out var ip) && ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{host}]" : host;
}
