using Portcullis.Configuration;

namespace Portcullis.Tests.Configuration;

/// <summary>
/// What a compiled snapshot keeps for as long as its generation lives (issue 20: RSS at 50,000 routes): positions
/// are reported by the compile and then dropped, and options left at their defaults share one empty instance.
/// </summary>
public sealed class SnapshotFootprintTests() : ConfigBuildTestBase("portcullis-footprint-")
{
    private const string Yaml = """
        listeners: [{ name: public, address: 127.0.0.1:8080 }]
        observability:
          accessLog: { target: stdout, maxFiles: 2 }
        routes:
          - { name: a, match: { pathPrefix: /a }, cluster: c }
          - { name: b, match: { pathPrefix: /b }, cluster: c }
        clusters:
          c: { destinations: [http://127.0.0.1:9] }
        """;

    [Fact]
    public void The_compile_reports_positions_and_the_snapshot_keeps_only_the_file()
    {
        var result = Build(Yaml);
        Assert.True(result.Succeeded, Dump(result));
        var warning = Assert.Single(result.Diagnostics, d => d.Message.Contains("applies to target: file only", StringComparison.Ordinal));
        Assert.Equal(3, warning.Line);
        Assert.True(warning.Column > 1, warning.ToString());

        var source = result.Snapshot!.Source;
        Assert.Equal(ConfigPath, source.Locations.File);
        Assert.False(source.Locations.Has("routes[0].match"), "the snapshot still holds per-node positions");
        Assert.Equal((ConfigPath, 1, 1), source.Locations.At("routes[1].match.pathPrefix"));
    }

    [Fact]
    public void Options_left_at_their_defaults_share_one_empty_dictionary()
    {
        var result = Build(Yaml);
        Assert.True(result.Succeeded, Dump(result));
        var routes = result.Snapshot!.Config.Routes;
        Assert.Empty(routes[0].Transforms.Response.Set);
        Assert.Same(routes[0].Transforms.Response.Set, routes[1].Transforms.Response.Set);
        Assert.Same(routes[0].Transforms.Response.Add, routes[1].Transforms.Response.Add);
        Assert.Same(routes[0].Transforms.Query.Set, routes[1].Transforms.Query.Set);
    }
}
