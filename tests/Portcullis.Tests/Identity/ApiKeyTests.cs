using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Time.Testing;
using Portcullis.Cli;
using Portcullis.Configuration;
using Portcullis.Identity;

namespace Portcullis.Tests.Identity;

/// <summary>Key hashing, the compiled key table the gateway consults per request, and the key generator.</summary>
public sealed class ApiKeyTests
{
    private static readonly DateTimeOffset Now = new(2026, 3, 1, 12, 0, 0, TimeSpan.Zero);

    // ---------------------------------------------------------------- KeyHash

    [Fact]
    public void KeyHash_IsTheSha256OfTheKeysUtf8Bytes()
    {
        const string key = "pck_0123456789ab_secret-é";
        var expected = SHA256.HashData(Encoding.UTF8.GetBytes(key));

        Assert.True(KeyHash.TryCompute(key, out var hash));
        Assert.Equal(KeyHash.Of(expected), hash);
        Assert.Equal(KeyHash.Of(Convert.FromHexString(ApiKeyGenerator.HashHex(key))), hash);
        Assert.Equal(Convert.ToHexStringLower(expected), ApiKeyGenerator.HashHex(key));
    }

    [Fact]
    public void KeyHash_RefusesEmptyAndOverlongKeys()
    {
        Assert.False(KeyHash.TryCompute("", out _));
        Assert.False(KeyHash.TryCompute(new string('k', 513), out _));
        Assert.True(KeyHash.TryCompute(new string('k', 512), out _));
        Assert.True(KeyHash.TryCompute(new string('é', 512), out _));
    }

    // ---------------------------------------------------------------- CompiledApiKeys

    [Fact]
    public void Authenticate_ValidKey_YieldsTheConsumersIdentity()
    {
        var (key, record) = ApiKeyGenerator.Create(Now);
        var keys = Compile(("shop", new ApiKeyConsumer { Name = "Shop", Group = "premium", Scopes = ["orders.read", "orders.write"], Keys = [record] }));

        var decision = keys.Authenticate(key, Now);

        Assert.True(decision.Allowed);
        Assert.Equal("apikey.valid", decision.Reason);
        var identity = decision.Identity!;
        Assert.Equal(CredentialKind.ApiKey, identity.Kind);
        Assert.Equal("shop", identity.Consumer);
        Assert.Equal("shop", identity.Subject);
        Assert.Equal("premium", identity.ConsumerGroup);
        Assert.Equal(["premium"], identity.Groups);
        Assert.Equal("orders.read orders.write", identity.ScopesHeader);
        Assert.Equal(record.Id, identity.KeyId);
        Assert.Equal(["premium"], identity.Claims["group"]);
    }

    [Fact]
    public void Authenticate_UnknownKey_IsRefused()
    {
        var (key, record) = ApiKeyGenerator.Create(Now);
        var keys = Compile(("shop", new ApiKeyConsumer { Keys = [record] }));

        foreach (var presented in new[] { key + "x", key[..^1], key.ToUpperInvariant(), "", "pck_", new string('a', 600) })
        {
            var decision = keys.Authenticate(presented, Now);
            Assert.Equal(401, decision.Status);
            Assert.Equal("apikey.unknown", decision.Reason);
            Assert.Equal("invalid_token", decision.ChallengeError);
            Assert.Null(decision.Identity);
        }
    }

    [Fact]
    public void Authenticate_ExpiredKey_IsRefusedFromItsExpiryOn()
    {
        var (key, record) = ApiKeyGenerator.Create(Now, expires: Now.AddHours(1));
        var keys = Compile(("shop", new ApiKeyConsumer { Keys = [record] }));

        Assert.True(keys.Authenticate(key, Now.AddHours(1).AddTicks(-1)).Allowed);
        Assert.Equal("apikey.expired", keys.Authenticate(key, Now.AddHours(1)).Reason);
        Assert.Equal("apikey.expired", keys.Authenticate(key, Now.AddDays(30)).Reason);
    }

