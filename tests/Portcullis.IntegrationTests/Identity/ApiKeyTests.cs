using System.Net;
using System.Text.Json;
using Portcullis.Cli;
using Portcullis.IntegrationTests.Infrastructure;

namespace Portcullis.IntegrationTests.Identity;

/// <summary>
/// API keys end to end: `portcullis keys` (in-process) edits the key file of a running gateway, which
/// picks up every change by watching the file, without a restart.
/// </summary>
public sealed class ApiKeyTests : IAsyncLifetime
{
    private const string Config = """
        identity:
          apiKeys: { file: keys.yaml{{QUERY}} }
        routes:
          - name: orders
            match: { pathPrefix: /orders }
            auth: { apiKey: true }
            cluster: orders
          - name: reports
            match: { pathPrefix: /reports }
            auth: { apiKey: true, scopes: [reports.read] }
            cluster: orders
          - name: premium
            match: { pathPrefix: /premium }
            auth: { apiKey: true, groups: [premium] }
            cluster: orders
        clusters:
          orders:
            destinations: [{{UPSTREAM}}]
        """;

    private TestUpstream _upstream = null!;
    private TestGateway _gateway = null!;
    private readonly List<string> _secrets = [];

    private string KeyFile => Path.Combine(_gateway.Directory, "keys.yaml");

    public async Task InitializeAsync()
    {
        _upstream = await TestUpstream.StartAsync("orders");
        _gateway = await TestGateway.StartAsync(ConfigYaml(), new Dictionary<string, string> { ["keys.yaml"] = "consumers: {}\n" });
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _upstream.DisposeAsync();
    }

    private string ConfigYaml(string? queryParameter = null) =>
        Config.Replace("{{QUERY}}", queryParameter is null ? "" : $", queryParameter: {queryParameter}", StringComparison.Ordinal)
            .Replace("{{UPSTREAM}}", _upstream.Url, StringComparison.Ordinal);

    private static async Task<(int Code, string Out, string Err)> CliAsync(params string[] args)
    {
        using var output = new StringWriter();
        using var errors = new StringWriter();
        var code = await PortcullisCli.RunAsync(args, output, errors);
        return (code, output.ToString(), errors.ToString());
    }

    /// <summary>Runs a `keys` command that changes the file and waits until the gateway serves the result.</summary>
    private async Task<(string Out, string Err)> ChangeKeysAsync(params string[] args)
    {
        var generation = _gateway.Generation;
        var (code, output, errors) = await CliAsync(["keys", args[0], "--file", KeyFile, .. args[1..]]);
        Assert.True(code == 0, $"exit {code}: {errors}");
        await _gateway.WaitForGenerationAsync(generation);
        await AssertFileHoldsNoSecretAsync();
        return (output, errors);
    }

    private async Task<(string Key, string Id)> CreateKeyAsync(params string[] args)
    {
        var (output, errors) = await ChangeKeysAsync(["create", .. args]);
        Assert.Contains("cannot be recovered", errors, StringComparison.Ordinal);
        var key = Line(output, "key");
        _secrets.Add(key);
        await AssertFileHoldsNoSecretAsync();
        return (key, Line(output, "key-id"));
    }

    private async Task<(string Key, string Id)> RotateAsync(params string[] args)
    {
        var (output, _) = await ChangeKeysAsync(["rotate", .. args]);
        var key = Line(output, "key");
        _secrets.Add(key);
        await AssertFileHoldsNoSecretAsync();
        return (key, Line(output, "key-id"));
    }

    private static string Line(string output, string label) =>
        output.Split('\n').Select(l => l.TrimEnd('\r')).Single(l => l.StartsWith(label + ": ", StringComparison.Ordinal))[(label.Length + 2)..];

