using System.CommandLine;
using System.Text.Json;
using Portcullis.Configuration;
using Portcullis.Observability;

namespace Portcullis.Cli;

/// <summary>
/// `portcullis audit verify FILE [FILE...]`: checks the hash chain of audit files (oldest first) and
/// exits 0 (prints the record count) or 1 naming the first broken record. Also the audit records
/// `portcullis keys create|rotate|revoke` append with `--audit FILE` or `--config FILE`.
/// </summary>
internal static class AuditCommand
{
    public static Command Create(TextWriter output, TextWriter errors)
    {
        var files = new Argument<string[]>("FILE") { Description = "Audit files, oldest first (e.g. audit.log.2 audit.log.1 audit.log).", Arity = ArgumentArity.OneOrMore };
        var verify = new Command("verify", "Check the hash chain of audit files; exit 0 when intact, 1 naming the first broken record (file:line, seq, what is wrong).") { files };
        verify.SetAction(result => Verify(result.GetRequiredValue(files), output, errors));
        return new Command("audit", "The tamper-evident audit log.") { verify };
    }

    internal static int Verify(IReadOnlyList<string> files, TextWriter output, TextWriter errors)
    {
        var result = AuditVerifier.Verify(files);
        if (result.Ok)
        {
            output.WriteLine(result.ToString());
            if (result.FirstSeq > 1) output.WriteLine($"note: the chain starts at seq {result.FirstSeq}; earlier records were rotated away or not given, so the first record's prev is taken as given");
            return PortcullisCli.Ok;
        }

        errors.WriteLine($"broken: {result}");
        return PortcullisCli.Invalid;
    }

    /// <summary>The `--audit FILE` and `--config FILE` options of the key commands.</summary>
    internal static (Option<string?> Audit, Option<string?> Config) KeyOptions() => (
        new Option<string?>("--audit") { Description = "Append an audit record of this change to this audit file (the gateway's observability.audit.path)." },
        new Option<string?>("--config", "-c") { Description = "The gateway's configuration: append an audit record to its observability.audit.path, if it has one." });

    /// <summary>
    /// After a key command succeeded: appends `keys.create|rotate|revoke` (key file, consumer or key id,
    /// the OS user) to the audit file named by --audit, or by the config's observability.audit.path.
    /// Returns the command's exit code, or 1 when the record could not be written.
    /// </summary>
    internal static int AfterKeys(int exitCode, System.CommandLine.ParseResult result, (Option<string?> Audit, Option<string?> Config) options, string action, string keyFile, KeyChange changed, TimeProvider time, TextWriter errors)
    {
        if (exitCode != PortcullisCli.Ok) return exitCode;
        var path = result.GetValue(options.Audit);
        if (path is null && result.GetValue(options.Config) is { } config)
        {
            var diagnostics = new List<ConfigDiagnostic>();
            var loaded = ConfigLoader.Load(config, Environment.GetEnvironmentVariable, diagnostics);
            if (loaded is null)
            {
                foreach (var d in diagnostics) errors.WriteLine(d);
                errors.WriteLine($"error: the change is made, but {config} could not be read to find the audit log");
                return PortcullisCli.Invalid;
            }

            if (loaded.Config.Observability.Audit.Path is { Length: > 0 } configured) path = loaded.Resolve(configured);
            else errors.WriteLine($"{config} has no observability.audit.path; no audit record written");
        }

        if (path is null) return exitCode;
        try
        {
            var body = new System.Buffers.ArrayBufferWriter<byte>(256);
            using (var writer = new Utf8JsonWriter(body))
            {
                writer.WriteStartObject();
                writer.WriteString("time", time.GetUtcNow());
                writer.WriteString("type", action);
                writer.WriteString("actor", "cli");
                writer.WriteString("user", Environment.UserName);
                writer.WriteString("host", Environment.MachineName);
                writer.WriteString("keyFile", Path.GetFullPath(keyFile));
                // What the command changed, never null: one consumer and key as strings, several as arrays.
                WriteOneOrMany(writer, "consumer", "consumers", changed.Consumers);
                WriteOneOrMany(writer, "keyId", "keyIds", changed.KeyIds);
                writer.WriteEndObject();
            }

            var file = new AuditFile(Path.GetFullPath(path), 0, 0);
            file.Append([body.WrittenSpan.ToArray()]);
            errors.WriteLine($"audit: {action} recorded as seq {file.State.Seq} in {path}");
            return exitCode;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            errors.WriteLine($"error: the change is made, but the audit record could not be written to {path}: {e.Message}");
            return PortcullisCli.Invalid;
        }
    }

    private static void WriteOneOrMany(Utf8JsonWriter writer, string one, string many, IReadOnlyList<string> values)
    {
        if (values.Count == 1)
        {
            writer.WriteString(one, values[0]);
        }
        else if (values.Count > 1)
        {
            writer.WriteStartArray(many);
            foreach (var value in values) writer.WriteStringValue(value);
            writer.WriteEndArray();
        }
    }
}

/// <summary>The consumers and keys a key command changed, for its audit record.</summary>
internal sealed class KeyChange
{
    private readonly List<string> _consumers = [];
    private readonly List<string> _keyIds = [];

    public IReadOnlyList<string> Consumers => _consumers;

    public IReadOnlyList<string> KeyIds => _keyIds;

    public void Add(string consumer, string keyId)
    {
        if (!_consumers.Contains(consumer)) _consumers.Add(consumer);
        _keyIds.Add(keyId);
    }
}