    [Fact]
    public void Authenticate_NotYetValidKey_IsRefusedUntilNotBefore()
    {
        var (key, record) = ApiKeyGenerator.Create(Now, notBefore: Now.AddHours(1));
        var keys = Compile(("shop", new ApiKeyConsumer { Keys = [record] }));

        Assert.Equal("apikey.not-yet-valid", keys.Authenticate(key, Now).Reason);
        Assert.Equal(401, keys.Authenticate(key, Now.AddHours(1).AddTicks(-1)).Status);
        Assert.True(keys.Authenticate(key, Now.AddHours(1)).Allowed);
    }

    [Fact]
    public void Authenticate_RevokedKey_IsRefusedAlways_AndOtherKeysOfTheConsumerStillWork()
    {
        var (revokedKey, revoked) = ApiKeyGenerator.Create(Now);
        var (liveKey, live) = ApiKeyGenerator.Create(Now);
        var keys = Compile(("shop", new ApiKeyConsumer { Keys = [revoked with { Revoked = true }, live] }));

        var decision = keys.Authenticate(revokedKey, Now);
        Assert.Equal(401, decision.Status);
        Assert.Equal("apikey.revoked", decision.Reason);
        Assert.Null(decision.Identity);
        Assert.True(keys.Authenticate(liveKey, Now).Allowed);
    }

    [Fact]
    public void Authenticate_OverlappingKeys_BothWorkUntilTheOldOneExpires()
    {
        var (oldKey, oldRecord) = ApiKeyGenerator.Create(Now.AddDays(-30), expires: Now.AddDays(7));
        var (newKey, newRecord) = ApiKeyGenerator.Create(Now);
        var keys = Compile(("shop", new ApiKeyConsumer { Keys = [oldRecord, newRecord] }));

        Assert.True(keys.Authenticate(oldKey, Now.AddDays(6)).Allowed);
        Assert.True(keys.Authenticate(newKey, Now.AddDays(6)).Allowed);
        Assert.Equal("apikey.expired", keys.Authenticate(oldKey, Now.AddDays(7)).Reason);
        Assert.True(keys.Authenticate(newKey, Now.AddDays(7)).Allowed);
    }

    [Fact]
    public void Compile_ReportsMalformedAndDuplicateHashes()
    {
        var (_, record) = ApiKeyGenerator.Create(Now);
        var errors = new List<(string Path, string Message)>();
        CompiledApiKeys.Compile(new ApiKeyOptions(), new ApiKeyFile
        {
            Consumers = new Dictionary<string, ApiKeyConsumer>
            {
                ["a"] = new() { Keys = [record, new ApiKeyRecord { Id = "bad", Sha256 = "not-hex" }] },
                ["b"] = new() { Keys = [record with { Id = "copy" }] },
            },
        }, (path, message) => errors.Add((path, message)));

        Assert.Contains(errors, e => e.Path == "consumers.a.keys[1].sha256" && e.Message.Contains("no valid SHA-256", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Path == "consumers.b.keys[0].sha256" && e.Message.Contains("duplicates", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(false, null, null, "valid")]
    [InlineData(true, null, null, "revoked")]
    [InlineData(false, -1, null, "valid")]
    [InlineData(false, 1, null, "not-yet-valid")]
    [InlineData(false, null, 0, "expired")]
    [InlineData(false, null, 1, "valid")]
    [InlineData(false, 1, -1, "expired")]
    [InlineData(true, 1, -1, "revoked")]
    public void KeyState_FollowsTheGatewaysRules(bool revoked, int? notBeforeHours, int? expiresHours, string expected)
    {
        var record = new ApiKeyRecord
        {
            Revoked = revoked,
            NotBefore = notBeforeHours is { } nb ? Now.AddHours(nb) : null,
            Expires = expiresHours is { } ex ? Now.AddHours(ex) : null,
        };

        Assert.Equal(expected, record.StateAt(Now).Name());
    }

    // ---------------------------------------------------------------- ApiKeyGenerator

    [Fact]
    public void Generator_MakesPrefixedKeys_WithAnIdAnd256RandomBits_StoringOnlyTheHash()
    {
        var (key, record) = ApiKeyGenerator.Create(Now, Now.AddMinutes(5), Now.AddDays(90));

        var match = Regex.Match(key, "^pck_(?<id>[0-9a-f]{12})_(?<secret>[A-Za-z0-9_-]+)$");
        Assert.True(match.Success, key);
        Assert.Equal(record.Id, match.Groups["id"].Value);
        var secret = match.Groups["secret"].Value;
        Assert.True(secret.Length >= 43, secret);
        Assert.Equal(32, System.Buffers.Text.Base64Url.DecodeFromChars(secret).Length);

        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key))), record.Sha256);
        Assert.DoesNotContain(secret, record.Sha256, StringComparison.Ordinal);
        Assert.Equal(Now, record.Created);
        Assert.Equal(Now.AddMinutes(5), record.NotBefore);
        Assert.Equal(Now.AddDays(90), record.Expires);
        Assert.False(record.Revoked);
    }

    [Fact]
    public void Generator_NeverRepeats()
    {
        var keys = Enumerable.Range(0, 1000).Select(_ => ApiKeyGenerator.Create(Now)).ToList();

        Assert.Equal(1000, keys.Select(k => k.Key).Distinct().Count());
        Assert.Equal(1000, keys.Select(k => k.Record.Sha256).Distinct().Count());
        Assert.Equal(1000, keys.Select(k => k.Key.Split('_', 3)[2]).Distinct().Count());
        Assert.NotEqual(keys[0].Key.Split('_', 3)[2], keys[1].Key.Split('_', 3)[2]);
    }

    private static CompiledApiKeys Compile(params (string Id, ApiKeyConsumer Consumer)[] consumers)
    {
        var errors = new List<string>();
        var keys = CompiledApiKeys.Compile(
            new ApiKeyOptions(),
            new ApiKeyFile { Consumers = consumers.ToDictionary(c => c.Id, c => c.Consumer) },
            (path, message) => errors.Add($"{path}: {message}"));
        Assert.Empty(errors);
        return keys;
    }
}

