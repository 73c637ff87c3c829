using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Upstream;

/// <summary>Upstream TLS on 127.0.0.1: custom CA, pins, SNI override, and upstream mTLS with a client certificate rotated live.</summary>
public sealed class UpstreamTlsTests
{
    private static async Task<JsonElement> UpstreamTlsAsync(TestGateway gateway, string cluster)
    {
        var body = await gateway.Admin.GetFromJsonAsync<JsonElement>("/admin/upstream-tls");
        return body.GetProperty("clusters").EnumerateArray().Single(c => c.GetProperty("cluster").GetString() == cluster);
    }

    private static async Task AssertBadGatewayAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.BadGateway, $"{(int)response.StatusCode}: {text}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal("upstream.error", JsonDocument.Parse(text).RootElement.GetProperty("reason").GetString());
    }

    [Fact]
    public async Task Custom_ca_is_trusted_an_unknown_ca_and_a_pin_mismatch_get_502()
    {
        using var ca = TestPki.Ca("upstream CA");
        using var otherCa = TestPki.Ca("some other CA");
        using var serverCertificate = TestPki.Server(ca, "localhost", "127.0.0.1");
        await using var backend = await TlsBackend.StartAsync(serverCertificate);
        var goodPin = TestPki.SpkiPin(serverCertificate);
        using var stranger = TestPki.Server(otherCa, "localhost");
        var wrongPin = TestPki.SpkiPin(stranger);

        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: trusted, match: { pathPrefix: /trusted }, cluster: trusted }
              - { name: untrusted, match: { pathPrefix: /untrusted }, cluster: untrusted }
              - { name: system, match: { pathPrefix: /system }, cluster: system }
              - { name: pinned, match: { pathPrefix: /pinned }, cluster: pinned }
              - { name: mispinned, match: { pathPrefix: /mispinned }, cluster: mispinned }
            clusters:
              trusted: { destinations: ["{{backend.Url}}"], retries: 0, tls: { ca: ca.pem } }
              untrusted: { destinations: ["{{backend.Url}}"], retries: 0, tls: { ca: other-ca.pem } }
              system: { destinations: ["{{backend.Url}}"], retries: 0, tls: { serverName: localhost } }
              pinned: { destinations: ["{{backend.Url}}"], retries: 0, tls: { ca: ca.pem, pin: ["{{wrongPin}}", "{{goodPin}}"] } }
              mispinned: { destinations: ["{{backend.Url}}"], retries: 0, tls: { ca: ca.pem, pin: ["{{wrongPin}}"] } }
            """, new Dictionary<string, string> { ["ca.pem"] = TestPki.Pem(ca), ["other-ca.pem"] = TestPki.Pem(otherCa) });

        Assert.Equal("backend /trusted/x", await gateway.Client.GetStringAsync("/trusted/x"));
        Assert.Equal("backend /pinned", await gateway.Client.GetStringAsync("/pinned"));
        await AssertBadGatewayAsync(await gateway.Client.GetAsync("/untrusted"));
        await AssertBadGatewayAsync(await gateway.Client.GetAsync("/system"));
        await AssertBadGatewayAsync(await gateway.Client.GetAsync("/mispinned"));
        Assert.Equal(2, backend.Requests);

        var untrusted = await UpstreamTlsAsync(gateway, "untrusted");
        Assert.Equal("ca", untrusted.GetProperty("verify").GetString());
        Assert.True(untrusted.GetProperty("handshakeFailures").GetInt64() >= 1);
        Assert.Contains("does not chain to the cluster's CA bundle", untrusted.GetProperty("lastHandshakeFailure").GetProperty("reason").GetString(), StringComparison.Ordinal);
        var mispinned = await UpstreamTlsAsync(gateway, "mispinned");
        Assert.Contains("matches no configured pin", mispinned.GetProperty("lastHandshakeFailure").GetProperty("reason").GetString(), StringComparison.Ordinal);
        Assert.Equal("system", (await UpstreamTlsAsync(gateway, "system")).GetProperty("verify").GetString());
        Assert.Contains(gateway.Logs.Lines, l => l.Contains("Upstream TLS to cluster untrusted", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Server_name_overrides_sni_and_the_verified_name()
    {
        using var ca = TestPki.Ca("upstream CA");
        using var serverCertificate = TestPki.Server(ca, "orders.internal.test");
        await using var backend = await TlsBackend.StartAsync(serverCertificate);

        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: named, match: { pathPrefix: /named }, cluster: named }
              - { name: unnamed, match: { pathPrefix: /unnamed }, cluster: unnamed }
            clusters:
              named: { destinations: ["{{backend.Url}}"], retries: 0, tls: { ca: ca.pem, serverName: orders.internal.test } }
              unnamed: { destinations: ["{{backend.Url}}"], retries: 0, tls: { ca: ca.pem } }
            """, new Dictionary<string, string> { ["ca.pem"] = TestPki.Pem(ca) });

        Assert.Equal("backend /named", await gateway.Client.GetStringAsync("/named"));
        Assert.Contains("orders.internal.test", backend.ServerNames);

        // Without the override the gateway checks the certificate against 127.0.0.1 (and sends no SNI): refused.
        await AssertBadGatewayAsync(await gateway.Client.GetAsync("/unnamed"));
        Assert.Contains("not for the expected name", (await UpstreamTlsAsync(gateway, "unnamed")).GetProperty("lastHandshakeFailure").GetProperty("reason").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Upstream_mtls_presents_the_rotated_client_certificate_on_new_connections_and_keeps_it_when_a_replacement_is_bad()
    {
        using var ca = TestPki.Ca("internal CA");
        using var serverCertificate = TestPki.Server(ca, "localhost", "127.0.0.1");
        using var first = TestPki.Client(ca, "gateway-1");
        using var second = TestPki.Client(ca, "gateway-2");
        using var third = TestPki.Client(ca, "gateway-3");
        await using var backend = await TlsBackend.StartAsync(serverCertificate, requireClientCertificate: true, closeConnections: true);

        await using var gateway = await TestGateway.StartAsync($$"""
            routes:
              - { name: mtls, match: { pathPrefix: /mtls }, cluster: mtls }
              - { name: anonymous, match: { pathPrefix: /anonymous }, cluster: anonymous }
            clusters:
              mtls:
                destinations: ["{{backend.Url}}"]
                retries: 0
                tls: { ca: ca.pem, clientCertificate: { cert: gw.pem, key: gw.key } }
              anonymous: { destinations: ["{{backend.Url}}"], retries: 0, tls: { ca: ca.pem } }
            """, new Dictionary<string, string> { ["ca.pem"] = TestPki.Pem(ca), ["gw.pem"] = TestPki.Pem(first), ["gw.key"] = TestPki.Key(first) });

        Assert.Equal("backend /mtls", await gateway.Client.GetStringAsync("/mtls"));
        Assert.Equal(TestPki.Fingerprint(first), backend.ClientCertificates.Last());

        // A backend that requires a client certificate refuses a cluster without one.
        await AssertBadGatewayAsync(await gateway.Client.GetAsync("/anonymous"));

        var status = (await UpstreamTlsAsync(gateway, "mtls")).GetProperty("clientCertificate");
        Assert.Equal("ok", status.GetProperty("state").GetString());
        Assert.Equal(TestPki.Fingerprint(first), status.GetProperty("fingerprintSha256").GetString());

        // Rotation: key and certificate replaced (each written to a temporary file and renamed over).
        await gateway.WriteFileAsync("gw.key", TestPki.Key(second));
        await gateway.WriteFileAsync("gw.pem", TestPki.Pem(second));
        await Eventually.TrueAsync(async () =>
        {
            using var response = await gateway.Client.GetAsync("/mtls");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            return backend.ClientCertificates.Last() == TestPki.Fingerprint(second);
        }, "the backend never saw the rotated client certificate", context: gateway.LogDump());
        for (var i = 0; i < 5; i++)
        {
            Assert.Equal("backend /mtls", await gateway.Client.GetStringAsync("/mtls"));
            Assert.Equal(TestPki.Fingerprint(second), backend.ClientCertificates.Last());
        }

        Assert.Contains(gateway.Logs.Lines, l => l.Contains("Upstream client certificate of cluster mtls reloaded", StringComparison.Ordinal));

        // A garbage replacement keeps the working certificate and is reported.
        await gateway.WriteFileAsync("gw.pem", "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n");
        await Eventually.TrueAsync(async () => (await UpstreamTlsAsync(gateway, "mtls")).GetProperty("clientCertificate").GetProperty("state").GetString() == "error", "the garbage replacement was not reported", context: gateway.LogDump());
        status = (await UpstreamTlsAsync(gateway, "mtls")).GetProperty("clientCertificate");
        Assert.Equal(TestPki.Fingerprint(second), status.GetProperty("fingerprintSha256").GetString());
        Assert.False(string.IsNullOrEmpty(status.GetProperty("lastError").GetString()));
        Assert.Equal("backend /mtls", await gateway.Client.GetStringAsync("/mtls"));
        Assert.Equal(TestPki.Fingerprint(second), backend.ClientCertificates.Last());

        // So does a certificate whose key does not match.
        await gateway.WriteFileAsync("gw.pem", TestPki.Pem(third));
        await Eventually.TrueAsync(async () => (await UpstreamTlsAsync(gateway, "mtls")).GetProperty("clientCertificate").GetProperty("lastError").GetString() is { } e && e.Contains("private key", StringComparison.Ordinal), "the mismatched key was not reported", context: gateway.LogDump());
        Assert.Equal("backend /mtls", await gateway.Client.GetStringAsync("/mtls"));
        Assert.Equal(TestPki.Fingerprint(second), backend.ClientCertificates.Last());
        Assert.Contains(gateway.Logs.Lines, l => l.Contains("was not replaced", StringComparison.Ordinal));

        // The matching key arrives: the third certificate is presented from then on.
        await gateway.WriteFileAsync("gw.key", TestPki.Key(third));
        await Eventually.TrueAsync(async () =>
        {
            await gateway.Client.GetStringAsync("/mtls");
            return backend.ClientCertificates.Last() == TestPki.Fingerprint(third);
        }, "the third certificate was never presented", context: gateway.LogDump());
        Assert.Equal("ok", (await UpstreamTlsAsync(gateway, "mtls")).GetProperty("clientCertificate").GetProperty("state").GetString());
    }
}
