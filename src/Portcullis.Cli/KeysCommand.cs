using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Portcullis.Configuration;
using Portcullis.Identity;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace Portcullis.Cli;

/// <summary>
/// `portcullis keys create|rotate|revoke|list`: manages the API key file the gateway watches. A new
/// secret is printed once and never stored: the file holds only SHA-256 hashes. Every change is written
/// atomically (temporary file + rename), so the gateway hot-reloads either the old or the new file.
/// Exit codes: 0 ok, 1 failure (unknown consumer or key, unreadable or invalid file), 2 usage error.
/// </summary>
internal static partial class KeysCommand
{
    private static readonly string[] ListHeader = ["CONSUMER", "GROUP", "SCOPES", "KEY", "SHA256", "CREATED", "NOT BEFORE", "EXPIRES", "STATE"];

    public const string FileHeader = "# Managed by `portcullis keys`; holds SHA-256 hashes, never secrets.";

    private static readonly TimeSpan DefaultOverlap = TimeSpan.FromHours(24);
    private static readonly TimeSpan LockTimeout = TimeSpan.FromSeconds(10);

    public static Command Create(TextWriter output, TextWriter errors) => Create(output, errors, TimeProvider.System);

    /// <summary>The command with a given clock for "now" (tests use a fake one).</summary>
    internal static Command Create(TextWriter output, TextWriter errors, TimeProvider time)
    {
        var keys = new Command("keys", "Manage API keys in a key file: the file keeps only SHA-256 hashes; a new secret is printed once.");

        var createFile = FileOption();
        var createConsumer = ConsumerOption("The consumer the key belongs to; created if new.");
        var createName = new Option<string?>("--name") { Description = "Display name of the consumer." };
        var createGroup = new Option<string?>("--group") { Description = "Consumer group (tier), e.g. premium." };
        var createScopes = new Option<string[]>("--scopes") { Description = "Scopes granted to the consumer, comma-separated (a,b).", AllowMultipleArgumentsPerToken = false };
        var createExpires = new Option<string?>("--expires") { Description = "When the key stops working: a duration from now (90d, 12h) or a date and time (2027-01-01T00:00:00Z)." };
        var createNotBefore = new Option<string?>("--not-before") { Description = "When the key starts working: a duration from now (1h) or a date and time." };
        var create = new Command("create", "Add a key to a consumer (creating the consumer if new) and print its secret once.")
        {
            createFile, createConsumer, createName, createGroup, createScopes, createExpires, createNotBefore,
        };
        var createAudit = AuditCommand.KeyOptions();
        create.Options.Add(createAudit.Audit);
        create.Options.Add(createAudit.Config);
        create.SetAction(result => AuditCommand.AfterKeys(Guard(errors, () => CreateKey(
            result.GetRequiredValue(createFile),
            result.GetRequiredValue(createConsumer),
            result.GetValue(createName),
            result.GetValue(createGroup),
            result.GetResult(createScopes) is null ? null : result.GetValue(createScopes),
            result.GetValue(createExpires),
            result.GetValue(createNotBefore),
            time,
            output,
            errors)), result, createAudit, "keys.create", result.GetRequiredValue(createFile), result.GetValue(createConsumer), null, time, errors));

        var rotateFile = FileOption();
        var rotateConsumer = ConsumerOption("The consumer whose key is rotated.");
        var rotateOverlap = new Option<string?>("--overlap") { Description = "How long the current keys keep working beside the new one. Default 24h." };
        var rotateExpires = new Option<string?>("--expires") { Description = "When the new key stops working: a duration from now (90d) or a date and time. Default never." };
        var rotate = new Command("rotate", "Add a new key and let the consumer's current keys expire after an overlap; prints the new secret once.")
        {
            rotateFile, rotateConsumer, rotateOverlap, rotateExpires,
        };
        var rotateAudit = AuditCommand.KeyOptions();
        rotate.Options.Add(rotateAudit.Audit);
        rotate.Options.Add(rotateAudit.Config);
        rotate.SetAction(result => AuditCommand.AfterKeys(Guard(errors, () => Rotate(
            result.GetRequiredValue(rotateFile),
            result.GetRequiredValue(rotateConsumer),
            result.GetValue(rotateOverlap),
            result.GetValue(rotateExpires),
            time,
            output,
            errors)), result, rotateAudit, "keys.rotate", result.GetRequiredValue(rotateFile), result.GetValue(rotateConsumer), null, time, errors));

        var revokeFile = FileOption();
        var revokeKeyId = new Option<string?>("--key-id") { Description = "The key to revoke (its id, as `keys list` shows)." };
        var revokeConsumer = new Option<string?>("--consumer") { Description = "Revoke every key of this consumer." };
        var revoke = new Command("revoke", "Mark a key (or all keys of a consumer) revoked; the record is kept, the key is refused after the reload.")
        {
            revokeFile, revokeKeyId, revokeConsumer,
        };
        revoke.Validators.Add(result =>
        {
            var hasKey = result.GetResult(revokeKeyId) is not null;
            var hasConsumer = result.GetResult(revokeConsumer) is not null;
            if (hasKey == hasConsumer) result.AddError("revoke needs exactly one of --key-id or --consumer.");
        });
        var revokeAudit = AuditCommand.KeyOptions();
        revoke.Options.Add(revokeAudit.Audit);
        revoke.Options.Add(revokeAudit.Config);
        revoke.SetAction(result => AuditCommand.AfterKeys(Guard(errors, () => Revoke(
            result.GetRequiredValue(revokeFile),
            result.GetValue(revokeKeyId),
            result.GetValue(revokeConsumer),
            output,
            errors)), result, revokeAudit, "keys.revoke", result.GetRequiredValue(revokeFile), result.GetValue(revokeConsumer), result.GetValue(revokeKeyId), time, errors));

        var listFile = FileOption();
        var listJson = new Option<bool>("--json") { Description = "Print JSON instead of a table." };
        var list = new Command("list", "List consumers and their keys with their state (never a secret; at most 8 characters of a hash).") { listFile, listJson };
        list.SetAction(result => Guard(errors, () => List(result.GetRequiredValue(listFile), result.GetValue(listJson), time, output)));

        keys.Subcommands.Add(create);
        keys.Subcommands.Add(rotate);
        keys.Subcommands.Add(revoke);
        keys.Subcommands.Add(list);
        return keys;
    }