/// <summary>`portcullis keys` against a fake clock: exact expiries, states over time, the file format and errors.</summary>
public sealed class ApiKeyCommandTests : IDisposable
{
    private static readonly DateTimeOffset Start = new(2026, 3, 1, 12, 0, 0, TimeSpan.Zero);
    private readonly FakeTimeProvider _time = new(Start);
    private readonly string _directory = Directory.CreateTempSubdirectory("portcullis-keys-").FullName;

    private string KeyFile => Path.Combine(_directory, "keys.yaml");

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private async Task<(int Code, string Out, string Err)> KeysAsync(params string[] args)
    {
        using var output = new StringWriter();
        using var errors = new StringWriter();
        var code = await KeysCommand.RunAsync(["keys", .. args], output, errors, _time);
        return (code, output.ToString(), errors.ToString());
    }

    private async Task<(string Key, string Id)> CreateAsync(params string[] args)
    {
        var (code, output, errors) = await KeysAsync(["create", "--file", KeyFile, .. args]);
        Assert.True(code == 0, errors);
        return (Line(output, "key"), Line(output, "key-id"));
    }

    private static string Line(string output, string label) =>
        output.Split('\n').Select(l => l.TrimEnd('\r')).Single(l => l.StartsWith(label + ": ", StringComparison.Ordinal))[(label.Length + 2)..];

    private ApiKeyFile Load() => ApiKeyFileStore.Load(KeyFile, KeyFile, mustExist: true);