    private async Task AssertFileHoldsNoSecretAsync()
    {
        var text = await File.ReadAllTextAsync(KeyFile);
        Assert.StartsWith("# Managed by `portcullis keys`; holds SHA-256 hashes, never secrets.", text, StringComparison.Ordinal);
        foreach (var secret in _secrets)
        {
            Assert.DoesNotContain(secret, text, StringComparison.Ordinal);
            Assert.DoesNotContain(secret.Split('_', 3)[2], text, StringComparison.Ordinal);
        }
    }

    private async Task<HttpResponseMessage> SendAsync(string path, string? key, Action<HttpRequestMessage>? configure = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (key is not null) request.Headers.TryAddWithoutValidation("X-Api-Key", key);
        configure?.Invoke(request);
        return await _gateway.Client.SendAsync(request);
    }

    private async Task AssertAcceptedAsync(string key, string path = "/orders/1")
    {
        using var response = await SendAsync(path, key);
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
    }

    private async Task AssertRejectedAsync(string? key, string reason, string path = "/orders/1", Action<HttpRequestMessage>? configure = null)
    {
        var before = _upstream.Requests;
        using var response = await SendAsync(path, key, configure);
        var body = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Contains($"\"reason\":\"{reason}\"", body, StringComparison.Ordinal);
        if (key is not null) Assert.DoesNotContain(key, body, StringComparison.Ordinal);
        Assert.Equal(before, _upstream.Requests);
    }

    [Fact]
    public async Task CreatedKey_ReachesUpstream_WithIdentityHeaders_AndWithoutTheKey()
    {
        var (key, id) = await CreateKeyAsync("--consumer", "shop", "--name", "Shop Inc", "--group", "premium", "--scopes", "orders.read,reports.read");
        Assert.StartsWith($"pck_{id}_", key, StringComparison.Ordinal);

        using var response = await SendAsync("/orders/1", key, r =>
        {
            r.Headers.TryAddWithoutValidation("X-Consumer-Id", "mallory");
            r.Headers.TryAddWithoutValidation("X-Scopes", "admin");
        });

        var seen = await UpstreamAnswer.ReadAsync(response);
        Assert.Equal("shop", seen.Header("X-Consumer-Id"));
        Assert.Equal("premium", seen.Header("X-Consumer-Group"));
        Assert.Equal("orders.read reports.read", seen.Header("X-Scopes"));
        Assert.Null(seen.Header("X-Api-Key"));
        Assert.DoesNotContain(seen.Headers.Values, value => value.Contains(key, StringComparison.Ordinal));
    }

    [Fact]
    public async Task ConsumerScopesAndGroup_AreEnforcedPerRoute()
    {
        var (premium, _) = await CreateKeyAsync("--consumer", "shop", "--group", "premium", "--scopes", "reports.read");
        var (free, _) = await CreateKeyAsync("--consumer", "hobby", "--group", "free", "--scopes", "orders.read");

        await AssertAcceptedAsync(premium, "/reports/q1");
        await AssertAcceptedAsync(premium, "/premium/x");
        using var noScope = await SendAsync("/reports/q1", free);
        Assert.Equal(HttpStatusCode.Forbidden, noScope.StatusCode);
        Assert.Contains("error=\"insufficient_scope\"", noScope.Headers.WwwAuthenticate.ToString(), StringComparison.Ordinal);
        using var noGroup = await SendAsync("/premium/x", free);
        Assert.Equal(HttpStatusCode.Forbidden, noGroup.StatusCode);
    }

