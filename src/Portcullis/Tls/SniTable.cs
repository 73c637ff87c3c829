using System.Collections.Frozen;
using System.Security.Authentication;

namespace Portcullis.Tls;

/// <summary>
/// A listener's certificates by SNI name, immutable: built off the handshake path and swapped whole.
/// Exact names beat wildcards (`*.example.com` covers one label: a.example.com, not a.b.example.com);
/// an unknown or missing name gets the default.
/// </summary>
internal sealed class SniTable
{
    private readonly FrozenDictionary<string, LoadedCertificate>.AlternateLookup<ReadOnlySpan<char>> _exact;
    private readonly FrozenDictionary<string, LoadedCertificate>.AlternateLookup<ReadOnlySpan<char>> _wildcard;

    public SniTable(IEnumerable<LoadedCertificate> certificates, LoadedCertificate defaultCertificate, SslProtocols protocols)
    {
        var exact = new Dictionary<string, LoadedCertificate>(StringComparer.OrdinalIgnoreCase);
        var wildcard = new Dictionary<string, LoadedCertificate>(StringComparer.OrdinalIgnoreCase);
        foreach (var certificate in certificates)
        {
            foreach (var host in certificate.Hosts)
            {
                // The first certificate naming a host serves it.
                if (host.StartsWith("*.", StringComparison.Ordinal)) wildcard.TryAdd(host[2..], certificate);
                else exact.TryAdd(host, certificate);
            }
        }

        _exact = exact.ToFrozenDictionary(StringComparer.OrdinalIgnoreCase).GetAlternateLookup<ReadOnlySpan<char>>();
        _wildcard = wildcard.ToFrozenDictionary(StringComparer.OrdinalIgnoreCase).GetAlternateLookup<ReadOnlySpan<char>>();
        Default = defaultCertificate;
        Protocols = protocols;
    }

    public LoadedCertificate Default { get; }

    public SslProtocols Protocols { get; }

    /// <summary>Allocation-free: the certificate for an SNI name.</summary>
    public LoadedCertificate Select(string? serverName)
    {
        if (string.IsNullOrEmpty(serverName)) return Default;
        var name = serverName.AsSpan().TrimEnd('.');
        if (_exact.TryGetValue(name, out var certificate)) return certificate;
        var dot = name.IndexOf('.');
        if (dot > 0 && _wildcard.TryGetValue(name[(dot + 1)..], out certificate)) return certificate;
        return Default;
    }
}
