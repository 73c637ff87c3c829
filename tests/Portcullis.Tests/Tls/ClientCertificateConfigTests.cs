using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Portcullis.Configuration;
using Portcullis.Identity;
using Portcullis.Tls;

namespace Portcullis.Tests.Tls;

/// <summary>Client mTLS, HSTS and redirect settings are checked at build time with positions; the validator and identity work offline.</summary>
public sealed class ClientCertificateConfigTests() : ConfigBuildTestBase("portcullis-mtls-")
{
    private static readonly DateTimeOffset Now = DateTimeOffset.UtcNow;

    private X509Certificate2 WriteServerAndCa()
    {
        using var server = DevCertificates.CreateServer(null, ["api.test"], Now.AddDays(-1), Now.AddDays(90));
        WriteFile("server.pem", DevCertificates.CertificatePem(server));
        WriteFile("server.key", DevCertificates.KeyPem(server));
        var ca = DevCertificates.CreateCa("Test client CA", Now.AddDays(-1), Now.AddDays(365));
        WriteFile("ca.pem", DevCertificates.CertificatePem(ca));
        return ca;
    }

    private static string Config(string clientCertificate, string extraTls = "", string routes = "  - { name: all, match: { pathPrefix: / }, respond: { body: ok } }", string extraListeners = "") => $$"""
        listeners:
          - name: public
            address: 127.0.0.1:8443
            tls:
              certificates: [{ cert: server.pem, key: server.key }]
              clientCertificate: {{clientCertificate}}
        {{extraTls}}
        {{extraListeners}}
        routes:
        {{routes}}
        """;

    /// <summary>The diagnostic points at <paramref name="text"/> on that line of the config file.</summary>
    private void AssertAtText(ConfigDiagnostic diagnostic, int line, string text)
    {
        var column = File.ReadAllLines(ConfigPath)[line - 1].IndexOf(text, StringComparison.Ordinal) + 1;
        Assert.True(column > 0, $"'{text}' is not on line {line}");
        AssertAt(diagnostic, line, column);
    }

    [Fact]
    public void Required_mode_with_a_ca_bundle_and_hsts_compile()
    {
        using var ca = WriteServerAndCa();
        var result = Build(Config("{ mode: required, ca: ca.pem, revocation: offline, allowedUsages: [clientAuth, 1.2.3.4], consumer: [cert.cn] }",
            "      hsts: { maxAge: 365d, includeSubDomains: true, preload: true }"));

        Assert.True(result.Succeeded, Dump(result));
        var tls = result.Snapshot!.Listeners[0].Tls!;
        var policy = tls.ClientCertificate!;
        Assert.Equal(ClientCertificateMode.Required, policy.Mode);
        Assert.Equal(Path.Combine(_directory.FullName, "ca.pem"), policy.CaFile);
        Assert.Equal(RevocationCheck.Offline, policy.Revocation);
        Assert.Equal(["1.3.6.1.5.5.7.3.2", "1.2.3.4"], policy.AllowedUsages);
        Assert.Equal(["cert.cn"], policy.Consumer);
        Assert.Equal("max-age=31536000; includeSubDomains; preload", tls.Hsts);
    }

    [Fact]
    public void Defaults_are_no_client_certificate_and_no_hsts()
    {
        using var ca = WriteServerAndCa();
        var result = Build(Config("{ mode: none }"));
        Assert.True(result.Succeeded, Dump(result));
        Assert.Null(result.Snapshot!.Listeners[0].Tls!.ClientCertificate);
        Assert.Null(result.Snapshot!.Listeners[0].Tls!.Hsts);
        Assert.Equal(ClientCertificateMode.None, new ClientCertificateOptions().Mode);
        Assert.Equal(TimeSpan.FromDays(180), new HstsOptions().MaxAge);
    }

    [Fact]
    public void Missing_ca_is_an_error_at_the_clientCertificate_key()
    {
        using var ca = WriteServerAndCa();
        var error = SingleError(Build(Config("{ mode: optional }")));
        Assert.Contains("needs `ca`", error.Message, StringComparison.Ordinal);
        AssertAtText(error, 6, "{ mode: optional }");
    }

    [Fact]
    public void Garbage_or_missing_ca_bundle_is_an_error_at_the_ca_value()
    {
        using var ca = WriteServerAndCa();
        WriteFile("garbage.pem", "not a bundle\n");
        var error = SingleError(Build(Config("{ mode: required, ca: garbage.pem }")));
        Assert.Contains("holds no PEM certificate", error.Message, StringComparison.Ordinal);
        AssertAtText(error, 6, "garbage.pem");

        error = SingleError(Build(Config("{ mode: required, ca: nowhere.pem }")));
        Assert.Contains("cannot read", error.Message, StringComparison.Ordinal);
        AssertAtText(error, 6, "nowhere.pem");
    }

