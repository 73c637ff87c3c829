using Portcullis.Admin;
using Portcullis.Configuration;
using Portcullis.Tls;

namespace Portcullis.Tests.Admin;

/// <summary>
/// admin.auth at build time: an admin listener off loopback without it is refused with the listener's
/// position; tokens come from env or file as hashes only; certificate rules need the admin listener's mTLS.
/// </summary>
public sealed class AdminAuthConfigTests() : ConfigBuildTestBase("portcullis-admin-auth-")
{
    private const string Token = "0123456789abcdef-admin-token";

    private static string Config(string adminAddress, string admin = "", string adminTls = "") => $$"""
        listeners:
          - name: public
            address: 127.0.0.1:8080
          - name: admin
            address: "{{adminAddress}}"
            admin: true
        {{adminTls}}
        routes:
          - { name: all, match: { pathPrefix: / }, respond: { body: ok } }
        {{admin}}
        """;

    private void AssertAtText(ConfigDiagnostic diagnostic, string text, string? onLineWith = null)
    {
        var lines = File.ReadAllLines(ConfigPath);
        var line = Array.FindIndex(lines, l => l.Contains(text, StringComparison.Ordinal) && l.Contains(onLineWith ?? text, StringComparison.Ordinal));
        Assert.True(line >= 0, $"'{text}' is not in the config");
        AssertAt(diagnostic, line + 1, lines[line].IndexOf(text, StringComparison.Ordinal) + 1);
    }

    [Theory]
    [InlineData("0.0.0.0:9901")]
    [InlineData("*:9901")]
    [InlineData("[::]:9901")]
    [InlineData("192.0.2.10:9901")]
    public void An_admin_listener_off_loopback_without_auth_is_an_error_at_its_address(string address)
    {
        var result = Build(Config(address));

        var error = SingleError(result);
        Assert.Contains("reachable from other hosts, and admin.auth is not configured", error.Message, StringComparison.Ordinal);
        Assert.Contains("admin: { auth:", error.Hint, StringComparison.Ordinal);
        AssertAtText(error, "\"" + address + "\"");
    }

    [Theory]
    [InlineData("127.0.0.1:9901")]
    [InlineData("localhost:9901")]
    [InlineData("[::1]:9901")]
    public void A_loopback_admin_listener_needs_no_auth(string address)
    {
        var result = Build(Config(address));

        Assert.True(result.Succeeded, Dump(result));
        Assert.Empty(result.Diagnostics);
        Assert.Null(result.Snapshot!.AdminAuth);
    }

