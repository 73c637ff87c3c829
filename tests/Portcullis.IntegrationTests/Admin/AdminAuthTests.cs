using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using Portcullis.Cli;
using Portcullis.Configuration;
using Portcullis.IntegrationTests.Infrastructure;
using Portcullis.Tls;

// These tests talk to a gateway serving a certificate from a throwaway test CA (or self-signed); what they check
// is the gateway's side of the handshake, so the client accepts any server certificate on purpose.
#pragma warning disable CA5359
namespace Portcullis.IntegrationTests.Admin;

/// <summary>
/// admin.auth through the real gateway on 127.0.0.1: bearer tokens with read and admin scopes, rotation by
/// a second token and by replacing a token file, client certificates over real mTLS, the audit trail of
/// who did what, open health paths, and the refusal of an unauthenticated admin listener off loopback.
/// </summary>
public sealed class AdminAuthTests : IDisposable
{
    private const string OpsToken = "ops-token-5f1c0d9e8b7a6f5e4d3c";
    private const string OpsNextToken = "ops-next-token-0a1b2c3d4e5f6a7b";
    private const string GrafanaToken = "grafana-token-9a8b7c6d5e4f3a2b";

    private static readonly DateTimeOffset Now = DateTimeOffset.UtcNow;

    private readonly string _directory = Directory.CreateTempSubdirectory("portcullis-admin-auth-").FullName;

