using System.CommandLine;
using System.Globalization;
using Portcullis.Configuration;
using Portcullis.Identity;

namespace Portcullis.Cli;

/// <summary>
/// `portcullis keys create|rotate|revoke|list`: manages the API key file the gateway watches. A new
/// secret is printed once and never stored: the file holds only SHA-256 hashes. Every change is written
/// atomically (temporary file + rename), so the gateway hot-reloads either the old or the new file.
/// Exit codes: 0 ok, 1 failure (unknown consumer or key, unreadable or invalid file), 2 usage error.
/// </summary>
internal static class KeysCommand
{
    private static readonly TimeSpan DefaultOverlap = TimeSpan.FromHours(24);

    public static Command Create(TextWriter output, TextWriter errors) => Create(output, errors, TimeProvider.System);

    /// <summary>The command with a given clock for "now" (tests use a fake one).</summary>
    internal static Command Create(TextWriter output, TextWriter errors, TimeProvider time)
    {
        var keys = new Command("keys", "Manage API keys in a key file: the file keeps only SHA-256 hashes; a new secret is printed once.");

        keys.Subcommands.Add(CreateCommand(output, errors, time));
        keys.Subcommands.Add(RotateCommand(output, errors, time));
        keys.Subcommands.Add(RevokeCommand(output, errors, time));
        keys.Subcommands.Add(ListCommand(output, errors, time));
        return keys;
    }

    /// <summary>`keys create`: adds a key to a consumer (creating it if new) and prints the secret once.</summary>
    private static Command CreateCommand(TextWriter output, TextWriter errors, TimeProvider time)
    {
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
        create.SetAction(result =>
        {
            var changed = new KeyChange();
            return AuditCommand.AfterKeys(Guard(errors, () => CreateKey(
            result.GetRequiredValue(createFile),
            result.GetRequiredValue(createConsumer),
            result.GetValue(createName),
            result.GetValue(createGroup),
            result.GetResult(createScopes) is null ? null : result.GetValue(createScopes),
            result.GetValue(createExpires),
            result.GetValue(createNotBefore),
            time,
            output,
            errors,
            changed)), result, createAudit, "keys.create", result.GetRequiredValue(createFile), changed, time, errors);
        });
        return create;
    }

    /// <summary>`keys rotate`: adds a new key and lets the current ones expire after an overlap.</summary>
    private static Command RotateCommand(TextWriter output, TextWriter errors, TimeProvider time)
    {
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
        rotate.SetAction(result =>
        {
            var changed = new KeyChange();
            return AuditCommand.AfterKeys(Guard(errors, () => Rotate(
            result.GetRequiredValue(rotateFile),
            result.GetRequiredValue(rotateConsumer),
            result.GetValue(rotateOverlap),
            result.GetValue(rotateExpires),
            time,
            output,
            errors,
            changed)), result, rotateAudit, "keys.rotate", result.GetRequiredValue(rotateFile), changed, time, errors);
        });
        return rotate;
    }

    /// <summary>`keys revoke`: marks one key, or all keys of a consumer, revoked.</summary>
    private static Command RevokeCommand(TextWriter output, TextWriter errors, TimeProvider time)
    {
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
        revoke.SetAction(result =>
        {
            var changed = new KeyChange();
            return AuditCommand.AfterKeys(Guard(errors, () => Revoke(
            result.GetRequiredValue(revokeFile),
            result.GetValue(revokeKeyId),
            result.GetValue(revokeConsumer),
            output,
            errors,
            changed)), result, revokeAudit, "keys.revoke", result.GetRequiredValue(revokeFile), changed, time, errors);
        });
        return revoke;
    }

    /// <summary>`keys list`: consumers and their keys, as a table or JSON.</summary>
    private static Command ListCommand(TextWriter output, TextWriter errors, TimeProvider time)
    {
        var listFile = FileOption();
        var listJson = new Option<bool>("--json") { Description = "Print JSON instead of a table." };
        var list = new Command("list", "List consumers and their keys with their state (never a secret; at most 8 characters of a hash).") { listFile, listJson };
        list.SetAction(result => Guard(errors, () => KeysListing.List(result.GetRequiredValue(listFile), result.GetValue(listJson), time, output)));
        return list;
    }

    /// <summary>Runs `keys ...` arguments (args[0] == "keys") with a given clock, with the exit codes of <see cref="PortcullisCli"/>.</summary>
    internal static async Task<int> RunAsync(string[] args, TextWriter output, TextWriter errors, TimeProvider time, CancellationToken cancellationToken = default)
    {
        var root = new RootCommand("Portcullis") { Create(output, errors, time) };
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0) return await PortcullisCli.UsageErrorAsync(parsed, errors);