    [Fact]
    public void Tokens_from_env_and_file_compile_to_hashes_and_a_cleartext_public_admin_listener_gets_a_warning()
    {
        _environment["OPS_TOKEN"] = Token;
        WriteFile("secrets/grafana", "grafana-token-0123456789\n");
        var result = Build(Config("0.0.0.0:9901", """
            admin:
              auth:
                tokens:
                  - { name: ops, scope: admin, env: OPS_TOKEN }
                  - { name: grafana, file: secrets/grafana }
            """));

        Assert.True(result.Succeeded, Dump(result));
        var auth = result.Snapshot!.AdminAuth!;
        Assert.Equal(["ops", "grafana"], auth.Tokens.Select(t => t.Name));
        Assert.Equal([AdminScope.Admin, AdminScope.Read], auth.Tokens.Select(t => t.Scope));
        Assert.Equal(AdminAuthenticator.Hash(Token), auth.Tokens[0].Hash);
        Assert.Equal(AdminAuthenticator.Hash("grafana-token-0123456789"), auth.Tokens[1].Hash);
        Assert.Same(auth.Tokens[1], AdminAuthenticator.FindToken(auth.Tokens, "grafana-token-0123456789"));
        Assert.Null(AdminAuthenticator.FindToken(auth.Tokens, "grafana-token-012345678"));
        Assert.Equal(["/healthz", "/readyz"], auth.Open.Order(StringComparer.Ordinal));
        // The token file is watched: replacing it reloads.
        Assert.Contains(Path.Combine(_directory.FullName, "secrets", "grafana"), result.Snapshot.Files);
        var warning = Assert.Single(result.Diagnostics);
        Assert.Equal(DiagnosticSeverity.Warning, warning.Severity);
        Assert.Contains("clear text", warning.Message, StringComparison.Ordinal);
        // The effective config shows where tokens come from, never a token.
        Assert.DoesNotContain(Token, ConfigJson.Serialize(result.Snapshot.Config), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(null, "is not set or empty")]
    [InlineData("", "is not set or empty")]
    [InlineData("short-token", "has 11 characters; it needs 16 to 1024")]
    [InlineData("has a space in the middle", "spaces, control or non-ASCII")]
    public void A_missing_empty_short_or_odd_env_token_is_an_error_at_env(string? value, string message)
    {
        if (value is not null) _environment["OPS_TOKEN"] = value;
        var result = Build(Config("127.0.0.1:9901", """
            admin:
              auth:
                tokens: [{ name: ops, scope: admin, env: OPS_TOKEN }]
            """));

        var error = SingleError(result);
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
        AssertAtText(error, "OPS_TOKEN");
        if (value is { Length: > 0 }) Assert.DoesNotContain(value, error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Token_sources_names_and_open_paths_are_checked_with_positions()
    {
        _environment["A"] = Token;
        var result = Build(Config("127.0.0.1:9901", """
            admin:
              auth:
                tokens:
                  - { name: ops, env: A, file: missing-file }
                  - { name: nosource }
                  - { name: gone, file: missing-file }
                  - { name: ops, env: A }
                open: [/healthz, /admin/config]
            """));

        Assert.False(result.Succeeded);
        AssertAtText(ErrorContaining(result, "has both env and file"), "missing-file }");
        AssertAtText(ErrorContaining(result, "'nosource' has no source"), "{ name: nosource }");
        AssertAtText(ErrorContaining(result, "cannot read admin token file 'missing-file'"), "missing-file", onLineWith: "name: gone");
        Assert.Contains("duplicate admin credential name 'ops'", Dump(result), StringComparison.Ordinal);
        AssertAtText(ErrorContaining(result, "'/admin/config' cannot be open"), "/admin/config");
    }

    [Fact]
    public void Auth_that_accepts_nothing_is_an_error()
    {
        var result = Build(Config("0.0.0.0:9901", """
            admin:
              auth: { open: [/healthz] }
            """));

        var error = SingleError(result);
        Assert.Contains("admin.auth accepts no credential", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Certificate_rules_need_the_admin_listener_to_ask_for_client_certificates()
    {
        var result = Build(Config("127.0.0.1:9901", """
            admin:
              auth:
                clientCertificates: [{ name: ops, scope: admin, claims: [{ claim: cert.cn, is: ops }] }]
            """));

        var error = SingleError(result);
        Assert.Contains("needs an admin listener that asks for client certificates", error.Message, StringComparison.Ordinal);
        AssertAtText(error, "[{ name: ops, scope: admin, claims");
    }

    [Fact]
    public void Certificate_rules_compile_to_the_route_claim_rules_and_reject_unknown_claims_and_empty_rules()
    {
        var now = DateTimeOffset.UtcNow;
        using var server = DevCertificates.CreateServer(null, ["admin.test"], now.AddDays(-1), now.AddDays(90));
        using var ca = DevCertificates.CreateCa("Admin CA", now.AddDays(-1), now.AddDays(365));
        WriteFile("server.pem", DevCertificates.CertificatePem(server));
        WriteFile("server.key", DevCertificates.KeyPem(server));
        WriteFile("ca.pem", DevCertificates.CertificatePem(ca));
        const string tls = """
                tls:
                  certificates: [{ cert: server.pem, key: server.key }]
                  clientCertificate: { mode: required, ca: ca.pem }
            """;

        var good = Build(Config("0.0.0.0:9901", """
            admin:
              auth:
                clientCertificates:
                  - { name: ops, scope: admin, claims: [{ claim: cert.cn, is: ops }] }
                  - { name: dashboards, claims: [{ claim: cert.dns, oneOf: [grafana.corp] }] }
            """, tls));
        Assert.True(good.Succeeded, Dump(good));
        Assert.Empty(good.Diagnostics);
        Assert.Equal(["ops", "dashboards"], good.Snapshot!.AdminAuth!.Certificates.Select(c => c.Name));

        var bad = Build(Config("0.0.0.0:9901", """
            admin:
              auth:
                clientCertificates:
                  - { name: typo, claims: [{ claim: cert.CN, is: ops }] }
                  - { name: anyone }
            """, tls));
        AssertAtText(ErrorContaining(bad, "'cert.CN' is not a client-certificate claim"), "cert.CN");
        AssertAtText(ErrorContaining(bad, "has no claims"), "{ name: anyone }");
    }
}