    [Fact]
    public async Task Create_WritesHashOnly_WithHeader_AndExactTimes()
    {
        var (key, id) = await CreateAsync("--consumer", "shop", "--name", "Shop Inc", "--group", "premium", "--scopes", "orders.read,orders.write", "--expires", "90d", "--not-before", "2026-03-02T00:00:00Z");

        var text = await File.ReadAllTextAsync(KeyFile);
        Assert.StartsWith("# Managed by `portcullis keys`; holds SHA-256 hashes, never secrets.\n", text, StringComparison.Ordinal);
        Assert.DoesNotContain(key, text, StringComparison.Ordinal);
        Assert.DoesNotContain(key.Split('_', 3)[2], text, StringComparison.Ordinal);
        Assert.Contains(ApiKeyGenerator.HashHex(key), text, StringComparison.Ordinal);

        var consumer = Load().Consumers["shop"];
        Assert.Equal("Shop Inc", consumer.Name);
        Assert.Equal("premium", consumer.Group);
        Assert.Equal(["orders.read", "orders.write"], consumer.Scopes);
        var record = Assert.Single(consumer.Keys);
        Assert.Equal(id, record.Id);
        Assert.Equal(Start, record.Created);
        Assert.Equal(Start.AddDays(90), record.Expires);
        Assert.Equal(new DateTimeOffset(2026, 3, 2, 0, 0, 0, TimeSpan.Zero), record.NotBefore);
        Assert.False(record.Revoked);
    }