    [Fact]
    public async Task WrongOrMissingKey_Is401ProblemJson()
    {
        var (key, _) = await CreateKeyAsync("--consumer", "shop");

        await AssertRejectedAsync("pck_000000000000_" + new string('A', 43), "apikey.unknown");
        await AssertRejectedAsync(key[..^1] + (key[^1] == 'A' ? 'B' : 'A'), "apikey.unknown");
        await AssertRejectedAsync(null, "auth.missing");

        // Two X-Api-Key header lines (HttpClient would fold them into one): refused, never "first wins".
        using (var tcp = new System.Net.Sockets.TcpClient())
        {
            await tcp.ConnectAsync(IPAddress.Loopback, _gateway.Port);
            var stream = tcp.GetStream();
            await stream.WriteAsync(System.Text.Encoding.ASCII.GetBytes($"GET /orders/1 HTTP/1.1\r\nHost: localhost\r\nX-Api-Key: {key}\r\nX-Api-Key: {key}\r\nConnection: close\r\n\r\n"));
            var answer = await new StreamReader(stream).ReadToEndAsync();
            Assert.StartsWith("HTTP/1.1 401", answer, StringComparison.Ordinal);
            Assert.Contains("\"reason\":\"apikey.ambiguous\"", answer, StringComparison.Ordinal);
        }

        using var response = await SendAsync("/orders/1", "nope");
        // The challenge names the header of an API-key route (issue 18, item 19), not a bearer token.
        Assert.Equal("ApiKey realm=\"portcullis\", header=\"X-Api-Key\", error=\"invalid_token\"", response.Headers.WwwAuthenticate.ToString());
        using var missing = await SendAsync("/orders/1", null);
        Assert.Equal("ApiKey realm=\"portcullis\", header=\"X-Api-Key\"", missing.Headers.WwwAuthenticate.ToString());
        await AssertAcceptedAsync(key);
    }

    [Fact]
    public async Task Rotate_OldAndNewWorkDuringTheOverlap_ThenOnlyTheNew_WithoutRestart()
    {
        var (oldKey, oldId) = await CreateKeyAsync("--consumer", "shop", "--group", "premium");
        var (otherKey, _) = await CreateKeyAsync("--consumer", "other");
        await AssertAcceptedAsync(oldKey);

        var overlap = TimeSpan.FromSeconds(5);
        var rotatedAt = DateTimeOffset.UtcNow;
        var (newKey, newId) = await RotateAsync("--consumer", "shop", "--overlap", "5s");
        Assert.NotEqual(oldId, newId);
        Assert.NotEqual(oldKey, newKey);
        var keys = ApiKeyFileStore.Load(KeyFile, KeyFile, mustExist: true).Consumers["shop"].Keys;
        var oldExpires = keys.Single(k => k.Id == oldId).Expires!.Value;
        Assert.InRange(oldExpires, rotatedAt + overlap - TimeSpan.FromMilliseconds(1), DateTimeOffset.UtcNow + overlap);
        Assert.Null(keys.Single(k => k.Id == newId).Expires);

        // Within the overlap both keys work.
        Assert.True(DateTimeOffset.UtcNow < oldExpires - TimeSpan.FromSeconds(1), "the reload took longer than the overlap allows to check");
        await AssertAcceptedAsync(oldKey);
        await AssertAcceptedAsync(newKey);
        using (var response = await SendAsync("/orders/1", newKey))
        {
            Assert.Equal("premium", (await UpstreamAnswer.ReadAsync(response)).Header("X-Consumer-Group"));
        }

        // After the overlap: the old key has expired (no reload needed), the new one and other consumers still work.
        var wait = oldExpires + TimeSpan.FromMilliseconds(200) - DateTimeOffset.UtcNow;
        if (wait > TimeSpan.Zero) await Task.Delay(wait);
        await AssertRejectedAsync(oldKey, "apikey.expired");
        await AssertAcceptedAsync(newKey);
        await AssertAcceptedAsync(otherKey);

        var (code, list, _) = await CliAsync("keys", "list", "--file", KeyFile);
        Assert.Equal(0, code);
        Assert.Matches($@"(?m)^shop .*{oldId} .*expired$", list);
        Assert.Matches($@"(?m)^shop .*{newId} .*valid$", list);
    }