    [Fact]
    public void Unknown_usage_and_consumer_claim_are_errors_at_their_items()
    {
        using var ca = WriteServerAndCa();
        var result = Build(Config("{ mode: required, ca: ca.pem, allowedUsages: [clientAuth, bogus], consumer: [cert.uri, sub] }"));
        AssertAtText(ErrorContaining(result, "'bogus' is not a known extended key usage"), 6, "bogus");
        AssertAtText(ErrorContaining(result, "'sub' is not a client-certificate claim"), 6, "sub]");
    }

    [Fact]
    public void A_clientCertificate_route_without_an_mtls_listener_is_an_error_at_the_route_key()
    {
        using var ca = WriteServerAndCa();
        var error = SingleError(Build(Config("{ mode: none }", routes: """
              - name: billing
                match: { pathPrefix: /billing }
                auth: { clientCertificate: true, claims: [{ claim: cert.uri, is: "spiffe://corp/billing" }] }
                respond: { body: ok }
            """)));
        Assert.Contains("no listener asks for client certificates", error.Message, StringComparison.Ordinal);
        AssertAtText(error, 12, "true");

        var ok = Build(Config("{ mode: required, ca: ca.pem }", routes: """
              - name: billing
                match: { pathPrefix: /billing }
                auth: { clientCertificate: true, claims: [{ claim: cert.uri, is: "spiffe://corp/billing" }] }
                respond: { body: ok }
            """));
        Assert.True(ok.Succeeded, Dump(ok));
        Assert.True(ok.Snapshot!.Routes["billing"].Auth!.ClientCertificate);

        var anonymous = Build(Config("{ mode: required, ca: ca.pem }", routes: """
              - name: billing
                match: { pathPrefix: /billing }
                auth: { anonymous: true, clientCertificate: true }
                respond: { body: ok }
            """));
        Assert.Contains("anonymous route cannot also require credentials", SingleError(anonymous).Message, StringComparison.Ordinal);
        var forward = Build(Config("{ mode: required, ca: ca.pem }", routes: """
              - name: billing
                match: { pathPrefix: /billing }
                auth: { apiKey: true, forwardCertificate: "X Cert" }
                respond: { body: ok }
            """));
        AssertAtText(ErrorContaining(forward, "forwardCertificate needs clientCertificate: true"), 12, "\"X Cert\"");
        AssertAtText(ErrorContaining(forward, "'X Cert' is not a header name"), 12, "\"X Cert\"");
    }

    [Fact]
    public void RedirectToHttps_is_for_cleartext_listeners_with_a_valid_port_and_status()
    {
        using var ca = WriteServerAndCa();
        var ok = Build(Config("{ mode: none }", extraListeners: "  - { name: plain, address: 127.0.0.1:8080, redirectToHttps: { port: 8443 } }"));
        Assert.True(ok.Succeeded, Dump(ok));
        Assert.Equal(new HttpsRedirect(8443, 308), ok.Snapshot!.Listeners[1].RedirectToHttps);

        var result = Build(Config("{ mode: none }", extraListeners:
            "  - { name: plain, address: 127.0.0.1:8080, redirectToHttps: { port: 70000, status: 302 } }\n"
            + "  - { name: tls2, address: 127.0.0.1:8444, tls: { certificates: [{ cert: server.pem, key: server.key }] }, redirectToHttps: {} }"));
        AssertAtText(ErrorContaining(result, "port 70000"), 8, "70000");
        AssertAtText(ErrorContaining(result, "status 302"), 8, "302");
        ErrorContaining(result, "redirectToHttps is for a cleartext listener");
    }

    [Fact]
    public void Validator_trusts_only_the_bundle_and_checks_the_usage()
    {
        using var ca = DevCertificates.CreateCa("Trusted CA", Now.AddDays(-60), Now.AddDays(365));
        using var other = DevCertificates.CreateCa("Other CA", Now.AddDays(-1), Now.AddDays(365));
        using var client = DevCertificates.CreateClient(ca, "billing", "spiffe://corp/billing", Now.AddDays(-1), Now.AddDays(30));
        using var stranger = DevCertificates.CreateClient(other, "billing", "spiffe://corp/billing", Now.AddDays(-1), Now.AddDays(30));
        using var server = DevCertificates.CreateServer(ca, ["svc.test"], Now.AddDays(-1), Now.AddDays(30));
        using var expired = DevCertificates.CreateClient(ca, "old", null, Now.AddDays(-30), Now.AddDays(-1));
        var bundle = new ClientCaBundle { File = "ca.pem", Certificates = [ca], ContentHash = "x", LoadedAt = Now };
        var policy = new ClientCertificatePolicy(ClientCertificateMode.Required, "ca.pem", "listeners[0].tls.clientCertificate", RevocationCheck.None, ["1.3.6.1.5.5.7.3.2"], ["cert.uri", "cert.cn"]);
        var validator = new ClientCertificateValidator("public", policy, bundle, new FakeTimeProvider(Now));

        Assert.True(validator.Check(client, null, out var problem), problem);
        Assert.False(validator.Check(stranger, null, out problem));
        Assert.Contains("not issued by a trusted CA", problem, StringComparison.Ordinal);
        Assert.False(validator.Check(server, null, out problem));
        Assert.Contains("extended key usage allows none of clientAuth", problem, StringComparison.Ordinal);
        Assert.False(validator.Check(expired, null, out problem));
        Assert.Contains("expired or not yet valid", problem, StringComparison.Ordinal);

        // A rotated bundle trusts the new CA only.
        validator.Bundle = new ClientCaBundle { File = "ca.pem", Certificates = [other], ContentHash = "y", LoadedAt = Now };
        Assert.True(validator.Check(stranger, null, out problem), problem);
        Assert.False(validator.Check(client, null, out _));
    }

