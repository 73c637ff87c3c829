using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Portcullis.Cli;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Observability;

/// <summary>
/// The hash-chained audit log through a real gateway: denials (no secrets), an admin reload with a
/// config change, a drain, a CLI key rotation into the same file, and the chain across a restart.
/// </summary>
public sealed class AuditLogTests : IAsyncLifetime
{
    private const string BearerToken = "bearer-secret-9f8e7d6c5b4a";
    private const string WrongKey = "pk_wrong_secret_0123456789abcdef";

    private readonly string _directory = Directory.CreateTempSubdirectory("portcullis-audit-").FullName;
    private TestUpstream _upstream = null!;
    private string _keysFile = null!;
    private string _apiKey = null!;

    private string AuditPath => Path.Combine(_directory, "audit.log");

    public async Task InitializeAsync()
    {
        _upstream = await TestUpstream.StartAsync("api");
        _keysFile = Path.Combine(_directory, "keys.yaml");
        await File.WriteAllTextAsync(_keysFile, "consumers: {}\n");
        using var output = new StringWriter();
        using var errors = new StringWriter();
        Assert.Equal(0, await PortcullisCli.RunAsync(["keys", "create", "--file", _keysFile, "--consumer", "shop"], output, errors));
        _apiKey = output.ToString().Split('\n').Select(l => l.TrimEnd('\r')).Single(l => l.StartsWith("key: ", StringComparison.Ordinal))[5..];
    }