    [Fact]
    public async Task Revoke_Key_IsRejectedAfterTheReload_OthersKeepWorking()
    {
        var (first, firstId) = await CreateKeyAsync("--consumer", "shop");
        var (second, _) = await CreateKeyAsync("--consumer", "shop");
        var (other, _) = await CreateKeyAsync("--consumer", "other");
        await AssertAcceptedAsync(first);

        var (output, _) = await ChangeKeysAsync("revoke", "--key-id", firstId);

        Assert.Contains($"revoked key {firstId} of consumer 'shop'", output, StringComparison.Ordinal);
        await AssertRejectedAsync(first, "apikey.revoked");
        await AssertAcceptedAsync(second);
        await AssertAcceptedAsync(other);
        Assert.Contains("revoked: true", await File.ReadAllTextAsync(KeyFile), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Revoke_Consumer_RejectsAllItsKeys()
    {
        var (first, _) = await CreateKeyAsync("--consumer", "shop");
        var (second, _) = await CreateKeyAsync("--consumer", "shop");
        var (other, _) = await CreateKeyAsync("--consumer", "other");

        await ChangeKeysAsync("revoke", "--consumer", "shop");

        await AssertRejectedAsync(first, "apikey.revoked");
        await AssertRejectedAsync(second, "apikey.revoked");
        await AssertAcceptedAsync(other);
    }

    [Fact]
    public async Task ExpiresAndNotBefore_FromTheCli_AreEnforced()
    {
        var (later, _) = await CreateKeyAsync("--consumer", "shop", "--not-before", "1h");
        var (expiring, _) = await CreateKeyAsync("--consumer", "shop", "--expires", "2s");

        await AssertRejectedAsync(later, "apikey.not-yet-valid");
        await AssertAcceptedAsync(expiring);
        await Task.Delay(TimeSpan.FromSeconds(2.2));
        await AssertRejectedAsync(expiring, "apikey.expired");
    }

    [Fact]
    public async Task KeyInQueryString_IsRejected_UnlessTheQueryParameterIsEnabled()
    {
        var (key, _) = await CreateKeyAsync("--consumer", "shop");
        var query = "/orders/1?api_key=" + Uri.EscapeDataString(key);

        await AssertRejectedAsync(null, "auth.missing", query);

        var generation = _gateway.Generation;
        await _gateway.WriteConfigAsync(ConfigYaml(queryParameter: "api_key"));
        await _gateway.WaitForGenerationAsync(generation);

        using var response = await SendAsync(query, null);
        var seen = await UpstreamAnswer.ReadAsync(response);
        Assert.Equal("shop", seen.Header("X-Consumer-Id"));
        // The header stays the primary place: it works as before.
        await AssertAcceptedAsync(key);
    }

    [Fact]
    public async Task KeyInQueryString_IsNotForwardedUpstream()
    {
        var generation = _gateway.Generation;
        await _gateway.WriteConfigAsync(ConfigYaml(queryParameter: "api_key"));
        await _gateway.WaitForGenerationAsync(generation);
        var (key, _) = await CreateKeyAsync("--consumer", "shop");

        using var response = await SendAsync("/orders/1?a=1&api_key=" + Uri.EscapeDataString(key) + "&b=2", null);

        var seen = await UpstreamAnswer.ReadAsync(response);
        Assert.Equal("shop", seen.Header("X-Consumer-Id"));
        Assert.DoesNotContain("api_key", seen.Query, StringComparison.Ordinal);
        Assert.DoesNotContain(key.Split('_', 3)[2], seen.Query, StringComparison.Ordinal);
        Assert.Equal("?a=1&b=2", seen.Query);
    }

    [Fact]
    public async Task List_NeverPrintsASecretOrAFullHash()
    {
        var (key, id) = await CreateKeyAsync("--consumer", "shop", "--group", "premium", "--expires", "90d");
        var (revoked, revokedId) = await CreateKeyAsync("--consumer", "shop");
        await ChangeKeysAsync("revoke", "--key-id", revokedId);
        var (rotated, _) = await RotateAsync("--consumer", "shop", "--overlap", "1h");
        var file = await File.ReadAllTextAsync(KeyFile);
        var hashes = System.Text.RegularExpressions.Regex.Matches(file, "[0-9a-f]{64}").Select(m => m.Value).ToList();
        Assert.Equal(3, hashes.Count);

        foreach (var json in new[] { false, true })
        {
            var (code, output, errors) = await CliAsync(json ? ["keys", "list", "--file", KeyFile, "--json"] : ["keys", "list", "--file", KeyFile]);
            Assert.Equal(0, code);
            Assert.Equal("", errors);
            foreach (var secret in new[] { key, revoked, rotated })
            {
                Assert.DoesNotContain(secret, output, StringComparison.Ordinal);
                Assert.DoesNotContain(secret.Split('_', 3)[2][..12], output, StringComparison.Ordinal);
            }

            foreach (var hash in hashes)
            {
                Assert.DoesNotContain(hash[..9], output, StringComparison.Ordinal);
                Assert.Contains(hash[..8], output, StringComparison.Ordinal);
            }

            Assert.Contains(id, output, StringComparison.Ordinal);
            if (json)
            {
                using var document = JsonDocument.Parse(output);
                var states = document.RootElement.GetProperty("consumers")[0].GetProperty("keys").EnumerateArray().Select(k => k.GetProperty("state").GetString()).ToList();
                Assert.Equal(["valid", "revoked", "valid"], states);
            }
        }
    }

    [Fact]
    public async Task ExitCodes_AndAGatewayThatKeepsServingWhenTheFileIsBroken()
    {
        var (key, _) = await CreateKeyAsync("--consumer", "shop");

        var (code, output, errors) = await CliAsync("keys", "rotate", "--file", KeyFile, "--consumer", "nobody");
        Assert.Equal(PortcullisCli.Invalid, code);
        Assert.Equal("", output);
        Assert.Contains("unknown consumer 'nobody'", errors, StringComparison.Ordinal);

        (code, _, errors) = await CliAsync("keys", "revoke", "--file", KeyFile, "--key-id", "ffffffffffff");
        Assert.Equal(PortcullisCli.Invalid, code);
        Assert.Contains("unknown key id", errors, StringComparison.Ordinal);

        (code, _, errors) = await CliAsync("keys", "create", "--file", KeyFile);
        Assert.Equal(PortcullisCli.Usage, code);
        Assert.Contains("--consumer", errors, StringComparison.Ordinal);

        (code, _, _) = await CliAsync("keys", "create", "--file", KeyFile, "--consumer", "x", "--expires", "someday");
        Assert.Equal(PortcullisCli.Usage, code);

        (code, _, _) = await CliAsync("keys", "revoke", "--file", KeyFile);
        Assert.Equal(PortcullisCli.Usage, code);

        (code, _, _) = await CliAsync("keys", "list");
        Assert.Equal(PortcullisCli.Usage, code);

        // A hand edit that breaks the file: the CLI names the line and refuses to touch it; the gateway keeps its last good keys.
        var generation = _gateway.Generation;
        var good = await File.ReadAllTextAsync(KeyFile);
        await _gateway.WriteFileAsync("keys.yaml", good.Replace("sha256:", "sha265:", StringComparison.Ordinal));
        var (status, body) = await _gateway.ReloadAsync();
        Assert.Equal(generation, _gateway.Generation);
        Assert.Equal(422, status);
        Assert.False(body.GetProperty("applied").GetBoolean());
        Assert.Contains("keys.yaml:", body.GetProperty("errors")[0].GetString(), StringComparison.Ordinal);
        await AssertAcceptedAsync(key);

        (code, output, errors) = await CliAsync("keys", "create", "--file", KeyFile, "--consumer", "shop");
        Assert.Equal(PortcullisCli.Invalid, code);
        Assert.Equal("", output);
        Assert.Matches(@"keys\.yaml:\d+:\d+: error: unknown key 'sha265'", errors);
        Assert.DoesNotContain("   at ", errors, StringComparison.Ordinal);
    }
}

/// <summary>A JSON key file (identity.apiKeys.file: keys.json): `portcullis keys` writes JSON, the running gateway reads it and follows its changes.</summary>
public sealed class JsonApiKeyFileTests : IAsyncLifetime
{
    private TestUpstream _upstream = null!;
    private TestGateway _gateway = null!;

    private string KeyFile => Path.Combine(_gateway.Directory, "keys.json");

    public async Task InitializeAsync()
    {
        _upstream = await TestUpstream.StartAsync("orders");
        var config = $$"""
            identity:
              apiKeys: { file: keys.json }
            routes:
              - name: orders
                match: { pathPrefix: /orders }
                auth: { apiKey: true, scopes: [orders.read] }
                cluster: orders
            clusters:
              orders:
                destinations: [{{_upstream.Url}}]
            """;
        _gateway = await TestGateway.StartAsync(config, new Dictionary<string, string> { ["keys.json"] = "{ \"consumers\": {} }\n" });
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _upstream.DisposeAsync();
    }

    private async Task<string> KeysAsync(params string[] args)
    {
        var generation = _gateway.Generation;
        using var output = new StringWriter();
        using var errors = new StringWriter();
        var code = await PortcullisCli.RunAsync(["keys", args[0], "--file", KeyFile, .. args[1..]], output, errors);
        Assert.True(code == 0, $"exit {code}: {errors}");
        await _gateway.WaitForGenerationAsync(generation);
        return output.ToString();
    }

    private async Task<HttpStatusCode> SendAsync(string key)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/orders/1");
        request.Headers.TryAddWithoutValidation("X-Api-Key", key);
        using var response = await _gateway.Client.SendAsync(request);
        return response.StatusCode;
    }

    [Fact]
    public async Task KeysWrittenAsJson_AuthenticateAtTheRunningGateway_AndARevocationApplies()
    {
        var output = await KeysAsync("create", "--consumer", "shop", "--group", "premium", "--scopes", "orders.read");
        var key = output.Split('\n').Select(l => l.TrimEnd('\r')).Single(l => l.StartsWith("key: ", StringComparison.Ordinal))[5..];

        var text = await File.ReadAllTextAsync(KeyFile);
        using (var document = JsonDocument.Parse(text))
        {
            var shop = document.RootElement.GetProperty("consumers").GetProperty("shop");
            Assert.Equal("premium", shop.GetProperty("group").GetString());
            Assert.Equal(64, shop.GetProperty("keys")[0].GetProperty("sha256").GetString()!.Length);
        }

        Assert.DoesNotContain(key.Split('_', 3)[2], text, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, await SendAsync(key));
        Assert.Equal(HttpStatusCode.Unauthorized, await SendAsync(key[..^1] + (key[^1] == 'A' ? 'B' : 'A')));

        await KeysAsync("revoke", "--consumer", "shop");
        Assert.Equal(HttpStatusCode.Unauthorized, await SendAsync(key));
    }

    [Fact]
    public async Task ABrokenJsonFile_KeepsTheRunningKeys_AndTheReloadNamesTheLine()
    {
        var output = await KeysAsync("create", "--consumer", "shop", "--scopes", "orders.read");
        var key = output.Split('\n').Select(l => l.TrimEnd('\r')).Single(l => l.StartsWith("key: ", StringComparison.Ordinal))[5..];
        var good = await File.ReadAllTextAsync(KeyFile);

        // A trailing comma after the last consumer: not JSON.
        await File.WriteAllTextAsync(KeyFile, good.TrimEnd().TrimEnd('}').TrimEnd().TrimEnd('}') + "},\n}\n");
        using var reload = await _gateway.Admin.PostAsync("/admin/reload", null);
        var body = await reload.Content.ReadAsStringAsync();
        Assert.NotEqual(HttpStatusCode.OK, reload.StatusCode);
        Assert.Matches(@"keys\.json:\d+:\d+", body);
        Assert.Equal(HttpStatusCode.OK, await SendAsync(key));
    }
}
