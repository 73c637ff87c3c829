using System.Security.Cryptography;

namespace Portcullis.Files;

/// <summary>
/// What a configuration was built from, by content: the SHA-256 of each file (links followed) and the sorted entry
/// names of each included folder. Equal digests mean a rebuild would read the same bytes, so a reload can skip it
/// (seconds at tens of thousands of routes) — by content, not by modification time, so an edit that keeps a file's
/// size and time is still seen.
/// </summary>
internal sealed class InputDigest
{
    private readonly Dictionary<string, string> _entries;

    private InputDigest(Dictionary<string, string> entries) => _entries = entries;

    public static InputDigest Of(IEnumerable<string> paths)
    {
        var entries = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var path in paths.Select(Path.GetFullPath).Distinct(StringComparer.Ordinal))
        {
            entries[path] = Digest(path);
        }

        return new InputDigest(entries);
    }

    public bool SameAs(InputDigest other) =>
        _entries.Count == other._entries.Count && _entries.All(e => other._entries.TryGetValue(e.Key, out var value) && value == e.Value);

    private static string Digest(string path)
    {
        try
        {
            if (Directory.Exists(path))
            {
                return "dir:" + string.Join('\n', Directory.EnumerateFileSystemEntries(path).Select(Path.GetFileName).Order(StringComparer.Ordinal));
            }

            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            return "file:" + Convert.ToHexStringLower(SHA256.HashData(stream));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Unreadable or gone: never equal to a digest taken when it was readable (a rebuild reports the error).
            return "error:" + ex.GetType().Name;
        }
    }
}