    public void Dispose()
    {
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private string AuditPath => Path.Combine(_directory, "audit.log");

    private static Func<string, string?> Environment(params (string Name, string Value)[] variables) =>
        name => variables.FirstOrDefault(v => v.Name == name).Value;

    /// <summary>A gateway config with <paramref name="admin"/> (the lines under `admin:`) and, when asked, the audit log.</summary>
    private string Config(string admin, bool audit = false) => $$"""
        routes:
          - { name: all, match: { pathPrefix: / }, cluster: api }
        clusters:
          api: { destinations: [{ name: a, address: "http://127.0.0.1:9" }] }
        {{(audit ? $"observability:\n  audit: {{ path: {AuditPath} }}" : "")}}
        admin:
        {{admin}}
        """;

    private const string TokenAuth = """
          auth:
            tokens:
              - { name: ops, scope: admin, env: OPS_TOKEN }
              - { name: grafana, scope: read, env: GRAFANA_TOKEN }
        """;

    private static async Task<HttpResponseMessage> SendAsync(TestGateway gateway, HttpMethod method, string path, string? token = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (token is not null) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return await gateway.Admin.SendAsync(request);
    }

    private static async Task AssertProblemAsync(HttpResponseMessage response, HttpStatusCode status, string reason)
    {
        Assert.Equal(status, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal(reason, problem.GetProperty("reason").GetString());
        Assert.Equal((int)status, problem.GetProperty("status").GetInt32());
    }

    [Fact]
    public async Task Without_a_valid_token_the_admin_api_answers_401_and_healthz_and_readyz_stay_open()
    {
        await using var gateway = await TestGateway.StartAsync(Config(TokenAuth), environment: Environment(("OPS_TOKEN", OpsToken), ("GRAFANA_TOKEN", GrafanaToken)));

        using (var missing = await SendAsync(gateway, HttpMethod.Get, "/admin/config"))
        {
            await AssertProblemAsync(missing, HttpStatusCode.Unauthorized, "admin.unauthenticated");
            Assert.Equal("Bearer realm=\"portcullis-admin\"", missing.Headers.WwwAuthenticate.ToString());
        }

        using (var wrong = await SendAsync(gateway, HttpMethod.Post, "/admin/reload", OpsToken + "x"))
        {
            await AssertProblemAsync(wrong, HttpStatusCode.Unauthorized, "admin.token-invalid");
            Assert.Equal("Bearer realm=\"portcullis-admin\", error=\"invalid_token\"", wrong.Headers.WwwAuthenticate.ToString());
        }

        // An unknown path tells an anonymous caller nothing either.
        using (var unknown = await SendAsync(gateway, HttpMethod.Get, "/admin/nothing-here")) await AssertProblemAsync(unknown, HttpStatusCode.Unauthorized, "admin.unauthenticated");
        using (var basic = await gateway.Admin.SendAsync(new HttpRequestMessage(HttpMethod.Get, "/admin/config") { Headers = { Authorization = new AuthenticationHeaderValue("Basic", "b3BzOg==") } }))
        {
            await AssertProblemAsync(basic, HttpStatusCode.Unauthorized, "admin.token-invalid");
        }

        using (var health = await SendAsync(gateway, HttpMethod.Get, "/healthz")) Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        using (var ready = await SendAsync(gateway, HttpMethod.Get, "/readyz")) Assert.Equal(HttpStatusCode.OK, ready.StatusCode);

        // Metrics need the read scope (Prometheus sends bearer tokens) unless listed open.
        using (var scrape = await SendAsync(gateway, HttpMethod.Get, "/metrics")) await AssertProblemAsync(scrape, HttpStatusCode.Unauthorized, "admin.unauthenticated");
        using (var scrape = await SendAsync(gateway, HttpMethod.Get, "/metrics", GrafanaToken))
        {
            Assert.Equal(HttpStatusCode.OK, scrape.StatusCode);
            Assert.StartsWith("text/plain", scrape.Content.Headers.ContentType?.MediaType, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task The_open_list_decides_which_paths_need_no_credential()
    {
        await using var gateway = await TestGateway.StartAsync(Config(TokenAuth + "\n    open: [/metrics]"), environment: Environment(("OPS_TOKEN", OpsToken), ("GRAFANA_TOKEN", GrafanaToken)));

        using (var scrape = await SendAsync(gateway, HttpMethod.Get, "/metrics")) Assert.Equal(HttpStatusCode.OK, scrape.StatusCode);
        using (var health = await SendAsync(gateway, HttpMethod.Get, "/healthz")) await AssertProblemAsync(health, HttpStatusCode.Unauthorized, "admin.unauthenticated");
        using (var ready = await SendAsync(gateway, HttpMethod.Get, "/readyz", GrafanaToken)) Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        // Open means GET and HEAD only.
        using (var post = await SendAsync(gateway, HttpMethod.Post, "/metrics")) await AssertProblemAsync(post, HttpStatusCode.Unauthorized, "admin.unauthenticated");
    }

    [Fact]
    public async Task A_read_token_may_GET_but_not_POST_and_an_admin_token_may_reload_and_drain()
    {
        await using var gateway = await TestGateway.StartAsync(Config(TokenAuth), environment: Environment(("OPS_TOKEN", OpsToken), ("GRAFANA_TOKEN", GrafanaToken)));

        using (var read = await SendAsync(gateway, HttpMethod.Get, "/admin/clusters", GrafanaToken)) Assert.Equal(HttpStatusCode.OK, read.StatusCode);
        using (var head = await SendAsync(gateway, HttpMethod.Head, "/admin/config", GrafanaToken)) Assert.Equal(HttpStatusCode.OK, head.StatusCode);
        using (var reload = await SendAsync(gateway, HttpMethod.Post, "/admin/reload", GrafanaToken))
        {
            await AssertProblemAsync(reload, HttpStatusCode.Forbidden, "admin.scope-insufficient");
            Assert.Equal("Bearer realm=\"portcullis-admin\", error=\"insufficient_scope\", scope=\"admin\"", reload.Headers.WwwAuthenticate.ToString());
        }

        using (var drain = await SendAsync(gateway, HttpMethod.Post, "/admin/clusters/api/destinations/a/drain", GrafanaToken)) await AssertProblemAsync(drain, HttpStatusCode.Forbidden, "admin.scope-insufficient");
        var clusters = await (await SendAsync(gateway, HttpMethod.Get, "/admin/clusters", OpsToken)).Content.ReadFromJsonAsync<JsonElement>();
        Assert.False(clusters.GetProperty("clusters")[0].GetProperty("destinations")[0].GetProperty("drained").GetBoolean());

        using (var reload = await SendAsync(gateway, HttpMethod.Post, "/admin/reload", OpsToken))
        {
            Assert.Equal(HttpStatusCode.OK, reload.StatusCode);
            Assert.True((await reload.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("applied").GetBoolean());
        }

        using (var drain = await SendAsync(gateway, HttpMethod.Post, "/admin/clusters/api/destinations/a/drain", OpsToken)) Assert.Equal(HttpStatusCode.OK, drain.StatusCode);
    }

    [Fact]
    public async Task Two_tokens_work_side_by_side_and_replacing_a_token_file_retires_the_old_token()
    {
        const string auth = """
              auth:
                tokens:
                  - { name: ops-env, scope: admin, env: OPS_TOKEN }
                  - { name: ops-file, scope: admin, file: ops-token }
            """;
        await using var gateway = await TestGateway.StartAsync(Config(auth), new Dictionary<string, string> { ["ops-token"] = OpsNextToken + "\n" },
            environment: Environment(("OPS_TOKEN", OpsToken)));

        foreach (var token in new[] { OpsToken, OpsNextToken })
        {
            using var reload = await SendAsync(gateway, HttpMethod.Post, "/admin/reload", token);
            Assert.Equal(HttpStatusCode.OK, reload.StatusCode);
        }

        // Rotate the file's token: the watched file reloads the config, the new token works, the old one is refused.
        const string rotated = "ops-rotated-token-77e6d5c4b3a29180";
        var generation = gateway.Generation;
        await gateway.WriteFileAsync("ops-token", rotated + "\n");
        await gateway.WaitForGenerationAsync(generation);

        using (var fresh = await SendAsync(gateway, HttpMethod.Get, "/admin/config", rotated)) Assert.Equal(HttpStatusCode.OK, fresh.StatusCode);
        using (var old = await SendAsync(gateway, HttpMethod.Get, "/admin/config", OpsNextToken)) await AssertProblemAsync(old, HttpStatusCode.Unauthorized, "admin.token-invalid");
        using (var other = await SendAsync(gateway, HttpMethod.Get, "/admin/config", OpsToken)) Assert.Equal(HttpStatusCode.OK, other.StatusCode);
    }

    [Fact]
    public async Task Admin_actions_and_denials_are_audited_with_their_actor_and_no_token_is_shown_or_logged()
    {
        await using (var gateway = await TestGateway.StartAsync(Config(TokenAuth, audit: true), environment: Environment(("OPS_TOKEN", OpsToken), ("GRAFANA_TOKEN", GrafanaToken))))
        {
            using (var reload = await SendAsync(gateway, HttpMethod.Post, "/admin/reload", OpsToken)) Assert.Equal(HttpStatusCode.OK, reload.StatusCode);
            using (var drain = await SendAsync(gateway, HttpMethod.Post, "/admin/clusters/api/destinations/a/drain", OpsToken)) Assert.Equal(HttpStatusCode.OK, drain.StatusCode);
            using (var undrain = await SendAsync(gateway, HttpMethod.Post, "/admin/clusters/api/destinations/a/undrain", OpsToken)) Assert.Equal(HttpStatusCode.OK, undrain.StatusCode);
            using (var denied = await SendAsync(gateway, HttpMethod.Post, "/admin/reload", GrafanaToken)) Assert.Equal(HttpStatusCode.Forbidden, denied.StatusCode);
            using (var bad = await SendAsync(gateway, HttpMethod.Post, "/admin/clusters/api/destinations/a/drain", "not-a-token-at-all")) Assert.Equal(HttpStatusCode.Unauthorized, bad.StatusCode);
            using (var none = await SendAsync(gateway, HttpMethod.Get, "/admin/config")) Assert.Equal(HttpStatusCode.Unauthorized, none.StatusCode);

            // The effective config names where tokens come from, never a token.
            var config = await (await SendAsync(gateway, HttpMethod.Get, "/admin/config", GrafanaToken)).Content.ReadAsStringAsync();
            Assert.Contains("GRAFANA_TOKEN", config, StringComparison.Ordinal);
            Assert.DoesNotContain(OpsToken, config, StringComparison.Ordinal);
            Assert.DoesNotContain(GrafanaToken, config, StringComparison.Ordinal);

            var records = await AuditRecordsAsync(r => r.Count(x => Type(x) == "admin.denied") == 3 && r.Any(x => Type(x) == "admin.undrain"));
            var reloadRecord = records.Single(r => Type(r) == "admin.reload");
            Assert.Equal("token:ops", reloadRecord.GetProperty("actor").GetString());
            Assert.Equal("127.0.0.1", reloadRecord.GetProperty("clientIp").GetString());
            Assert.Equal("token:ops", records.Single(r => Type(r) == "admin.drain").GetProperty("actor").GetString());
            Assert.Equal("token:ops", records.Single(r => Type(r) == "admin.undrain").GetProperty("actor").GetString());

            var denials = records.Where(r => Type(r) == "admin.denied").ToList();
            var scope = denials.Single(r => r.GetProperty("reason").GetString() == "admin.scope-insufficient");
            Assert.Equal("token:grafana", scope.GetProperty("actor").GetString());
            Assert.Equal("POST", scope.GetProperty("method").GetString());
            Assert.Equal("/admin/reload", scope.GetProperty("path").GetString());
            Assert.Equal(403, scope.GetProperty("status").GetInt32());
            Assert.Equal("127.0.0.1", scope.GetProperty("clientIp").GetString());
            Assert.Equal("token:unknown", denials.Single(r => r.GetProperty("reason").GetString() == "admin.token-invalid").GetProperty("actor").GetString());
            Assert.Equal("anonymous", denials.Single(r => r.GetProperty("reason").GetString() == "admin.unauthenticated").GetProperty("actor").GetString());

            foreach (var secret in new[] { OpsToken, GrafanaToken, "not-a-token-at-all" })
            {
                Assert.DoesNotContain(secret, gateway.Logs.ToString(), StringComparison.Ordinal);
            }
        }

        var text = await File.ReadAllTextAsync(AuditPath);
        foreach (var secret in new[] { OpsToken, GrafanaToken, "not-a-token-at-all" }) Assert.DoesNotContain(secret, text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Client_certificates_over_mtls_are_allowed_by_their_rule_and_scope_and_audited_with_their_subject()
    {
        using var ca = DevCertificates.CreateCa("Admin CA", Now.AddDays(-1), Now.AddDays(365));
        using var server = DevCertificates.CreateServer(null, ["admin.test"], Now.AddDays(-1), Now.AddDays(60));
        using var ops = DevCertificates.CreateClient(ca, "ops", "spiffe://corp/ops", Now.AddDays(-1), Now.AddDays(30));
        using var viewer = DevCertificates.CreateClient(ca, "viewer", null, Now.AddDays(-1), Now.AddDays(30));
        using var intruder = DevCertificates.CreateClient(ca, "intruder", null, Now.AddDays(-1), Now.AddDays(30));
        var files = new Dictionary<string, string>
        {
            ["server.pem"] = DevCertificates.CertificatePem(server),
            ["server.key"] = DevCertificates.KeyPem(server),
            ["ca.pem"] = DevCertificates.CertificatePem(ca),
        };
        var rest = Config("""
              auth:
                clientCertificates:
                  - { name: oncall, scope: admin, claims: [{ claim: cert.uri, is: "spiffe://corp/ops" }] }
                  - { name: viewers, claims: [{ claim: cert.cn, oneOf: [viewer, ops] }] }
            """, audit: true);
        var yaml = """
            listeners:
              - { name: public, address: "127.0.0.1:{{PORT}}" }
              - name: admin
                address: "127.0.0.1:{{ADMIN_PORT}}"
                admin: true
                tls:
                  certificates: [{ cert: server.pem, key: server.key }]
                  clientCertificate: { mode: optional, ca: ca.pem }

            """ + rest;
        await using var gateway = await TestGateway.StartAsync(yaml, files);

        using (var none = await SendTlsAsync(gateway.AdminPort, null, HttpMethod.Get, "/admin/config")) await AssertProblemAsync(none, HttpStatusCode.Unauthorized, "admin.unauthenticated");
        using (var health = await SendTlsAsync(gateway.AdminPort, null, HttpMethod.Get, "/healthz")) Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        using (var stranger = await SendTlsAsync(gateway.AdminPort, intruder, HttpMethod.Get, "/admin/config")) await AssertProblemAsync(stranger, HttpStatusCode.Forbidden, "admin.certificate-not-allowed");
        using (var read = await SendTlsAsync(gateway.AdminPort, viewer, HttpMethod.Get, "/admin/config")) Assert.Equal(HttpStatusCode.OK, read.StatusCode);
        using (var write = await SendTlsAsync(gateway.AdminPort, viewer, HttpMethod.Post, "/admin/reload")) await AssertProblemAsync(write, HttpStatusCode.Forbidden, "admin.scope-insufficient");
        // ops matches both rules: the wider scope applies.
        using (var reload = await SendTlsAsync(gateway.AdminPort, ops, HttpMethod.Post, "/admin/reload")) Assert.Equal(HttpStatusCode.OK, reload.StatusCode);

        var records = await AuditRecordsAsync(r => r.Any(x => Type(x) == "admin.reload") && r.Count(x => Type(x) == "admin.denied") == 3);
        var reloadRecord = records.Single(r => Type(r) == "admin.reload");
        Assert.Equal("cert:oncall", reloadRecord.GetProperty("actor").GetString());
        Assert.Equal("CN=ops", reloadRecord.GetProperty("subject").GetString());
        var refused = records.Single(r => Type(r) == "admin.denied" && r.GetProperty("reason").GetString() == "admin.certificate-not-allowed");
        Assert.Equal("CN=intruder", refused.GetProperty("subject").GetString());
        var narrow = records.Single(r => Type(r) == "admin.denied" && r.GetProperty("reason").GetString() == "admin.scope-insufficient");
        Assert.Equal("cert:viewers", narrow.GetProperty("actor").GetString());
    }

    [Fact]
    public async Task An_admin_listener_on_all_interfaces_needs_auth_to_start_and_then_answers_only_with_a_token()
    {
        var unauthenticated = """
            listeners:
              - { name: public, address: "127.0.0.1:{{PORT}}" }
              - { name: admin, address: "0.0.0.0:{{ADMIN_PORT}}", admin: true }
            routes:
              - { name: all, match: { pathPrefix: / }, respond: { body: ok } }
            """;
        var refused = await Assert.ThrowsAsync<ConfigException>(() => TestGateway.StartAsync(unauthenticated));
        Assert.Contains(refused.Diagnostics, d => d.Line == 3 && d.Message.Contains("admin.auth is not configured", StringComparison.Ordinal));

        await using var gateway = await TestGateway.StartAsync(unauthenticated + "\nadmin:\n" + TokenAuth, environment: Environment(("OPS_TOKEN", OpsToken), ("GRAFANA_TOKEN", GrafanaToken)));
        using (var none = await SendAsync(gateway, HttpMethod.Get, "/admin/config")) await AssertProblemAsync(none, HttpStatusCode.Unauthorized, "admin.unauthenticated");
        using (var ok = await SendAsync(gateway, HttpMethod.Get, "/admin/config", GrafanaToken)) Assert.Equal(HttpStatusCode.OK, ok.StatusCode);

        // A reload cannot drop admin.auth while the listener stays on 0.0.0.0 ...
        var generation = gateway.Generation;
        await gateway.WriteConfigAsync(unauthenticated.Replace("body: ok", "body: changed", StringComparison.Ordinal));
        using (var rejected = await SendAsync(gateway, HttpMethod.Post, "/admin/reload", OpsToken)) Assert.Equal(HttpStatusCode.UnprocessableEntity, rejected.StatusCode);
        Assert.Equal(generation, gateway.Generation);

        // ... and moving the listener to loopback takes a restart: until then the running 0.0.0.0 listener
        // keeps refusing everything but the health paths.
        await gateway.WriteConfigAsync(unauthenticated.Replace("0.0.0.0:", "127.0.0.1:", StringComparison.Ordinal));
        await gateway.WaitForGenerationAsync(generation);
        using (var closed = await SendAsync(gateway, HttpMethod.Get, "/admin/config")) await AssertProblemAsync(closed, HttpStatusCode.Forbidden, "admin.auth-not-configured");
        using (var health = await SendAsync(gateway, HttpMethod.Get, "/healthz")) Assert.Equal(HttpStatusCode.OK, health.StatusCode);
    }

    [Fact]
    public async Task Validate_refuses_an_unauthenticated_admin_listener_off_loopback_with_its_position()
    {
        var path = Path.Combine(_directory, "public-admin.yaml");
        await File.WriteAllTextAsync(path, """
            listeners:
              - { name: public, address: "127.0.0.1:18080" }
              - name: admin
                address: "[::]:19901"
                admin: true
            routes:
              - { name: all, match: { pathPrefix: / }, respond: { body: ok } }
            """);
        using var output = new StringWriter();
        using var errors = new StringWriter();

        var code = await PortcullisCli.RunAsync(["validate", "-c", path], output, errors);

        Assert.Equal(1, code);
        Assert.Contains($"{path}:4:14: error: the admin listener on [::]:19901 is reachable from other hosts, and admin.auth is not configured", errors.ToString() + output, StringComparison.Ordinal);
        Assert.Contains("hint: bind it to loopback", errors.ToString() + output, StringComparison.Ordinal);
    }

    /// <summary>One request over a new TLS connection presenting <paramref name="certificate"/> (or none).</summary>
    private static async Task<HttpResponseMessage> SendTlsAsync(int port, X509Certificate2? certificate, HttpMethod method, string path)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                await socket.ConnectAsync(IPAddress.Loopback, port, ct);
                return new NetworkStream(socket, ownsSocket: true);
            },
            SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, _, _, _) => true,
                LocalCertificateSelectionCallback = certificate is null ? null : (_, _, _, _, _) => certificate,
            },
        };
        using var client = new HttpClient(handler) { BaseAddress = new Uri($"https://admin.test:{port}"), Timeout = TimeSpan.FromSeconds(10) };
        using var request = new HttpRequestMessage(method, path);
        var response = await client.SendAsync(request);
        await response.Content.LoadIntoBufferAsync();
        return response;
    }

    private static string? Type(JsonElement record) => record.GetProperty("type").GetString();

    private async Task<List<JsonElement>> AuditRecordsAsync(Func<List<JsonElement>, bool> until)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
        while (true)
        {
            var records = new List<JsonElement>();
            try
            {
                await using var stream = new FileStream(AuditPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                using var reader = new StreamReader(stream);
                foreach (var line in (await reader.ReadToEndAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries)) records.Add(JsonDocument.Parse(line).RootElement.Clone());
            }
            catch (IOException)
            {
                // Not written yet, or held for a moment by the writer.
            }

            if (until(records)) return records;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"audit records did not arrive:\n{string.Join('\n', records)}");
            await Task.Delay(20);
        }
    }
}
