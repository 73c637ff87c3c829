namespace Portcullis.Tests.Routing;

/// <summary>routes[].compression validation: positions, hints and defaults.</summary>
public sealed class CompressionConfigTests() : ConfigBuildTestBase("portcullis-compression-")
{
    [Fact]
    public void Bad_settings_are_reported_at_their_position_and_an_already_compressed_type_is_a_warning()
    {
        var result = Build("""
            listeners: [{ name: public, address: 127.0.0.1:8080 }]
            routes:
              - name: a
                match: { pathPrefix: /a }
                compression: { types: [json, "image/png"], algorithms: [zstd] }
                cluster: c
            clusters:
              c: { destinations: [http://127.0.0.1:1] }
            """);
        Assert.False(result.Succeeded);
        AssertAt(ErrorContaining(result, "'json' is not a content type"), 5, 28);
        AssertAt(ErrorContaining(result, "'zstd' is not a supported encoding"), 5, 61);
        var warning = Assert.Single(result.Diagnostics, d => d.Message.Contains("'image/png' is already compressed", StringComparison.Ordinal));
        AssertAt(warning, 5, 34);
    }

    [Fact]
    public void An_empty_section_compresses_text_and_json_with_brotli_then_gzip_above_one_kib_and_enabled_false_turns_it_off()
    {
        var result = Build("""
            listeners: [{ name: public, address: 127.0.0.1:8080 }]
            routes:
              - { name: on, match: { pathPrefix: /on }, compression: {}, cluster: c }
              - { name: off, match: { pathPrefix: /off }, compression: { enabled: false }, cluster: c }
            clusters:
              c: { destinations: [http://127.0.0.1:1] }
            """);
        Assert.True(result.Succeeded, Dump(result));
        var on = result.Snapshot!.Routes["on"].Compression!;
        Assert.Equal(["br", "gzip"], on.Algorithms);
        Assert.Equal(1024, on.MinSize);
        Assert.Contains("text/*", on.Types);
        Assert.Contains("application/json", on.Types);
        Assert.Null(result.Snapshot.Routes["off"].Compression);
    }
}
