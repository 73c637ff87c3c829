using System.Security.Cryptography;
using System.Text;

namespace Portcullis.Configuration;

/// <summary>
/// What every capability compiler shares while one config file is compiled: the loaded config, the
/// diagnostics (reported at the key's file:line:column), the files a snapshot depends on (watched, and
/// part of its fingerprint), the environment, and the clock.
/// </summary>
internal sealed class CompileContext
{
    private readonly List<ConfigDiagnostic> _diagnostics;
    private readonly TimeProvider _time;

    public CompileContext(LoadedConfig loaded, List<ConfigDiagnostic> diagnostics, Func<string, string?> environment, TimeProvider time)
    {
        Loaded = loaded;
        _diagnostics = diagnostics;
        Environment = environment;
        _time = time;
        Files = [.. loaded.Files];
        FileContents = [loaded.Text];
    }

    public LoadedConfig Loaded { get; }

    public PortcullisConfig Config => Loaded.Config;

    /// <summary>Reads an environment variable (tests pass their own lookup).</summary>
    public Func<string, string?> Environment { get; }

    public DateTimeOffset Now => _time.GetUtcNow();

    /// <summary>The config file and every file it references, in the order they were read (watched for changes).</summary>
    public List<string> Files { get; }

    /// <summary>What the fingerprint is computed over: file texts, or a hash where the content is a secret.</summary>
    public List<string> FileContents { get; }

    public bool HasErrors => _diagnostics.Any(d => d.Severity == DiagnosticSeverity.Error);

    /// <summary>SHA-256 over everything in <see cref="FileContents"/>.</summary>
    /// <remarks>
    /// The same digest as hashing the contents joined with NUL, without building that string (a million-line map
    /// file is 16 MB of text): each content is encoded in 64 KiB chunks into one incremental hash.
    /// </remarks>
    public string Fingerprint
    {
        get
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var encoder = Encoding.UTF8.GetEncoder();
            var buffer = new byte[Encoding.UTF8.GetMaxByteCount(ChunkChars)];
            for (var i = 0; i < FileContents.Count; i++)
            {
                if (i > 0) hash.AppendData([0]);
                var text = FileContents[i].AsSpan();
                do
                {
                    var chunk = text[..Math.Min(ChunkChars, text.Length)];
                    text = text[chunk.Length..];
                    var written = encoder.GetBytes(chunk, buffer, flush: text.IsEmpty);
                    hash.AppendData(buffer, 0, written);
                }
                while (!text.IsEmpty);
            }

            return Convert.ToHexStringLower(hash.GetHashAndReset());
        }
    }

    private const int ChunkChars = 32 * 1024;

    public void Error(string path, string message, string? hint = null)
    {
        var (file, line, column) = Loaded.Locations.At(path);
        _diagnostics.Add(new ConfigDiagnostic(file, line, column, message, hint));
    }

    public void Warning(string path, string message, string? hint = null)
    {
        var (file, line, column) = Loaded.Locations.At(path);
        _diagnostics.Add(new ConfigDiagnostic(file, line, column, message, hint, DiagnosticSeverity.Warning));
    }

    public void Add(ConfigDiagnostic diagnostic) => _diagnostics.Add(diagnostic);

    /// <summary>
    /// A client secret from exactly one of an environment variable or a file (relative to the config file,
    /// trailing newline ignored); null after reporting what is wrong at PATH.clientSecretEnv/File. A secret
    /// file is watched, and its hash (never the secret) goes into the fingerprint so a rotated secret reloads.
    /// </summary>
    public string? ResolveClientSecret(string path, string owner, string? secretEnv, string? secretFile)
    {
        if (secretEnv is not null && secretFile is not null)
        {
            Error(path + ".clientSecretFile", $"{owner} has both clientSecretEnv and clientSecretFile", "keep one");
            return null;
        }

        if (secretEnv is not null)
        {
            var secret = Environment(secretEnv);
            if (!string.IsNullOrEmpty(secret)) return secret;
            Error(path + ".clientSecretEnv", $"environment variable '{secretEnv}' is not set", "set it to the client secret before starting the gateway");
            return null;
        }

        if (secretFile is null)
        {
            Error(path, $"{owner} has no client secret", "add clientSecretEnv: VARIABLE (or clientSecretFile: PATH)");
            return null;
        }

        var full = Loaded.Resolve(secretFile);
        try
        {
            var secret = File.ReadAllText(full).TrimEnd('\r', '\n');
            Files.Add(full);
            FileContents.Add("secret:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(secret))));
            if (secret.Length > 0) return secret;
            Error(path + ".clientSecretFile", $"client secret file '{secretFile}' ({full}) is empty");
            return null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            Error(path + ".clientSecretFile", $"cannot read client secret file '{secretFile}' ({full}): {ConfigLoader.Describe(ex)}", "paths are relative to the config file");
            return null;
        }
    }

    /// <summary>An absolute http:// or https:// URL with a host.</summary>
    public static bool IsHttpUrl(string text) =>
        Uri.TryCreate(text, UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps) && uri.Host.Length > 0;
}
