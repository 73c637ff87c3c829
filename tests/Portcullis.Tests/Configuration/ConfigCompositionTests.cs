using Portcullis.Configuration;

namespace Portcullis.Tests.Configuration;

/// <summary>
/// Config composition (issue 18): `include:` of files, folders (conf.d/) and patterns adds to a file, and overlays
/// (-c base.yaml -c prod.yaml) override by name; every diagnostic names the file it is about.
/// </summary>
public sealed class ConfigCompositionTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("portcullis-compose-");

    public void Dispose() => _dir.Delete(recursive: true);

    private const string Main = """
        listeners:
          - { name: public, address: "127.0.0.1:8080" }
        include: [conf.d/]
        routes:
          - { name: home, match: { path: "/" }, cluster: web }
        clusters:
          web: { destinations: ["http://127.0.0.1:9001"] }
        """;

    private string Write(string name, string text)
    {
        var path = Path.Combine(_dir.FullName, name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text);
        return path;
    }

    private static BuildResult Build(params string[] paths) => new SnapshotBuilder(_ => null).Build(paths);

    private static string Errors(BuildResult result) => string.Join("\n", result.Errors);

    [Fact]
    public void A_folder_include_adds_each_services_file_in_name_order()
    {
        var main = Write("portcullis.yaml", Main);
        Write("conf.d/20-users.yaml", """
            routes:
              - { name: users, match: { path: "/users/{**rest}" }, cluster: users }
            clusters:
              users: { destinations: ["http://127.0.0.1:9003"] }
            """);
        Write("conf.d/10-orders.yml", """
            routes:
              - { name: orders, match: { path: "/orders/{**rest}" }, cluster: orders }
            clusters:
              orders: { destinations: ["http://127.0.0.1:9002"] }
            """);
        Write("conf.d/notes.txt", "not yaml: [");
        Write("conf.d/.hidden.yaml", "not: [valid");

        var result = Build(main);

        Assert.True(result.Succeeded, Errors(result));
        var snapshot = result.Snapshot!;
        Assert.Equal(["home", "orders", "users"], snapshot.Config.Routes.Select(r => r.Name));
        Assert.Equal(["orders", "users", "web"], snapshot.Clusters.Keys.Order(StringComparer.Ordinal));
        Assert.True(snapshot.Files.Contains(Path.Combine(_dir.FullName, "conf.d", "10-orders.yml")), string.Join(", ", snapshot.Files));
        Assert.Contains(Path.Combine(_dir.FullName, "conf.d"), snapshot.Files); // the folder: a new file there reloads
        Assert.Equal(Path.Combine(_dir.FullName, "conf.d"), snapshot.Source.Files[^1]);
    }

    [Fact]
    public void A_binding_error_in_an_included_file_names_that_file_line_and_column()
    {
        var main = Write("portcullis.yaml", Main);
        Write("conf.d/orders.yaml", """
            routes:
              - name: orders
                match: { path: "/orders" }
                clustr: orders
            """);

        var result = Build(main);

        var error = result.Errors.First();
        Assert.EndsWith(Path.Combine("conf.d", "orders.yaml"), error.File);
        Assert.Equal((4, 5), (error.Line, error.Column));
        Assert.Contains("unknown key 'clustr'", error.Message, StringComparison.Ordinal);
        Assert.All(result.Errors, e => Assert.EndsWith(Path.Combine("conf.d", "orders.yaml"), e.File));
    }

    [Fact]
    public void A_semantic_error_in_an_included_file_names_that_file()
    {
        var main = Write("portcullis.yaml", Main);
        Write("conf.d/orders.yaml", """
            # the orders service
            routes:
              - { name: orders, match: { path: "/orders" }, cluster: nowhere }
            """);

        var result = Build(main);

        var error = Assert.Single(result.Errors);
        Assert.EndsWith(Path.Combine("conf.d", "orders.yaml"), error.File);
        Assert.Equal(3, error.Line);
        Assert.Contains("nowhere", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Two_included_files_defining_one_route_or_cluster_is_an_error_at_both_places()
    {
        var main = Write("portcullis.yaml", Main);
        Write("conf.d/a.yaml", """
            routes:
              - { name: orders, match: { path: "/orders" }, cluster: orders }
            clusters:
              orders: { destinations: ["http://127.0.0.1:9002"] }
            """);
        Write("conf.d/b.yaml", """
            routes:
              - { name: orders, match: { path: "/v2/orders" }, cluster: orders }
            clusters:
              orders: { destinations: ["http://127.0.0.1:9009"] }
            """);

        var result = Build(main);

        Assert.False(result.Succeeded);
        var errors = result.Errors.ToList();
        Assert.Contains(errors, e => e.File.EndsWith("b.yaml", StringComparison.Ordinal) && e.Line == 2
            && e.Message.Contains("routes 'orders' is already defined in", StringComparison.Ordinal) && e.Message.Contains("a.yaml:2:5", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.File.EndsWith("b.yaml", StringComparison.Ordinal) && e.Line == 4
            && e.Message.Contains("clusters.orders.destinations is already set in", StringComparison.Ordinal));
        Assert.All(errors, e => Assert.Contains("overlay", e.Hint, StringComparison.Ordinal));
    }

    [Fact]
    public void An_overlay_overrides_by_name_and_keeps_what_it_does_not_mention()
    {
        var main = Write("base.yaml", """
            listeners:
              - { name: public, address: "127.0.0.1:8080" }
            limits: { maxRequestBodySize: 1MiB }
            routes:
              - { name: orders, match: { path: "/orders/{**rest}" }, cluster: orders, stripPrefix: /orders }
              - { name: users, match: { path: "/users" }, cluster: orders }
            clusters:
              orders:
                destinations: ["http://127.0.0.1:9002"]
                healthCheck: { active: { interval: 5s, path: /ready } }
            """);
        var prod = Write("prod.yaml", """
            limits: { maxRequestBodySize: 4MiB }
            routes:
              - { name: orders, preserveHost: true }
              - { name: admin, match: { path: "/admin" }, cluster: orders }
            clusters:
              orders:
                destinations: ["http://10.0.0.7:80", "http://10.0.0.8:80"]
            """);

        var result = Build(main, prod);

        Assert.True(result.Succeeded, Errors(result));
        var config = result.Snapshot!.Config;
        Assert.Equal(["orders", "users", "admin"], config.Routes.Select(r => r.Name));
        var orders = config.Routes[0];
        Assert.True(orders.PreserveHost);
        Assert.Equal("/orders", orders.StripPrefix); // kept from base
        Assert.Equal("/orders/{**rest}", orders.Match.Path); // kept from base
        Assert.Equal(4L * 1024 * 1024, config.Limits.MaxRequestBodySize.Bytes);
        var cluster = config.Clusters["orders"];
        Assert.Equal(["http://10.0.0.7:80", "http://10.0.0.8:80"], cluster.Destinations.Select(d => d.Address));
        Assert.Equal("/ready", cluster.HealthCheck?.Active?.Path); // kept from base
        Assert.Equal([Path.GetFullPath(main), Path.GetFullPath(prod)], result.Snapshot.Source.Files);
        Assert.Equal([main, prod], result.Snapshot.Source.Paths);
    }

    [Fact]
    public void An_error_in_an_overlay_names_the_overlay()
    {
        var main = Write("base.yaml", Main.Replace("include: [conf.d/]\n", "", StringComparison.Ordinal));
        var prod = Write("env/prod.yaml", """
            clusters:
              web:
                destinations: ["http://10.0.0.7:80"]
                loadBalancing: roundRobinn
            """);

        var result = Build(main, prod);

        var error = Assert.Single(result.Errors);
        Assert.Equal(prod, error.File);
        Assert.Equal(4, error.Line);
    }

    [Fact]
    public void Relative_paths_in_an_included_file_are_relative_to_that_file()
    {
        var main = Write("portcullis.yaml", Main);
        Write("conf.d/orders.yaml", """
            maps:
              versions: { file: maps/versions.map, default: orders }
            routes:
              - { name: orders, match: { path: "/orders" }, cluster: "${map:versions(header:Api-Version)}" }
            clusters:
              orders: { destinations: ["http://127.0.0.1:9002"] }
            """);
        Write("conf.d/maps/versions.map", "1 orders\n");

        var result = Build(main);

        Assert.True(result.Succeeded, Errors(result));
        Assert.Equal(Path.Combine(_dir.FullName, "conf.d", "maps", "versions.map"), result.Snapshot!.Config.Maps["versions"].File);
        Assert.Contains(Path.Combine(_dir.FullName, "conf.d", "maps", "versions.map"), result.Snapshot.Files);
    }

    [Fact]
    public void Patterns_and_single_files_can_be_included_and_includes_nest()
    {
        var main = Write("portcullis.yaml", Main.Replace("[conf.d/]", "[services/*.yaml, shared.yaml]", StringComparison.Ordinal));
        Write("services/orders.yaml", """
            routes:
              - { name: orders, match: { path: "/orders" }, cluster: orders }
            """);
        Write("services/orders.txt", "ignored");
        Write("shared.yaml", """
            include: clusters/orders.yaml
            """);
        Write("clusters/orders.yaml", """
            clusters:
              orders: { destinations: ["http://127.0.0.1:9002"] }
            """);

        var result = Build(main);

        Assert.True(result.Succeeded, Errors(result));
        Assert.Equal(["home", "orders"], result.Snapshot!.Config.Routes.Select(r => r.Name));
        Assert.True(result.Snapshot.Clusters.ContainsKey("orders"));
    }

    [Fact]
    public void A_missing_include_and_an_include_loop_are_reported_where_they_are_written()
    {
        var main = Write("portcullis.yaml", Main.Replace("[conf.d/]", "[missing.yaml, loop.yaml]", StringComparison.Ordinal));
        Write("loop.yaml", "include: [portcullis.yaml]\n");

        var result = Build(main);

        var errors = result.Errors.ToList();
        Assert.Contains(errors, e => e.File == main && e.Line == 3 && e.Column == 11 && e.Message.Contains("included file 'missing.yaml' does not exist", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.File.EndsWith("loop.yaml", StringComparison.Ordinal) && e.Line == 1 && e.Message.Contains("includes itself", StringComparison.Ordinal));
    }

    [Fact]
    public void A_one_file_config_reads_as_before()
    {
        var main = Write("portcullis.yaml", Main.Replace("include: [conf.d/]\n", "", StringComparison.Ordinal));

        var result = Build(main);

        Assert.True(result.Succeeded, Errors(result));
        Assert.Equal([Path.GetFullPath(main)], result.Snapshot!.Source.Files);
        Assert.Equal(File.ReadAllText(main), result.Snapshot.Source.Text);
    }
}
