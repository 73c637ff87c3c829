using System.Text.RegularExpressions;
using Portcullis.Pipeline;

namespace Portcullis.Tests.Pipeline;

/// <summary>
/// Keeps the reason-code catalogue the single place codes are spelled, and docs/reason-codes.md in step
/// with it. To regenerate the doc after changing the catalogue, run with PORTCULLIS_UPDATE_DOCS=1 set:
/// PORTCULLIS_UPDATE_DOCS=1 dotnet test tests/Portcullis.Tests --filter FullyQualifiedName~ReasonCodesTests
/// </summary>
public sealed partial class ReasonCodesTests
{
    private const string UpdateVariable = "PORTCULLIS_UPDATE_DOCS";

    private static readonly string RepoRoot = FindRepoRoot();
    private static readonly string DocPath = Path.Combine(RepoRoot, "docs", "reason-codes.md");

    // String literals in src that look like codes but are something else, each with why.
    private static readonly HashSet<string> NotReasonCodes = new(StringComparer.Ordinal)
    {
        // Client-certificate claim names (ClientCertificateIdentity, tls.clientCertificate.consumer default).
        "cert.subject", "cert.cn", "cert.dns", "cert.uri", "cert.email", "cert.fingerprint", "cert.issuer", "cert.serial",
        // A config path in diagnostics.
        "admin.auth",
        // plan.* config paths in diagnostics (the plan.* reason codes share the prefix).
        "plan.from", "plan.default",
        // analytics.* config paths in diagnostics and restart notes (the analytics.* reason codes share the prefix).
        "analytics", "analytics.path", "analytics.export", "analytics.export.path", "analytics.export.instance", "analytics.retention", "analytics.samples",
        // File names `portcullis certs dev` writes.
        "client.pem", "client.key",
        // Audit record types (the `type` field), not decisions.
        "auth.denied", "admin.reload", "admin.issuer-refresh", "admin.drain", "admin.undrain", "admin.denied", "admin.ui-signin", "admin.ui-signout",
        "admin.advice-acknowledge", "admin.advice-mute", "admin.advice-unmute",
    };

    [Fact]
    public void CheckedInDocMatchesTheCatalogue()
    {
        var generated = ReasonCodes.Markdown();
        if (Environment.GetEnvironmentVariable(UpdateVariable) is "1" or "true")
        {
            File.WriteAllText(DocPath, generated);
            return;
        }

        Assert.True(File.Exists(DocPath), $"{DocPath} is missing; regenerate it with {UpdateVariable}=1 set.");
        var checkedIn = File.ReadAllText(DocPath).Replace("\r\n", "\n", StringComparison.Ordinal);
        Assert.True(checkedIn == generated,
            $"docs/reason-codes.md is out of date with ReasonCodes.cs. Regenerate it: `{UpdateVariable}=1 dotnet test tests/Portcullis.Tests --filter FullyQualifiedName~ReasonCodesTests`, then review the diff.");
        foreach (var code in ReasonCodes.All) Assert.Contains($"| `{code.Code}` |", checkedIn, StringComparison.Ordinal);
    }

    [Fact]
    public void DocsLinkTheTable()
    {
        Assert.Contains("reason-codes.md", File.ReadAllText(Path.Combine(RepoRoot, "docs", "operations.md")), StringComparison.Ordinal);
        Assert.Contains("docs/reason-codes.md", File.ReadAllText(Path.Combine(RepoRoot, "README.md")), StringComparison.Ordinal);
    }

    [Fact]
    public void CatalogueIsWellFormed()
    {
        Assert.True(ReasonCodes.All.Count >= 100, $"only {ReasonCodes.All.Count} entries: did reflection miss some?");
        Assert.Equal(ReasonCodes.All.Count, ReasonCodes.All.Select(c => c.Code).Distinct(StringComparer.Ordinal).Count());
        Assert.All(ReasonCodes.All, code =>
        {
            Assert.Matches(CodePattern(), code.Code);
            Assert.True(code.Status == 0 || code.Status is >= 400 and < 600, $"{code.Code}: status {code.Status}");
            Assert.False(string.IsNullOrWhiteSpace(code.Meaning), code.Code);
            Assert.DoesNotContain("|", code.Meaning, StringComparison.Ordinal); // would break the table
            Assert.Same(code, ReasonCodes.Find(code.Code));
        });
        Assert.Null(ReasonCodes.Find("jwt.no-such-code"));
    }

    /// <summary>Every code the gateway emits comes from the catalogue: no code is spelled as a literal elsewhere in src.</summary>
    [Fact]
    public void NoReasonCodeLiteralOutsideTheCatalogue()
    {
        var prefixes = ReasonCodes.All.Select(c => c.Code.Split('.')[0]).Where(p => p != "admitted").ToHashSet(StringComparer.Ordinal);
        var catalogue = ReasonCodes.All.Select(c => c.Code).ToHashSet(StringComparer.Ordinal);
        var found = new List<string>();
        var src = Path.Combine(RepoRoot, "src");
        foreach (var file in Directory.EnumerateFiles(src, "*.cs", SearchOption.AllDirectories))
        {
            var relative = Path.GetRelativePath(RepoRoot, file).Replace('\\', '/');
            if (relative.Contains("/obj/", StringComparison.Ordinal) || relative.Contains("/bin/", StringComparison.Ordinal)) continue;
            if (relative.EndsWith("Pipeline/ReasonCodes.cs", StringComparison.Ordinal)) continue;
            // The advisor's finding kinds (route.volume-anomaly, ratelimit.too-tight) share prefixes with codes but are not codes.
            if (relative.EndsWith("Advice/FindingKinds.cs", StringComparison.Ordinal)) continue;
            var lines = File.ReadAllLines(file);
            for (var i = 0; i < lines.Length; i++)
            {
                var line = lines[i].TrimStart();
                if (line.StartsWith("//", StringComparison.Ordinal)) continue;
                foreach (Match literal in Literal().Matches(line))
                {
                    var text = literal.Groups[1].Value;
                    var prefix = text.Split('.')[0];
                    if (NotReasonCodes.Contains(text)) continue;
                    if (catalogue.Contains(text) || (prefixes.Contains(prefix) && text.Contains('.', StringComparison.Ordinal)))
                    {
                        found.Add($"{relative}:{i + 1}: \"{text}\"");
                    }
                }
            }
        }

        Assert.True(found.Count == 0, "Reason codes spelled outside ReasonCodes.cs (use the catalogue entry, or list a non-code in NotReasonCodes):\n" + string.Join("\n", found));
    }

    [Fact]
    public void TheScanFindsALiteral()
    {
        // The scan above must be able to fail: the pattern catches a code in ordinary code.
        var matches = Literal().Matches("gateway.Reason = \"jwt.expired\"; x = \"quota.store-unavailable.open\";");
        Assert.Equal(["jwt.expired", "quota.store-unavailable.open"], matches.Select(m => m.Groups[1].Value));
    }

    [GeneratedRegex("\"([a-z]+(?:\\.[a-z0-9-]+)*)\"")]
    private static partial Regex Literal();

    [GeneratedRegex("^([a-z]+(\\.[a-z0-9-]+)+|admitted)$")]
    private static partial Regex CodePattern();

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Portcullis.sln"))) return dir.FullName;
        }

        throw new InvalidOperationException($"Portcullis.sln not found above {AppContext.BaseDirectory}");
    }
}
