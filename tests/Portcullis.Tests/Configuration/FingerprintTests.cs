using System.Security.Cryptography;
using System.Text;
using Portcullis.Configuration;

namespace Portcullis.Tests.Configuration;

/// <summary>The snapshot fingerprint is hashed piece by piece, and must stay the digest of the contents joined with NUL.</summary>
public sealed class FingerprintTests
{
    [Fact]
    public void TheFingerprintIsTheSha256OfTheContentsJoinedWithNul_AcrossChunkBoundariesAndSurrogatePairs()
    {
        var directory = Directory.CreateTempSubdirectory("portcullis-fingerprint-");
        try
        {
            var path = Path.Combine(directory.FullName, "portcullis.yaml");
            const string Text = "listeners: [{ name: public, address: \"127.0.0.1:8080\" }]\n";
            File.WriteAllText(path, Text);
            var diagnostics = new List<ConfigDiagnostic>();
            var loaded = ConfigLoader.Load(path, _ => null, diagnostics)!;
            var context = new CompileContext(loaded, diagnostics, _ => null, TimeProvider.System);

            // A surrogate pair straddles the 32 Ki-char chunk boundary; an empty content; plain ASCII.
            var large = new string('a', 32 * 1024 - 1) + "😀" + new string('é', 70_000);
            context.FileContents.AddRange([large, "", "tail"]);

            var expected = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(string.Join("\0", context.FileContents))));
            Assert.Equal(expected, context.Fingerprint);
            context.FileContents[^1] = "tail!";
            Assert.NotEqual(expected, context.Fingerprint);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }
}
