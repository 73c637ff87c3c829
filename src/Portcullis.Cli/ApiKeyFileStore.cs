using System.Text;
using Portcullis.Configuration;
using Portcullis.Identity;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace Portcullis.Cli;

/// <summary>
/// The API key file on disk for `portcullis keys`: read and checked with the gateway's own binder and
/// compiler, written atomically (temporary file + rename), and locked against concurrent runs.
/// </summary>
internal static class ApiKeyFileStore
{
    public const string FileHeader = "# Managed by `portcullis keys`; holds SHA-256 hashes, never secrets.";

    private static readonly TimeSpan LockTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Reads and checks the key file with the gateway's own binder and compiler, so errors carry file:line:column.</summary>
    public static ApiKeyFile Load(string path, string full, bool mustExist)
    {
        if (!File.Exists(full))
        {
            if (Directory.Exists(full)) throw new KeysError($"{path}: cannot read API key file: it is a directory");
            if (mustExist) throw new KeysError($"{path}: cannot read API key file: file not found (create one with `portcullis keys create --file {path} --consumer NAME`)");
            return new ApiKeyFile();
        }

        byte[] content;
        try
        {
            content = File.ReadAllBytes(full);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new KeysError($"{path}: cannot read API key file: {ex.Message}");
        }

        var diagnostics = new List<ConfigDiagnostic>();
        var (file, _) = ApiKeyFileReader.Read(path, content, new ApiKeyOptions(), diagnostics);
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

    /// <summary>
    /// The file's text, consumers in id order and keys in creation order: YAML after a header comment, or, for a
    /// file named *.json, indented JSON with the same fields (JSON has no comments; its values are not expanded).
    /// </summary>
    public static string Serialize(ApiKeyFile file, bool json = false)
    {
        var escape = json ? (Func<string?, string?>)(v => v) : Escape;
        var document = new FileDocument();
        foreach (var (id, consumer) in file.Consumers.OrderBy(c => c.Key, StringComparer.Ordinal))
        {
            document.Consumers[id] = new ConsumerDocument
            {
                Name = escape(consumer.Name),
                Group = escape(consumer.Group),
                Scopes = consumer.Scopes.Count == 0 ? null : consumer.Scopes.Select(s => escape(s)!).ToList(),
                Keys = consumer.Keys.Select(k => new KeyDocument
                {
                    Id = escape(k.Id)!,
                    Sha256 = k.Sha256,
                    Created = k.Created is { } c ? KeysCommand.Format(c) : null,
                    NotBefore = k.NotBefore is { } n ? KeysCommand.Format(n) : null,
                    Expires = k.Expires is { } e ? KeysCommand.Format(e) : null,
                    Revoked = k.Revoked ? true : null,
                }).ToList(),
            };
        }

        if (json)
        {
            return System.Text.Json.JsonSerializer.Serialize(document, JsonWriting) + "\n";
        }

        var serializer = new SerializerBuilder()
            .WithNamingConvention(CamelCaseNamingConvention.Instance)
            .ConfigureDefaultValuesHandling(DefaultValuesHandling.OmitNull)
            .WithQuotingNecessaryStrings()
            .DisableAliases()
            .Build();
        return FileHeader + "\n" + serializer.Serialize(document);
    }

    private static readonly System.Text.Json.JsonSerializerOptions JsonWriting = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = System.Text.Json.JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>The gateway's binder expands ${VAR} in values; keep a literal ${ literal.</summary>
    private static string? Escape(string? value) => value?.Replace("${", "$${", StringComparison.Ordinal);

    /// <summary>Writes atomically: a temporary file beside the target, flushed to disk, then renamed over it.</summary>
    public static void Save(string full, ApiKeyFile file)
    {
        var text = Serialize(file, ApiKeyFileReader.IsJson(full));
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
    public static FileStream Lock(string path, string full)
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
}

/// <summary>A failure of a `portcullis keys` run that is not a usage error (exit code 1).</summary>
internal sealed class KeysError(string message) : Exception(message);