    [Fact]
    public async Task Create_SecondKey_KeepsTheConsumerAndOthers_InAStableOrder()
    {
        await CreateAsync("--consumer", "zeta", "--group", "free");
        await CreateAsync("--consumer", "alpha");
        var before = await File.ReadAllTextAsync(KeyFile);
        await CreateAsync("--consumer", "zeta");

        var file = Load();
        Assert.Equal(["alpha", "zeta"], file.Consumers.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(2, file.Consumers["zeta"].Keys.Count);
        Assert.Equal("free", file.Consumers["zeta"].Group);
        var text = await File.ReadAllTextAsync(KeyFile);
        Assert.True(text.IndexOf("alpha:", StringComparison.Ordinal) < text.IndexOf("zeta:", StringComparison.Ordinal));
        Assert.StartsWith(before.TrimEnd(), text, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFiles(_directory, "*.tmp-*"));
    }

    [Fact]
    public async Task Rotate_ShortensCurrentKeysToTheOverlap_AndListShowsStatesOverTime()
    {
        var (_, first) = await CreateAsync("--consumer", "shop");
        var (_, future) = await CreateAsync("--consumer", "shop", "--not-before", "30d");
        _time.Advance(TimeSpan.FromDays(1));
        var (code, output, errors) = await KeysAsync("rotate", "--file", KeyFile, "--consumer", "shop", "--overlap", "7d");
        Assert.True(code == 0, errors);
        var second = Line(output, "key-id");
        Assert.StartsWith("pck_" + second + "_", Line(output, "key"), StringComparison.Ordinal);

        var keys = Load().Consumers["shop"].Keys;
        Assert.Equal(Start.AddDays(8), keys.Single(k => k.Id == first).Expires);
        Assert.Null(keys.Single(k => k.Id == future).Expires);
        Assert.Null(keys.Single(k => k.Id == second).Expires);

        Assert.Equal("valid", await StateAsync(first));
        _time.Advance(TimeSpan.FromDays(7));
        Assert.Equal("expired", await StateAsync(first));
        Assert.Equal("valid", await StateAsync(second));
        Assert.Equal("not-yet-valid", await StateAsync(future));

        (code, _, _) = await KeysAsync("revoke", "--file", KeyFile, "--key-id", second);
        Assert.Equal(0, code);
        Assert.Equal("revoked", await StateAsync(second));
    }

    [Fact]
    public async Task Rotate_DefaultOverlapIs24h_AndNeverExtendsAnEarlierExpiry()
    {
        var (_, soon) = await CreateAsync("--consumer", "shop", "--expires", "1h");
        var (_, later) = await CreateAsync("--consumer", "shop", "--expires", "2027-01-01T00:00:00Z");
        var (code, _, errors) = await KeysAsync("rotate", "--file", KeyFile, "--consumer", "shop");
        Assert.True(code == 0, errors);

        var keys = Load().Consumers["shop"].Keys;
        Assert.Equal(Start.AddHours(1), keys.Single(k => k.Id == soon).Expires);
        Assert.Equal(Start.AddHours(24), keys.Single(k => k.Id == later).Expires);
        Assert.Equal(3, keys.Count);
    }

    [Fact]
    public async Task Revoke_Consumer_RevokesAllItsKeys_AndKeepsTheRecords()
    {
        await CreateAsync("--consumer", "shop");
        await CreateAsync("--consumer", "shop");
        var (_, other) = await CreateAsync("--consumer", "other");

        var (code, output, _) = await KeysAsync("revoke", "--file", KeyFile, "--consumer", "shop");

        Assert.Equal(0, code);
        Assert.Equal(2, output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        var file = Load();
        Assert.Equal(2, file.Consumers["shop"].Keys.Count);
        Assert.All(file.Consumers["shop"].Keys, k => Assert.True(k.Revoked));
        Assert.False(file.Consumers["other"].Keys.Single(k => k.Id == other).Revoked);
    }

    [Fact]
    public async Task List_Json_ShowsHashPrefixesOnly()
    {
        var (key, id) = await CreateAsync("--consumer", "shop", "--group", "premium");

        var (code, output, _) = await KeysAsync("list", "--file", KeyFile, "--json");

        Assert.Equal(0, code);
        var hash = ApiKeyGenerator.HashHex(key);
        Assert.DoesNotContain(key, output, StringComparison.Ordinal);
        Assert.DoesNotContain(hash[..9], output, StringComparison.Ordinal);
        using var json = JsonDocument.Parse(output);
        var consumer = json.RootElement.GetProperty("consumers")[0];
        Assert.Equal("shop", consumer.GetProperty("id").GetString());
        Assert.Equal("premium", consumer.GetProperty("group").GetString());
        var record = consumer.GetProperty("keys")[0];
        Assert.Equal(id, record.GetProperty("id").GetString());
        Assert.Equal(hash[..8], record.GetProperty("sha256Prefix").GetString());
        Assert.Equal("valid", record.GetProperty("state").GetString());
        Assert.Equal("2026-03-01T12:00:00Z", record.GetProperty("created").GetString());
    }

    [Fact]
    public async Task TextThatLooksLikeAVariable_SurvivesTheRoundTrip()
    {
        await CreateAsync("--consumer", "shop", "--name", "Shop ${HOME} $$ {x}");

        Assert.Equal("Shop ${HOME} $$ {x}", Load().Consumers["shop"].Name);
    }

    [Theory]
    [InlineData("90d", 90 * 24)]
    [InlineData("24h", 24)]
    [InlineData("1d12h", 36)]
    public void ParseWhen_Durations_AreFromNow(string text, int hours) =>
        Assert.Equal(Start.AddHours(hours), KeysArguments.ParseWhen("--expires", text, Start));

    [Theory]
    [InlineData("2027-01-01T00:00:00Z", "2027-01-01T00:00:00+00:00")]
    [InlineData("2027-01-01T02:00:00+02:00", "2027-01-01T00:00:00+00:00")]
    [InlineData("2027-01-01", "2027-01-01T00:00:00+00:00")]
    public void ParseWhen_DatesWithoutOffset_AreUtc(string text, string expected) =>
        Assert.Equal(DateTimeOffset.Parse(expected, System.Globalization.CultureInfo.InvariantCulture), KeysArguments.ParseWhen("--expires", text, Start));

    [Theory]
    [InlineData("create", "--consumer", "shop", "--expires", "soon")]
    [InlineData("create", "--consumer", "shop", "--expires", "-1d")]
    [InlineData("create", "--consumer", "shop", "--expires", "2020-01-01T00:00:00Z")]
    [InlineData("create", "--consumer", "shop", "--not-before", "2d", "--expires", "1d")]
    [InlineData("create", "--consumer", "bad id")]
    [InlineData("create", "--consumer", "shop", "--group", "a\nb")]
    [InlineData("create", "--consumer", "shop", "--scopes", "a\"b")]
    [InlineData("create")]
    [InlineData("rotate", "--consumer", "shop", "--overlap", "week")]
    [InlineData("revoke")]
    [InlineData("revoke", "--key-id", "a", "--consumer", "b")]
    [InlineData("frobnicate")]
    public async Task UsageErrors_Exit2_AndChangeNothing(params string[] args)
    {
        await CreateAsync("--consumer", "existing");
        var before = await File.ReadAllTextAsync(KeyFile);

        var (code, output, errors) = await KeysAsync([args[0], "--file", KeyFile, .. args[1..]]);

        Assert.Equal(PortcullisCli.Usage, code);
        Assert.Equal("", output);
        Assert.StartsWith("error: ", errors, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", errors, StringComparison.Ordinal);
        Assert.Equal(before, await File.ReadAllTextAsync(KeyFile));
    }

    [Fact]
    public async Task Failures_Exit1_WithoutStackTraces()
    {
        await CreateAsync("--consumer", "shop");
        var before = await File.ReadAllTextAsync(KeyFile);

        var (code, _, errors) = await KeysAsync("rotate", "--file", KeyFile, "--consumer", "shpo");
        Assert.Equal(1, code);
        Assert.Contains("unknown consumer 'shpo' (did you mean 'shop'?)", errors, StringComparison.Ordinal);

        (code, _, errors) = await KeysAsync("revoke", "--file", KeyFile, "--key-id", "000000000000");
        Assert.Equal(1, code);
        Assert.Contains("unknown key id '000000000000'", errors, StringComparison.Ordinal);

        (code, _, errors) = await KeysAsync("list", "--file", Path.Combine(_directory, "missing.yaml"));
        Assert.Equal(1, code);
        Assert.Contains("file not found", errors, StringComparison.Ordinal);

        (code, _, errors) = await KeysAsync("create", "--file", Path.Combine(_directory, "no", "such", "dir", "keys.yaml"), "--consumer", "shop");
        Assert.Equal(1, code);
        Assert.Contains("does not exist", errors, StringComparison.Ordinal);

        Assert.Equal(before, await File.ReadAllTextAsync(KeyFile));
    }

    [Fact]
    public async Task InvalidFile_ReportsFileLineColumn_AndIsNotOverwritten()
    {
        const string broken = "consumers:\n  shop:\n    grup: premium\n    keys:\n      - id: abc\n        sha256: xyz\n";
        await File.WriteAllTextAsync(KeyFile, broken);

        var (code, output, errors) = await KeysAsync("create", "--file", KeyFile, "--consumer", "shop");

        Assert.Equal(1, code);
        Assert.Equal("", output);
        Assert.Contains($"{KeyFile}:3:5: error: unknown key 'grup' in consumers.shop", errors, StringComparison.Ordinal);
        Assert.Contains("did you mean 'group'?", errors, StringComparison.Ordinal);
        Assert.Contains($"{KeyFile}:6:17: error: key 'abc' of consumer 'shop' has no valid SHA-256 hash", errors, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", errors, StringComparison.Ordinal);
        Assert.Equal(broken, await File.ReadAllTextAsync(KeyFile));
    }

    [Fact]
    public async Task AJsonFile_IsWrittenAsJson_AndReadBack_ByTheCommandsAndTheGatewaysReader()
    {
        var jsonFile = Path.Combine(_directory, "keys.json");
        var (code, output, errors) = await KeysAsync("create", "--file", jsonFile, "--consumer", "shop", "--group", "premium", "--scopes", "orders.read", "--expires", "90d");
        Assert.True(code == 0, errors);
        var key = Line(output, "key");
        (code, _, errors) = await KeysAsync("create", "--file", jsonFile, "--consumer", "alpha", "--name", "Team ${X}");
        Assert.True(code == 0, errors);

        var text = await File.ReadAllTextAsync(jsonFile);
        using (var document = JsonDocument.Parse(text))
        {
            Assert.Equal(["alpha", "shop"], document.RootElement.GetProperty("consumers").EnumerateObject().Select(c => c.Name));
            // JSON values are not expanded, so a literal ${ is written as it is (YAML writes $${).
            Assert.Equal("Team ${X}", document.RootElement.GetProperty("consumers").GetProperty("alpha").GetProperty("name").GetString());
        }

        Assert.DoesNotContain(key.Split('_', 3)[2], text, StringComparison.Ordinal);
        var diagnostics = new List<ConfigDiagnostic>();
        var (file, keys) = ApiKeyFileReader.Read(jsonFile, Encoding.UTF8.GetBytes(text), new ApiKeyOptions(), diagnostics);
        Assert.Empty(diagnostics);
        Assert.Equal(Start.AddDays(90), file!.Consumers["shop"].Keys[0].Expires);
        var decision = keys!.Authenticate(key, Start);
        Assert.True(decision.Allowed);
        Assert.Equal("premium", decision.Identity!.ConsumerGroup);
        Assert.Equal("Team ${X}", ApiKeyFileStore.Load(jsonFile, jsonFile, mustExist: true).Consumers["alpha"].Name);
    }

    [Theory]
    [InlineData("{\n  \"consumers\": {\n    \"shop\": {\n      \"grup\": \"premium\"\n    }\n  }\n}\n", 4, "unknown field 'grup' in consumers.shop")]
    [InlineData("{\n  \"consumers\": {\n    \"shop\": { \"keys\": [ { \"id\": \"abc\" } ], }\n  }\n}\n", 3, "")]
    [InlineData("{ \"consumers\": { \"shop\": { \"keys\": [ { \"id\": \"abc\", \"created\": \"yesterday\" } ] } } }", 1, "consumers.shop.keys[0].created: not a valid value")]
    [InlineData("{ \"consumers\": { \"shop\": \"premium\" } }", 1, "consumers.shop: not a valid value")]
    public void ABrokenJsonFile_IsReportedAtItsLine(string text, int line, string mentions)
    {
        var diagnostics = new List<ConfigDiagnostic>();
        var (file, keys) = ApiKeyFileReader.Read("keys.json", Encoding.UTF8.GetBytes(text), new ApiKeyOptions(), diagnostics);

        Assert.Null(file);
        Assert.Null(keys);
        var error = Assert.Single(diagnostics);
        Assert.Equal(("keys.json", line), (error.File, error.Line));
        Assert.Contains(mentions, error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", error.Message, StringComparison.Ordinal);
        // Said in the file's terms: no .NET type names from the serializer.
        Assert.DoesNotContain("Portcullis.", error.Message + error.Hint, StringComparison.Ordinal);
        Assert.DoesNotContain("System.", error.Message + error.Hint, StringComparison.Ordinal);
    }

    [Fact]
    public void AWrongRecordInAJsonFile_IsReportedAtItsValue_AndAnEmptyOrBomPrefixedFileIsFine()
    {
        const string text = "{\n  \"consumers\": {\n    \"ok\": { \"keys\": [ { \"id\": \"a\", \"sha256\": \"" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" + "\" } ] },\n    \"shop\": {\n      \"keys\": [\n        { \"id\": \"b\",\n          \"sha256\": \"xyz\" }\n      ]\n    }\n  }\n}\n";
        var diagnostics = new List<ConfigDiagnostic>();
        ApiKeyFileReader.Read("keys.json", Encoding.UTF8.GetBytes(text), new ApiKeyOptions(), diagnostics);

        var error = Assert.Single(diagnostics);
        Assert.Equal((7, 21), (error.Line, error.Column));
        Assert.Contains("key 'b' of consumer 'shop' has no valid SHA-256 hash", error.Message, StringComparison.Ordinal);

        foreach (var empty in new[] { "", "  \n", "\uFEFF{ \"consumers\": {} }" })
        {
            diagnostics.Clear();
            var (file, keys) = ApiKeyFileReader.Read("keys.json", [.. Encoding.UTF8.GetPreamble(), .. Encoding.UTF8.GetBytes(empty.TrimStart('\uFEFF'))], new ApiKeyOptions(), diagnostics);
            Assert.Empty(diagnostics);
            Assert.Empty(file!.Consumers);
            Assert.Empty(keys!.Keys);
        }
    }

    private async Task<string> StateAsync(string keyId)
    {
        var (code, output, _) = await KeysAsync("list", "--file", KeyFile);
        Assert.Equal(0, code);
        var row = output.Split('\n').Single(l => l.Contains(keyId, StringComparison.Ordinal));
        return Regex.Match(row, "(valid|expired|not-yet-valid|revoked)$").Value;
    }
}