        return await parsed.InvokeAsync(new InvocationConfiguration { Output = output, Error = errors }, cancellationToken);
    }

    private static Option<string> FileOption() =>
        new("--file", "-f") { Description = "The API key file (YAML), e.g. the identity.apiKeys.file of the gateway.", Required = true };

    private static Option<string> ConsumerOption(string description) =>
        new("--consumer") { Description = description, Required = true };

    // ------------------------------------------------------------------ commands

    private static int CreateKey(string path, string consumerId, string? name, string? group, string[]? scopesOption, string? expiresText, string? notBeforeText, TimeProvider time, TextWriter output, TextWriter errors, KeyChange changed)
    {
        var now = Now(time);
        KeysArguments.CheckName("--consumer", consumerId);
        if (group is not null) KeysArguments.CheckName("--group", group);
        if (name is not null && name.Any(char.IsControl)) throw new KeysUsageError("--name cannot contain control characters");
        var scopes = scopesOption is null ? null : KeysArguments.ParseScopes(scopesOption);
        var expires = expiresText is null ? (DateTimeOffset?)null : KeysArguments.ParseWhen("--expires", expiresText, now);
        var notBefore = notBeforeText is null ? (DateTimeOffset?)null : KeysArguments.ParseWhen("--not-before", notBeforeText, now);
        if (expires is { } end && end <= now) throw new KeysUsageError($"--expires {expiresText} is not in the future ({Format(end)})");
        if (expires is { } e && notBefore is { } nb && nb >= e) throw new KeysUsageError($"--not-before ({Format(nb)}) must be before --expires ({Format(e)})");

        var full = Path.GetFullPath(path);
        using var fileLock = ApiKeyFileStore.Lock(path, full);
        var file = ApiKeyFileStore.Load(path, full, mustExist: false);
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
        ApiKeyFileStore.Save(full, new ApiKeyFile { Consumers = consumers });

        changed.Add(consumerId, record.Id);
        if (isNew) errors.WriteLine($"created consumer '{consumerId}'");
        PrintSecret(output, errors, path, consumerId, key, record);
        return PortcullisCli.Ok;
    }

    private static int Rotate(string path, string consumerId, string? overlapText, string? expiresText, TimeProvider time, TextWriter output, TextWriter errors, KeyChange changed)
    {
        var now = Now(time);
        var overlap = DefaultOverlap;
        if (overlapText is not null && !DurationFormat.TryParse(overlapText, out overlap, out var error))
        {
            throw new KeysUsageError($"--overlap '{overlapText}': {error} (expected a duration such as 30m, 24h or 7d)");
        }

        var expires = expiresText is null ? (DateTimeOffset?)null : KeysArguments.ParseWhen("--expires", expiresText, now);
        if (expires is { } end && end <= now) throw new KeysUsageError($"--expires {expiresText} is not in the future ({Format(end)})");
        var cutoff = now + overlap;
        if (expires is { } newEnd && newEnd <= cutoff) throw new KeysUsageError($"--expires ({Format(newEnd)}) must be after the overlap ends ({Format(cutoff)})");

        var full = Path.GetFullPath(path);
        using var fileLock = ApiKeyFileStore.Lock(path, full);
        var file = ApiKeyFileStore.Load(path, full, mustExist: true);
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
        ApiKeyFileStore.Save(full, new ApiKeyFile { Consumers = consumers });

        changed.Add(consumerId, newRecord.Id);
        if (notes.Count == 0) errors.WriteLine($"consumer '{consumerId}' had no valid key; the new key is its only one");
        foreach (var note in notes) errors.WriteLine(note);
        PrintSecret(output, errors, path, consumerId, key, newRecord);
        return PortcullisCli.Ok;
    }

    private static int Revoke(string path, string? keyId, string? consumerId, TextWriter output, TextWriter errors, KeyChange changed)
    {
        var full = Path.GetFullPath(path);
        using var fileLock = ApiKeyFileStore.Lock(path, full);
        var file = ApiKeyFileStore.Load(path, full, mustExist: true);
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

        if (revoked.Count > 0) ApiKeyFileStore.Save(full, new ApiKeyFile { Consumers = consumers });
        foreach (var (consumer, key) in revoked)
        {
            changed.Add(consumer, key);
            output.WriteLine($"revoked key {key} of consumer '{consumer}'");
        }

        foreach (var (consumer, key) in already) errors.WriteLine($"key {key} of consumer '{consumer}' was already revoked");
        if (revoked.Count == 0 && already.Count == 0) errors.WriteLine($"consumer '{consumerId}' has no keys; nothing to revoke");
        if (revoked.Count > 0) errors.WriteLine($"wrote {path}; a gateway watching it refuses the key(s) after its reload");
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

    internal static string Format(DateTimeOffset value) =>
        value.ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss.FFF'Z'", CultureInfo.InvariantCulture);

    private static string Show(string? value) => value is null ? "(none)" : $"'{value}'";

    private static int Guard(TextWriter errors, Func<int> action)
    {
        try
        {
            return action();
        }
        catch (KeysUsageError ex)
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

}
