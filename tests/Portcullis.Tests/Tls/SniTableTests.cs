using System.Security.Authentication;
using Portcullis.Tls;

namespace Portcullis.Tests.Tls;

public sealed class SniTableTests
{
    private static LoadedCertificate Fake(string name, params string[] hosts)
    {
        var now = DateTimeOffset.UtcNow;
        var certificate = DevCertificates.CreateServer(null, ["x.test"], now.AddDays(-1), now.AddDays(1), name);
        return new LoadedCertificate
        {
            Source = new CertificateSource(name, "listeners[0].tls.certificates[0]", "x.pem", null, null, null, hosts),
            Certificate = certificate,
            Context = System.Net.Security.SslStreamCertificateContext.Create(certificate, null, offline: true),
            Hosts = hosts,
            DnsNames = [],
            IpAddresses = [],
            ContentHash = name,
            LoadedAt = now,
        };
    }

    [Fact]
    public void Exact_beats_wildcard_wildcard_covers_one_label_and_unknown_gets_the_default()
    {
        var fallback = Fake("default", "default.test");
        var exact = Fake("exact", "api.example.com");
        var wildcard = Fake("wildcard", "*.example.com");
        var table = new SniTable([fallback, wildcard, exact], fallback, SslProtocols.Tls12 | SslProtocols.Tls13);

        Assert.Same(exact, table.Select("api.example.com"));
        Assert.Same(exact, table.Select("API.Example.COM."));
        Assert.Same(wildcard, table.Select("www.example.com"));
        Assert.Same(fallback, table.Select("a.b.example.com"));
        Assert.Same(fallback, table.Select("example.com"));
        Assert.Same(fallback, table.Select("unknown.test"));
        Assert.Same(fallback, table.Select(null));
        Assert.Same(fallback, table.Select(""));
        Assert.Same(fallback, table.Select("default.test"));
    }

    [Fact]
    public void The_first_certificate_naming_a_host_serves_it()
    {
        var first = Fake("first", "a.test");
        var second = Fake("second", "a.test");
        Assert.Same(first, new SniTable([first, second], second, SslProtocols.Tls13).Select("a.test"));
    }
}