    public async Task DisposeAsync()
    {
        await _upstream.DisposeAsync();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private string Config(string extraRoute = "") => $$"""
        identity:
          apiKeys: { file: {{_keysFile}} }
        routes:
          - { name: keyed, match: { pathPrefix: /keyed }, auth: { apiKey: true }, cluster: api }
          - { name: others, match: { pathPrefix: /others }, auth: { apiKey: true, consumers: [someone-else] }, cluster: api }
        {{extraRoute}}
        clusters:
          api: { destinations: [{ name: a, address: "{{_upstream.Url}}" }] }
        observability:
          audit: { path: {{AuditPath}} }
        """;

    private static async Task<List<JsonElement>> RecordsAsync(string path, Func<List<JsonElement>, bool> until)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            var records = new List<JsonElement>();
            if (File.Exists(path))
            {
                string text;
                try
                {
                    using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                    using var reader = new StreamReader(stream);
                    text = await reader.ReadToEndAsync();
                }
                catch (IOException)
                {
                    // The writer holds the file for a moment (appends take it exclusively).
                    await Task.Delay(10);
                    continue;
                }

                foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries)) records.Add(JsonDocument.Parse(line).RootElement.Clone());
            }

            if (until(records)) return records;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"audit records did not arrive in {path}:\n{string.Join('\n', records)}");
            await Task.Delay(20);
        }
    }

    private static int Count(List<JsonElement> records, string type) => records.Count(r => r.GetProperty("type").GetString() == type);

    private static async Task<(int Code, string Output, string Errors)> VerifyAsync(params string[] files)
    {
        using var output = new StringWriter();
        using var errors = new StringWriter();
        var code = await PortcullisCli.RunAsync(["audit", "verify", .. files], output, errors);
        return (code, output.ToString(), errors.ToString());
    }

    [Fact]
    public async Task A_mix_of_denials_admin_actions_config_changes_and_a_cli_rotation_verifies_and_holds_no_secret()
    {
        await using (var gateway = await TestGateway.StartAsync(Config()))
        {
            string deniedMissing;
            using (var response = await gateway.Client.GetAsync("/keyed/x"))
            {
                Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
                deniedMissing = response.Headers.GetValues("X-Request-Id").Single();
            }

            using (var request = new HttpRequestMessage(HttpMethod.Get, "/keyed/x"))
            {
                request.Headers.Add("Authorization", "Bearer " + BearerToken);
                using var response = await gateway.Client.SendAsync(request);
                Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            }

            using (var request = new HttpRequestMessage(HttpMethod.Get, "/keyed/x"))
            {
                request.Headers.Add("X-Api-Key", WrongKey);
                using var response = await gateway.Client.SendAsync(request);
                Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            }

            using (var request = new HttpRequestMessage(HttpMethod.Get, "/others/x"))
            {
                request.Headers.Add("X-Api-Key", _apiKey);
                using var response = await gateway.Client.SendAsync(request);
                Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
            }

            using (var request = new HttpRequestMessage(HttpMethod.Get, "/keyed/x"))
            {
                request.Headers.Add("X-Api-Key", _apiKey);
                using var response = await gateway.Client.SendAsync(request);
                Assert.Equal(HttpStatusCode.OK, response.StatusCode); // allowed: no audit record
            }

            var records = await RecordsAsync(AuditPath, r => Count(r, "auth.denied") == 4);
            var missing = records.Single(r => r.TryGetProperty("requestId", out var id) && id.GetString() == deniedMissing);
            Assert.Equal("keyed", missing.GetProperty("route").GetString());
            Assert.Equal("auth.missing", missing.GetProperty("reason").GetString());
            Assert.Equal(401, missing.GetProperty("status").GetInt32());
            Assert.Equal("127.0.0.1", missing.GetProperty("clientIp").GetString());
            var forbidden = records.Single(r => r.GetProperty("type").GetString() == "auth.denied" && r.GetProperty("status").GetInt32() == 403);
            Assert.Equal("shop", forbidden.GetProperty("consumer").GetString());
            Assert.Equal("authz.consumer", forbidden.GetProperty("reason").GetString());

            // A config change through the admin API, then a drain and an undrain.
            await gateway.WriteConfigAsync(Config("  - { name: extra, match: { pathPrefix: /extra }, cluster: api }"));
            var (status, body) = await gateway.ReloadAsync();
            Assert.Equal(200, status);
            using (var response = await gateway.Admin.PostAsync("/admin/clusters/api/destinations/a/drain", null)) Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            using (var response = await gateway.Admin.PostAsync("/admin/clusters/api/destinations/a/undrain", null)) Assert.Equal(HttpStatusCode.OK, response.StatusCode);

            // The CLI writes into the same file while the gateway runs.
            using (var output = new StringWriter())
            using (var errors = new StringWriter())
            {
                Assert.Equal(0, await PortcullisCli.RunAsync(["keys", "rotate", "--file", _keysFile, "--consumer", "shop", "--audit", AuditPath], output, errors));
                Assert.Contains("audit: keys.rotate recorded", errors.ToString(), StringComparison.Ordinal);
            }

            // And the gateway's next record chains after the CLI's.
            using (var response = await gateway.Client.GetAsync("/keyed/after")) Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            records = await RecordsAsync(AuditPath, r => Count(r, "auth.denied") == 5 && Count(r, "admin.undrain") == 1);

            var change = records.Single(r => r.GetProperty("type").GetString() == "config.change");
            Assert.Equal(2, change.GetProperty("generation").GetInt64());
            Assert.NotEqual(change.GetProperty("oldFingerprint").GetString(), change.GetProperty("newFingerprint").GetString());
            Assert.Contains(change.GetProperty("files").EnumerateArray(), f => f.GetString() == gateway.ConfigPath);
            var reload = records.Single(r => r.GetProperty("type").GetString() == "admin.reload");
            Assert.Equal("applied", reload.GetProperty("result").GetString());
            Assert.Equal(1, Count(records, "admin.drain"));
            Assert.Equal(1, Count(records, "keys.rotate"));
            Assert.Equal(1, Count(records, "gateway.start"));

            var observability = await gateway.Admin.GetFromJsonAsync<JsonElement>("/admin/observability");
            Assert.True(observability.GetProperty("audit").GetProperty("enabled").GetBoolean());
        }

        var text = await File.ReadAllTextAsync(AuditPath);
        Assert.Contains("\"type\":\"gateway.stop\"", text, StringComparison.Ordinal);
        Assert.DoesNotContain(BearerToken, text, StringComparison.Ordinal);
        Assert.DoesNotContain(WrongKey, text, StringComparison.Ordinal);
        Assert.DoesNotContain(_apiKey, text, StringComparison.Ordinal);
        Assert.DoesNotContain(_apiKey[..12], text, StringComparison.Ordinal);

        var (code, output2, errors2) = await VerifyAsync(AuditPath);
        Assert.True(code == 0, errors2);
        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length;
        Assert.Contains($"ok: {lines} records (seq 1..{lines})", output2, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_chain_continues_across_a_restart()
    {
        await using (var gateway = await TestGateway.StartAsync(Config()))
        {
            using var response = await gateway.Client.GetAsync("/keyed/one");
            await RecordsAsync(AuditPath, r => Count(r, "auth.denied") == 1);
        }

        var before = (await RecordsAsync(AuditPath, r => Count(r, "gateway.stop") == 1)).Count;
        await using (var gateway = await TestGateway.StartAsync(Config()))
        {
            using var response = await gateway.Client.GetAsync("/keyed/two");
            await RecordsAsync(AuditPath, r => Count(r, "auth.denied") == 2);
        }

        var records = await RecordsAsync(AuditPath, r => Count(r, "gateway.stop") == 2);
        Assert.Equal(2, Count(records, "gateway.start"));
        var secondStart = records.Where(r => r.GetProperty("type").GetString() == "gateway.start").Last();
        Assert.Equal(before + 1, secondStart.GetProperty("seq").GetInt64());
        var (code, output, errors) = await VerifyAsync(AuditPath);
        Assert.True(code == 0, errors);
        Assert.Contains($"ok: {records.Count} records", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_burst_of_denials_is_all_recorded_while_allowed_requests_pass()
    {
        await using var gateway = await TestGateway.StartAsync(Config());
        var tasks = Enumerable.Range(0, 300).Select(async i =>
        {
            using var response = await gateway.Client.GetAsync($"/keyed/{i}");
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        });
        await Task.WhenAll(tasks);
        using (var ok = new HttpRequestMessage(HttpMethod.Get, "/keyed/ok"))
        {
            ok.Headers.Add("X-Api-Key", _apiKey);
            using var response = await gateway.Client.SendAsync(ok);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        await RecordsAsync(AuditPath, r => Count(r, "auth.denied") == 300);
        var (code, _, errors) = await VerifyAsync(AuditPath);
        Assert.True(code == 0, errors);
    }
}