    [Fact]
    public void Identity_has_certificate_claims_and_the_consumer_from_the_first_uri_san_else_cn()
    {
        using var ca = DevCertificates.CreateCa("Trusted CA", Now.AddDays(-1), Now.AddDays(365));
        using var client = DevCertificates.CreateClient(ca, "billing", "spiffe://corp/billing", Now.AddDays(-1), Now.AddDays(30));
        using var plain = DevCertificates.CreateClient(ca, "reports", null, Now.AddDays(-1), Now.AddDays(30));

        var identity = ClientCertificateIdentity.Create(client, "public", ["cert.uri", "cert.cn"]);
        Assert.Equal(CredentialKind.ClientCertificate, identity.Kind);
        Assert.Equal("spiffe://corp/billing", identity.Consumer);
        Assert.Equal("CN=billing", identity.Subject);
        Assert.Equal(["spiffe://corp/billing"], identity.Claims["cert.uri"]);
        Assert.Equal(["billing"], identity.Claims["cert.cn"]);
        Assert.Equal(["CN=Trusted CA"], identity.Claims["cert.issuer"]);
        Assert.Equal(Convert.ToHexStringLower(client.GetCertHash(System.Security.Cryptography.HashAlgorithmName.SHA256)), identity.Claims["cert.fingerprint"][0]);
        Assert.Equal(client.NotAfter.ToUniversalTime(), identity.Expires);
        Assert.Equal("reports", ClientCertificateIdentity.Create(plain, "public", ["cert.uri", "cert.cn"]).Consumer);

        using var server = DevCertificates.CreateServer(ca, ["a.test", "b.test"], Now.AddDays(-1), Now.AddDays(30));
        Assert.Equal(["a.test", "b.test"], ClientCertificateIdentity.Claims(server)["cert.dns"]);

        // The existing claim rules apply to certificate claims.
        var rule = new ClaimRule { All = [new ClaimRule { Claim = "cert.uri", Is = "spiffe://corp/billing" }] };
        Assert.True(rule.Evaluate(identity));
        Assert.False(rule.Evaluate(ClientCertificateIdentity.Create(plain, "public", ["cert.uri", "cert.cn"])));
    }

    [Fact]
    public void Store_keeps_the_ca_bundle_when_a_replacement_fails_and_swaps_a_good_one()
    {
        using var ca = WriteServerAndCa();
        var snapshot = Build(Config("{ mode: required, ca: ca.pem }")).Snapshot!;
        using var store = new CertificateStore(snapshot.Listeners, _ => null, new FakeTimeProvider(Now), NullLogger<CertificateStore>.Instance, watch: false);
        var slot = store.For("public")!.ClientCa!;
        Assert.Equal("CN=Test client CA", slot.Validator.Bundle.Certificates[0].Subject);

        WriteFile("ca.pem", "garbage\n");
        File.SetLastWriteTimeUtc(Path.Combine(_directory.FullName, "ca.pem"), DateTime.UtcNow.AddSeconds(5));
        store.Refresh();
        Assert.Equal("CN=Test client CA", slot.Validator.Bundle.Certificates[0].Subject);
        Assert.Contains("holds no PEM certificate", slot.LastError, StringComparison.Ordinal);

        using var next = DevCertificates.CreateCa("Next client CA", Now.AddDays(-1), Now.AddDays(365));
        WriteFile("ca.pem", DevCertificates.CertificatePem(next) + DevCertificates.CertificatePem(ca));
        File.SetLastWriteTimeUtc(Path.Combine(_directory.FullName, "ca.pem"), DateTime.UtcNow.AddSeconds(10));
        store.Refresh();
        Assert.Null(slot.LastError);
        Assert.Equal(["CN=Next client CA", "CN=Test client CA"], slot.Validator.Bundle.Subjects);
    }
}