    /// <summary>Runs `keys ...` arguments (args[0] == "keys") with a given clock, with the exit codes of <see cref="PortcullisCli"/>.</summary>
    internal static async Task<int> RunAsync(string[] args, TextWriter output, TextWriter errors, TimeProvider time, CancellationToken cancellationToken = default)
    {
        var root = new RootCommand("Portcullis") { Create(output, errors, time) };
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var error in parsed.Errors) await errors.WriteLineAsync("error: " + error.Message);
            await errors.WriteLineAsync("Run 'portcullis keys --help' for usage.");
            return PortcullisCli.Usage;
        }

        return await parsed.InvokeAsync(new InvocationConfiguration { Output = output, Error = errors }, cancellationToken);
    }

    private static Option<string> FileOption() =>
        new("--file", "-f") { Description = "The API key file (YAML), e.g. the identity.apiKeys.file of the gateway.", Required = true };

    private static Option<string> ConsumerOption(string description) =>
        new("--consumer") { Description = description, Required = true };

    // ------------------------------------------------------------------ commands

    private static int CreateKey(string path, string consumerId, string? name, string? group, string[]? scopesOption, string? expiresText, string? notBeforeText, TimeProvider time, TextWriter output, TextWriter errors)
    {
        var now = Now(time);
        CheckName("--consumer", consumerId);
        if (group is not null) CheckName("--group", group);
        if (name is not null && name.Any(char.IsControl)) throw new UsageError("--name cannot contain control characters");
        var scopes = scopesOption is null ? null : ParseScopes(scopesOption);
        var expires = expiresText is null ? (DateTimeOffset?)null : ParseWhen("--expires", expiresText, now);
        var notBefore = notBeforeText is null ? (DateTimeOffset?)null : ParseWhen("--not-before", notBeforeText, now);
        if (expires is { } end && end <= now) throw new UsageError($"--expires {expiresText} is not in the future ({Format(end)})");
        if (expires is { } e && notBefore is { } nb && nb >= e) throw new UsageError($"--not-before ({Format(nb)}) must be before --expires ({Format(e)})");

        var full = Path.GetFullPath(path);
        using var fileLock = Lock(path, full);
        var file = Load(path, full, mustExist: false);
        var consumers = new Dictionary<string, ApiKeyConsumer>(file.Consumers, StringComparer.Ordinal);
        var isNew = !consumers.TryGetValue(consumerId, out var consumer);
        consumer ??= new ApiKeyConsumer();
        if (!isNew)
        {
            if (name is not null && name != consumer.Name) errors.WriteLine($"consumer '{consumerId}': name changed from {Show(consumer.Name)} to {Show(name)}");
            if (group is not null && group != consumer.Group) errors.WriteLine($"consumer '{consumerId}': group changed from {Show(consumer.Group)} to {Show(group)} (for all its keys)");
            if (scopes is not null && !scopes.SequenceEqual(consumer.Scopes)) errors.WriteLine($"consumer '{consumerId}': scopes changed from [{string.Join(",", consumer.Scopes)}] to [{string.Join(",", scopes)}] (for all its keys)");
        }

        consumer = consumer with
        {
            Name = name ?? consumer.Name,
            Group = group ?? consumer.Group,
            Scopes = scopes ?? consumer.Scopes,
        };
        var (key, record) = NewKey(file, now, notBefore, expires);
        consumers[consumerId] = consumer with { Keys = [.. consumer.Keys, record] };
        Save(full, new ApiKeyFile { Consumers = consumers });

        if (isNew) errors.WriteLine($"created consumer '{consumerId}'");
        PrintSecret(output, errors, path, consumerId, key, record);
        return PortcullisCli.Ok;
    }

    private static int Rotate(string path, string consumerId, string? overlapText, string? expiresText, TimeProvider time, TextWriter output, TextWriter errors)
    {
        var now = Now(time);
        var overlap = DefaultOverlap;
        if (overlapText is not null && !DurationFormat.TryParse(overlapText, out overlap, out var error))
        {
            throw new UsageError($"--overlap '{overlapText}': {error} (expected a duration such as 30m, 24h or 7d)");
        }

        var expires = expiresText is null ? (DateTimeOffset?)null : ParseWhen("--expires", expiresText, now);
        if (expires is { } end && end <= now) throw new UsageError($"--expires {expiresText} is not in the future ({Format(end)})");
        var cutoff = now + overlap;
        if (expires is { } newEnd && newEnd <= cutoff) throw new UsageError($"--expires ({Format(newEnd)}) must be after the overlap ends ({Format(cutoff)})");

        var full = Path.GetFullPath(path);
        using var fileLock = Lock(path, full);
        var file = Load(path, full, mustExist: true);
        var consumer = FindConsumer(path, file, consumerId);

        var notes = new List<string>();
        var records = new List<ApiKeyRecord>();
        foreach (var record in consumer.Keys)
        {
            // Only shorten: a current key that already ends before the overlap keeps its own end.
            if (record.StateAt(now) == ApiKeyState.Valid && (record.Expires is null || record.Expires > cutoff))
            {
                records.Add(record with { Expires = cutoff });
                notes.Add($"key {record.Id} now expires at {Format(cutoff)} (in {DurationFormat.Format(overlap)})");
            }
            else
            {
                if (record.StateAt(now) == ApiKeyState.Valid) notes.Add($"key {record.Id} keeps its expiry {Format(record.Expires!.Value)}");
                records.Add(record);
            }
        }

        var (key, newRecord) = NewKey(file, now, null, expires);
        records.Add(newRecord);
        var consumers = new Dictionary<string, ApiKeyConsumer>(file.Consumers, StringComparer.Ordinal) { [consumerId] = consumer with { Keys = records } };
        Save(full, new ApiKeyFile { Consumers = consumers });

        if (notes.Count == 0) errors.WriteLine($"consumer '{consumerId}' had no valid key; the new key is its only one");
        foreach (var note in notes) errors.WriteLine(note);
        PrintSecret(output, errors, path, consumerId, key, newRecord);
        return PortcullisCli.Ok;
    }

    private static int Revoke(string path, string? keyId, string? consumerId, TextWriter output, TextWriter errors)
    {
        var full = Path.GetFullPath(path);
        using var fileLock = Lock(path, full);
        var file = Load(path, full, mustExist: true);
        var consumers = new Dictionary<string, ApiKeyConsumer>(file.Consumers, StringComparer.Ordinal);
        var revoked = new List<(string Consumer, string Key)>();
        var already = new List<(string Consumer, string Key)>();

        IEnumerable<string> targets;
        if (consumerId is not null)
        {
            FindConsumer(path, file, consumerId);
            targets = [consumerId];
        }
        else
        {
            targets = consumers.Where(c => c.Value.Keys.Any(k => k.Id == keyId)).Select(c => c.Key).ToList();
            if (!targets.Any())
            {
                var suggestion = YamlConfigBinder.Suggest(keyId!, consumers.Values.SelectMany(c => c.Keys).Select(k => k.Id));
                throw new KeysError($"{path}: unknown key id '{keyId}'" + (suggestion is null ? "" : $" (did you mean '{suggestion}'?)"));
            }
        }

        foreach (var id in targets)
        {
            var consumer = consumers[id];
            var records = consumer.Keys.Select(record =>
            {
                if (keyId is not null && record.Id != keyId) return record;
                if (record.Revoked)
                {
                    already.Add((id, record.Id));
                    return record;
                }

                revoked.Add((id, record.Id));
                return record with { Revoked = true };
            }).ToList();
            consumers[id] = consumer with { Keys = records };
        }

        if (revoked.Count > 0) Save(full, new ApiKeyFile { Consumers = consumers });
        foreach (var (consumer, key) in revoked) output.WriteLine($"revoked key {key} of consumer '{consumer}'");
        foreach (var (consumer, key) in already) errors.WriteLine($"key {key} of consumer '{consumer}' was already revoked");
        if (revoked.Count == 0 && already.Count == 0) errors.WriteLine($"consumer '{consumerId}' has no keys; nothing to revoke");
        if (revoked.Count > 0) errors.WriteLine($"wrote {path}; a gateway watching it refuses the key(s) after its reload");
        return PortcullisCli.Ok;
    }

    private static int List(string path, bool json, TimeProvider time, TextWriter output)
    {
        var now = time.GetUtcNow();
        var full = Path.GetFullPath(path);
        var file = Load(path, full, mustExist: true);
        var consumers = file.Consumers.OrderBy(c => c.Key, StringComparer.Ordinal).ToList();
        if (json)
        {
            using var buffer = new MemoryStream();
            using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
            {
                writer.WriteStartObject();
                writer.WriteStartArray("consumers");
                foreach (var (id, consumer) in consumers)
                {
                    writer.WriteStartObject();
                    writer.WriteString("id", id);
                    if (consumer.Name is not null) writer.WriteString("name", consumer.Name);
                    if (consumer.Group is not null) writer.WriteString("group", consumer.Group);
                    writer.WriteStartArray("scopes");
                    foreach (var scope in consumer.Scopes) writer.WriteStringValue(scope);
                    writer.WriteEndArray();
                    writer.WriteStartArray("keys");
                    foreach (var record in consumer.Keys)
                    {
                        writer.WriteStartObject();
                        writer.WriteString("id", record.Id);
                        writer.WriteString("sha256Prefix", HashPrefix(record.Sha256));
                        WriteTime(writer, "created", record.Created);
                        WriteTime(writer, "notBefore", record.NotBefore);
                        WriteTime(writer, "expires", record.Expires);
                        writer.WriteBoolean("revoked", record.Revoked);
                        writer.WriteString("state", record.StateAt(now).Name());
                        writer.WriteEndObject();
                    }

                    writer.WriteEndArray();
                    writer.WriteEndObject();
                }

                writer.WriteEndArray();
                writer.WriteEndObject();
            }

            output.WriteLine(Encoding.UTF8.GetString(buffer.ToArray()));
            return PortcullisCli.Ok;
        }

        var rows = new List<string[]> { ListHeader };
        foreach (var (id, consumer) in consumers)
        {
            var scopes = consumer.Scopes.Count == 0 ? "-" : string.Join(",", consumer.Scopes);
            if (consumer.Keys.Count == 0) rows.Add([id, consumer.Group ?? "-", scopes, "-", "-", "-", "-", "-", "no keys"]);
            foreach (var record in consumer.Keys)
            {
                rows.Add([id, consumer.Group ?? "-", scopes, record.Id, HashPrefix(record.Sha256), FormatOrDash(record.Created), FormatOrDash(record.NotBefore), FormatOrDash(record.Expires), record.StateAt(now).Name()]);
            }
        }

        if (consumers.Count == 0)
        {
            output.WriteLine($"{path}: no consumers");
            return PortcullisCli.Ok;
        }

        var widths = Enumerable.Range(0, rows[0].Length).Select(i => rows.Max(r => r[i].Length)).ToArray();
        foreach (var row in rows)
        {
            output.WriteLine(string.Join("  ", row.Select((cell, i) => i == row.Length - 1 ? cell : cell.PadRight(widths[i]))).TrimEnd());
        }

        return PortcullisCli.Ok;
    }

    // ------------------------------------------------------------------ helpers

    private static void PrintSecret(TextWriter output, TextWriter errors, string path, string consumerId, string key, ApiKeyRecord record)
    {
        output.WriteLine($"consumer: {consumerId}");
        output.WriteLine($"key-id: {record.Id}");
        if (record.NotBefore is { } notBefore) output.WriteLine($"not-before: {Format(notBefore)}");
        if (record.Expires is { } expires) output.WriteLine($"expires: {Format(expires)}");
        output.WriteLine($"key: {key}");
        errors.WriteLine($"wrote {path} (SHA-256 hash only). Store the key now: it is shown only this once and cannot be recovered.");
    }

    private static (string Key, ApiKeyRecord Record) NewKey(ApiKeyFile file, DateTimeOffset now, DateTimeOffset? notBefore, DateTimeOffset? expires)
    {
        var taken = file.Consumers.Values.SelectMany(c => c.Keys).Select(k => k.Id).ToHashSet(StringComparer.Ordinal);
        while (true)
        {
            var created = ApiKeyGenerator.Create(now, notBefore, expires);
            if (!taken.Contains(created.Record.Id)) return created;
        }
    }

    private static ApiKeyConsumer FindConsumer(string path, ApiKeyFile file, string consumerId)
    {
        if (file.Consumers.TryGetValue(consumerId, out var consumer)) return consumer;
        var suggestion = YamlConfigBinder.Suggest(consumerId, file.Consumers.Keys);
        throw new KeysError($"{path}: unknown consumer '{consumerId}'" + (suggestion is null ? "" : $" (did you mean '{suggestion}'?)"));
    }

    /// <summary>Now, to the millisecond (the file shows no more precision than that).</summary>
    private static DateTimeOffset Now(TimeProvider time)
    {
        var now = time.GetUtcNow();
        return new DateTimeOffset(now.Ticks - now.Ticks % TimeSpan.TicksPerMillisecond, TimeSpan.Zero);
    }

    /// <summary>A duration from now (90d, 24h) or an absolute date and time (2027-01-01T00:00:00Z; UTC when no offset).</summary>
    internal static DateTimeOffset ParseWhen(string option, string text, DateTimeOffset now)
    {
        var trimmed = text.Trim();
        if (trimmed.Length > 0 && char.IsAsciiDigit(trimmed[0]) && !IsoDateStart().IsMatch(trimmed))
        {
            if (DurationFormat.TryParse(trimmed, out var duration, out var error))
            {
                try
                {
                    return now + duration;
                }
                catch (ArgumentOutOfRangeException)
                {
                    throw new UsageError($"{option} '{text}': duration too large");
                }
            }

            throw new UsageError($"{option} '{text}': {error} (expected a duration such as 90d or 24h, or a date and time such as 2027-01-01T00:00:00Z)");
        }

        if (IsoDateStart().IsMatch(trimmed) && DateTimeOffset.TryParse(trimmed, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var at))
        {
            return at.ToUniversalTime();
        }

        throw new UsageError($"{option} '{text}' is neither a duration (90d, 24h) nor a date and time (2027-01-01T00:00:00Z)");
    }

    private static List<string> ParseScopes(string[] values)
    {
        var scopes = new List<string>();
        foreach (var value in values)
        {
            foreach (var scope in value.Split([',', ' '], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                // RFC 6749 scope-token: printable ASCII except space, " and \.
                if (!ScopeToken().IsMatch(scope)) throw new UsageError($"--scopes: '{scope}' is not a valid scope (printable ASCII without spaces, quotes or backslashes)");
                if (!scopes.Contains(scope, StringComparer.Ordinal)) scopes.Add(scope);
            }
        }

        return scopes;
    }

    /// <summary>Consumer ids and groups travel in request headers and map lookups: keep them to a safe alphabet.</summary>
    private static void CheckName(string option, string value)
    {
        if (!SafeName().IsMatch(value))
        {
            throw new UsageError($"{option} '{value}' is not allowed: use 1-128 letters, digits and . _ - : @ (starting with a letter or digit)");
        }
    }

    private static string HashPrefix(string sha256) => sha256.Length <= 8 ? sha256 : sha256[..8];

    private static string Format(DateTimeOffset value) =>
        value.ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss.FFF'Z'", CultureInfo.InvariantCulture);

    private static string FormatOrDash(DateTimeOffset? value) => value is { } v ? Format(v) : "-";

    private static string Show(string? value) => value is null ? "(none)" : $"'{value}'";

    private static void WriteTime(Utf8JsonWriter writer, string name, DateTimeOffset? value)
    {
        if (value is { } v) writer.WriteString(name, Format(v));
        else writer.WriteNull(name);
    }

    private static int Guard(TextWriter errors, Func<int> action)
    {
        try
        {
            return action();
        }
        catch (UsageError ex)
        {
            errors.WriteLine("error: " + ex.Message);
            errors.WriteLine("Run 'portcullis keys --help' for usage.");
            return PortcullisCli.Usage;
        }
        catch (KeysError ex)
        {
            errors.WriteLine(ex.Message);
            return PortcullisCli.Invalid;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            errors.WriteLine("error: " + ex.Message);
            return PortcullisCli.Invalid;
        }
    }

    // ------------------------------------------------------------------ the file

    /// <summary>Reads and checks the key file with the gateway's own binder and compiler, so errors carry file:line:column.</summary>
    internal static ApiKeyFile Load(string path, string full, bool mustExist)
    {
        if (!File.Exists(full))
        {
            if (Directory.Exists(full)) throw new KeysError($"{path}: cannot read API key file: it is a directory");
            if (mustExist) throw new KeysError($"{path}: cannot read API key file: file not found (create one with `portcullis keys create --file {path} --consumer NAME`)");
            return new ApiKeyFile();
        }

        string text;
        try
        {
            text = File.ReadAllText(full);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new KeysError($"{path}: cannot read API key file: {ex.Message}");
        }

        // Blank, or nothing but comments: an empty store.
        if (text.Split('\n').All(line => line.Trim().Length == 0 || line.TrimStart().StartsWith('#'))) return new ApiKeyFile();

        var diagnostics = new List<ConfigDiagnostic>();
        var locations = new SourceLocations(path);
        var file = new YamlConfigBinder(path, _ => null, diagnostics, locations).BindDocument<ApiKeyFile>(text);
        if (file is not null)
        {
            CompiledApiKeys.Compile(new ApiKeyOptions(), file, (keyPath, message) =>
            {
                var (line, column) = locations.Of(keyPath);
                diagnostics.Add(new ConfigDiagnostic(path, line, column, message));
            });
        }

        var errors = diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error).ToList();
        if (file is null || errors.Count > 0)
        {
            var message = new StringBuilder();
            foreach (var error in errors) message.AppendLine(error.ToString());
            message.Append($"{path}: {errors.Count} error(s); the API key file is not valid (nothing was changed).");
            throw new KeysError(message.ToString());
        }

        return file;
    }

    /// <summary>The file's text: header comment, then YAML with consumers in id order and keys in creation order.</summary>
    internal static string Serialize(ApiKeyFile file)
    {
        var document = new FileDocument();
        foreach (var (id, consumer) in file.Consumers.OrderBy(c => c.Key, StringComparer.Ordinal))
        {
            document.Consumers[id] = new ConsumerDocument
            {
                Name = Escape(consumer.Name),
                Group = Escape(consumer.Group),
                Scopes = consumer.Scopes.Count == 0 ? null : consumer.Scopes.Select(s => Escape(s)!).ToList(),
                Keys = consumer.Keys.Select(k => new KeyDocument
                {
                    Id = Escape(k.Id)!,
                    Sha256 = k.Sha256,
                    Created = k.Created is { } c ? Format(c) : null,
                    NotBefore = k.NotBefore is { } n ? Format(n) : null,
                    Expires = k.Expires is { } e ? Format(e) : null,
                    Revoked = k.Revoked ? true : null,
                }).ToList(),
            };
        }

        var serializer = new SerializerBuilder()
            .WithNamingConvention(CamelCaseNamingConvention.Instance)
            .ConfigureDefaultValuesHandling(DefaultValuesHandling.OmitNull)
            .WithQuotingNecessaryStrings()
            .DisableAliases()
            .Build();
        return FileHeader + "\n" + serializer.Serialize(document);
    }

    /// <summary>The gateway's binder expands ${VAR} in values; keep a literal ${ literal.</summary>
    private static string? Escape(string? value) => value?.Replace("${", "$${", StringComparison.Ordinal);

    /// <summary>Writes atomically: a temporary file beside the target, flushed to disk, then renamed over it.</summary>
    private static void Save(string full, ApiKeyFile file)
    {
        var text = Serialize(file);
        var directory = Path.GetDirectoryName(full)!;
        var temporary = Path.Combine(directory, $".{Path.GetFileName(full)}.tmp-{Guid.NewGuid():N}");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                stream.Write(Encoding.UTF8.GetBytes(text));
                stream.Flush(flushToDisk: true);
            }

            if (!OperatingSystem.IsWindows() && File.Exists(full)) File.SetUnixFileMode(temporary, File.GetUnixFileMode(full));
            File.Move(temporary, full, overwrite: true);
        }
        catch
        {
            try
            {
                File.Delete(temporary);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // Best effort: the original file is untouched either way.
            }

            throw;
        }
    }

    /// <summary>
    /// Serialises concurrent `portcullis keys` runs on one file (read-modify-write), so a revoke racing a
    /// create is never lost. The lock file stays beside the key file; the gateway ignores it.
    /// </summary>
    private static FileStream Lock(string path, string full)
    {
        var lockPath = full + ".lock";
        var directory = Path.GetDirectoryName(full);
        if (directory is not null && !Directory.Exists(directory)) throw new KeysError($"{path}: cannot write API key file: directory '{directory}' does not exist");
        var deadline = DateTime.UtcNow + LockTimeout;
        while (true)
        {
            try
            {
                return new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (DateTime.UtcNow < deadline && File.Exists(lockPath))
            {
                Thread.Sleep(50);
            }
            catch (IOException ex) when (File.Exists(lockPath))
            {
                throw new KeysError($"{path}: another `portcullis keys` is changing this file (lock {lockPath} held for {LockTimeout.TotalSeconds:0}s): {ex.Message}");
            }
        }
    }

    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")]
    private static partial Regex SafeName();

    [GeneratedRegex(@"^[\x21\x23-\x5B\x5D-\x7E]+$")]
    private static partial Regex ScopeToken();

    [GeneratedRegex(@"^\d{4}-\d{2}-\d{2}")]
    private static partial Regex IsoDateStart();

    internal sealed class FileDocument
    {
        public SortedDictionary<string, ConsumerDocument> Consumers { get; } = new(StringComparer.Ordinal);
    }

    internal sealed class ConsumerDocument
    {
        public string? Name { get; set; }

        public string? Group { get; set; }

        public List<string>? Scopes { get; set; }

        public List<KeyDocument> Keys { get; set; } = [];
    }

    internal sealed class KeyDocument
    {
        public string Id { get; set; } = "";

        public string Sha256 { get; set; } = "";

        public string? Created { get; set; }

        public string? NotBefore { get; set; }

        public string? Expires { get; set; }

        public bool? Revoked { get; set; }
    }

    private sealed class UsageError(string message) : Exception(message);

    private sealed class KeysError(string message) : Exception(message);
}
