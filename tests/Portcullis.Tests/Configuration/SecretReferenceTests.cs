using Portcullis.Configuration;

namespace Portcullis.Tests.Configuration;

/// <summary>
/// `${file:PATH}` (issue 18): one syntax for a secret from a file anywhere a value is written, relative to the
/// file it is written in, redacted wherever the config is shown, watched and fingerprinted (never its text).
/// </summary>
public sealed class SecretReferenceTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("portcullis-secret-");

    public void Dispose() => _dir.Delete(recursive: true);

    private string Write(string name, string text)
    {
        var path = Path.Combine(_dir.FullName, name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text);
        return path;
    }

    private static string Config(string body) => $$"""
        listeners:
          - { name: public, address: "127.0.0.1:8080" }
        routes:
          - name: banner
            match: { path: /banner }
            respond: { status: 200, body: "{{body}}" }
        """;

    private static BuildResult Build(params string[] paths) => new SnapshotBuilder(name => name == "BANNER" ? "from-env" : null).Build(paths);

    [Fact]
    public void A_file_reference_reads_the_file_without_its_trailing_newline_and_is_redacted_when_shown()
    {
        var main = Write("portcullis.yaml", Config("${file:secrets/banner}"));
        Write("secrets/banner", "s3cr3t-value\n");

        var result = Build(main);

        Assert.True(result.Succeeded, string.Join("\n", result.Diagnostics));
        var snapshot = result.Snapshot!;
        Assert.Equal("s3cr3t-value", snapshot.Config.Routes[0].Respond!.Body);
        Assert.Contains(Path.Combine(_dir.FullName, "secrets", "banner"), snapshot.Files); // watched
        Assert.Equal(["routes[0].respond.body"], snapshot.Source.SecretPaths);
        var shown = ConfigJson.ToElement(snapshot.Config, snapshot.Source.SecretPaths).ToString();
        Assert.DoesNotContain("s3cr3t-value", shown, StringComparison.Ordinal);
        Assert.Contains("redacted", shown, StringComparison.Ordinal);
        Assert.DoesNotContain("s3cr3t-value", snapshot.Source.Text, StringComparison.Ordinal);
    }

    [Fact]
    public void A_rotated_secret_changes_the_fingerprint_and_a_diff_does_not_show_it()
    {
        var main = Write("portcullis.yaml", Config("${file:banner.txt}"));
        var secret = Write("banner.txt", "first-secret");
        var before = Build(main).Snapshot!;
        File.WriteAllText(secret, "second-secret");
        var after = Build(main).Snapshot!;

        Assert.NotEqual(before.Fingerprint, after.Fingerprint);
        var diff = ConfigDiff.Compare(before, after);
        Assert.True(diff.HasChanges);
        var text = diff.Format();
        Assert.Contains("route banner", text, StringComparison.Ordinal);
        Assert.DoesNotContain("first-secret", text, StringComparison.Ordinal);
        Assert.DoesNotContain("second-secret", text, StringComparison.Ordinal);
    }

    [Fact]
    public void A_reference_in_an_included_file_is_relative_to_that_file()
    {
        var main = Write("portcullis.yaml", """
            listeners:
              - { name: public, address: "127.0.0.1:8080" }
            include: [conf.d/]
            """);
        Write("conf.d/banner.yaml", """
            routes:
              - { name: banner, match: { path: /banner }, respond: { status: 200, body: "${file:banner.secret}" } }
            """);
        Write("conf.d/banner.secret", "from-conf-d");

        var result = Build(main);

        Assert.True(result.Succeeded, string.Join("\n", result.Diagnostics));
        Assert.Equal("from-conf-d", result.Snapshot!.Config.Routes[0].Respond!.Body);
    }

    [Fact]
    public void A_missing_secret_file_is_an_error_at_the_reference_with_a_hint()
    {
        // Column 43 is the '$' of the reference inside the quoted value.
        var main = Write("portcullis.yaml", Config("prefix-${file:/run/secrets/absent-portcullis-test}"));

        var result = Build(main);

        var error = Assert.Single(result.Errors);
        Assert.Equal((main, 6, 43), (error.File, error.Line, error.Column));
        Assert.Contains("cannot read secret file '/run/secrets/absent-portcullis-test'", error.Message, StringComparison.Ordinal);
        Assert.Contains("relative to the file that names them", error.Hint, StringComparison.Ordinal);
    }

    [Fact]
    public void A_secret_file_larger_than_the_bound_is_refused()
    {
        var main = Write("portcullis.yaml", Config("${file:big.bin}"));
        Write("big.bin", new string('x', YamlConfigBinder.MaxSecretFileBytes + 1));

        var error = Assert.Single(Build(main).Errors);
        Assert.Contains("larger than 64 KiB", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Env_references_have_an_explicit_form_too()
    {
        var main = Write("portcullis.yaml", Config("${env:BANNER}"));

        var result = Build(main);

        Assert.True(result.Succeeded, string.Join("\n", result.Diagnostics));
        Assert.Equal("from-env", result.Snapshot!.Config.Routes[0].Respond!.Body);
        Assert.Empty(result.Snapshot.Source.SecretPaths);
    }
}
