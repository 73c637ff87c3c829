using System.Text;
using System.Text.RegularExpressions;
using YamlDotNet.Core;

namespace Portcullis.Configuration;

/// <summary>Value references: ${VAR}, ${env:VAR}, ${VAR:-default} and ${file:PATH} secrets.</summary>
internal sealed partial class YamlConfigBinder
{
    /// <summary>Files read through <c>${file:PATH}</c> (full paths) with a digest of their content: watched, and fingerprinted.</summary>
    public List<(string Path, string Digest)> SecretFiles { get; } = [];

    /// <summary>Config paths whose value came from a <c>${file:PATH}</c> reference: redacted wherever the config is shown.</summary>
    public HashSet<string> SecretPaths { get; } = new(StringComparer.Ordinal);

    /// <summary>Largest file a <c>${file:PATH}</c> reference reads (secrets are small; a mistaken path to a big file is an error).</summary>
    public const int MaxSecretFileBytes = 64 * 1024;

    /// <summary>
    /// Applies ${VAR}, ${env:VAR}, ${VAR:-default} and ${file:PATH} (a file's content, trailing newline removed;
    /// relative to the file the value is written in); $${ writes a literal ${. ${map:...} and the template words (<see cref="TemplateWords"/>) are left for route templates.
    /// </summary>
    private string? Substitute(ConfigScalar scalar, string path)
    {
        var value = scalar.Value ?? "";
        if (!value.Contains('$', StringComparison.Ordinal)) return value;
        var failed = false;
        var result = EnvironmentReference().Replace(value, match =>
        {
            if (match.Value == "$${") return "${";
            var quote = scalar.Style is ScalarStyle.SingleQuoted or ScalarStyle.DoubleQuoted ? 1 : 0;
            var column = scalar.Style is ScalarStyle.Literal or ScalarStyle.Folded ? scalar.Start.Column : scalar.Start.Column + quote + match.Index;
            if (match.Groups["file"].Success)
            {
                var secret = ReadSecretFile(scalar, column, match.Groups["file"].Value, path);
                failed |= secret is null;
                return secret ?? "";
            }

            var name = match.Groups["name"].Value;
            // Route templates' own parts (${consumer}, ${route}, ...) stay for the template; ${env:NAME} still reads the variable.
            if (!match.Groups["env"].Success && !match.Groups["default"].Success && TemplateWords.Contains(name)) return match.Value;
            var variable = _environment(name);
            if (!string.IsNullOrEmpty(variable)) return variable;
            if (match.Groups["default"].Success) return match.Groups["default"].Value;
            if (variable is not null) return variable;
            failed = true;
            ErrorAt(scalar, scalar.Start.Line, column, $"environment variable '{name}' is not set", $"set {name}, or give a default with ${{{name}:-value}}");
            return "";
        });
        return failed ? null : result;
    }

    private string? ReadSecretFile(ConfigScalar scalar, long column, string name, string path)
    {
        var file = FileOf?.Invoke(scalar) ?? _file;
        var full = Path.GetFullPath(name, Path.GetDirectoryName(Path.GetFullPath(file))!);
        try
        {
            var info = new FileInfo(full);
            if (info.Exists && info.Length > MaxSecretFileBytes)
            {
                ErrorAt(scalar, scalar.Start.Line, column, $"secret file '{name}' ({full}) is larger than {MaxSecretFileBytes / 1024} KiB", "${file:PATH} reads a small file holding one secret");
                return null;
            }

            var secret = System.IO.File.ReadAllText(full).TrimEnd('\r', '\n');
            SecretFiles.Add((full, Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(secret)))));
            SecretPaths.Add(path);
            return secret;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            ErrorAt(scalar, scalar.Start.Line, column, $"cannot read secret file '{name}' ({full}): {ConfigLoader.Describe(ex)}",
                "paths are relative to the file that names them; mount the secret there (e.g. /run/secrets/NAME) or fix the path");
            return null;
        }
    }

    /// <summary>Names that, written as ${NAME}, are route-template parts rather than environment variables.</summary>
    internal static readonly System.Collections.Frozen.FrozenSet<string> TemplateWords =
        System.Collections.Frozen.FrozenSet.ToFrozenSet(["consumer", "consumerGroup", "route", "requestId", "host", "path", "method", "ip"], StringComparer.Ordinal);

    [GeneratedRegex(@"\$\$\{|\$\{file:(?<file>[^}]+)\}|\$\{(?<env>env:)?(?<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?<default>[^}]*))?\}")]
    private static partial Regex EnvironmentReference();
}
