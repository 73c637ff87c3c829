using Microsoft.Extensions.DependencyInjection;
using Portcullis.Advice;
using Portcullis.Cli;
using Portcullis.Configuration;

namespace Portcullis.Tests.Advice;

/// <summary>
/// A patch for something an included file or an overlay defines: it is written into that file (the one whose
/// definition wins), validated against the composed configuration, named in the finding, and applied there by
/// `portcullis advise --apply`.
/// </summary>
public sealed class PatchTargetTests : IDisposable
{
    private const string Main = """
        listeners: [{ name: public, address: "127.0.0.1:8080" }]
        include: [conf.d/]
        rateLimits:
          per-ip: { key: [ip], limit: 100, per: 1s }
        routes:
          - { name: health, match: { pathPrefix: /health }, respond: { status: 200 } }
        """;

    private const string Orders = """
        # the orders service
        routes:
          - name: orders
            match: { pathPrefix: /orders }
            cluster: orders
        clusters:
          orders:
            destinations: ["http://127.0.0.1:9001"]
        """;

    private const string Billing = """
        routes:
          - { name: billing, match: { pathPrefix: /billing }, cluster: billing }
        clusters:
          billing: { destinations: ["http://127.0.0.1:9002"] }
        """;

    // What the rate-limit advisor writes (RateLimitPatches.AddPolicy): a new policy, and the route using it.
    private static readonly ConfigPatch AddPolicy = new(
        "rateLimits:\n  suggested-orders:\n    key: [ip]\n    algorithm: tokenBucket\n    limit: 5\n    per: 1s\n    burst: 10\nroutes:\n  - name: orders\n    rateLimits: [suggested-orders]\n",
        "adds rateLimits.suggested-orders and uses it on route orders");

    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("portcullis-patch-target-");

    public void Dispose() => _directory.Delete(recursive: true);

    private string PathOf(string name) => Path.Combine(_directory.FullName, name);

    private void Write(string name, string text)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(PathOf(name))!);
        File.WriteAllText(PathOf(name), text);
    }

    private static LoadedConfig Load(params string[] paths)
    {
        var diagnostics = new List<ConfigDiagnostic>();
        return ConfigLoader.Load(paths, _ => null, diagnostics) ?? throw new InvalidOperationException(string.Join("\n", diagnostics));
    }

    private void WriteIncludes()
    {
        Write("portcullis.yaml", Main);
        Write("conf.d/orders.yaml", Orders);
        Write("conf.d/billing.yaml", Billing);
    }

    [Fact]
    public void APatchForARouteOfAnIncludedFileTargetsThatFileAndValidatesComposed()
    {
        WriteIncludes();
        var check = new AdvicePatchValidator(_ => null, null, TimeProvider.System).Check(Load(PathOf("portcullis.yaml")), AddPolicy);

        Assert.True(check.Valid, string.Join("\n", check.Errors));
        Assert.Equal(PathOf("conf.d/orders.yaml"), check.TargetFile);
        Assert.Contains("suggested-orders", check.PatchedText, StringComparison.Ordinal);
        Assert.Contains("destinations", check.PatchedText, StringComparison.Ordinal); // the orders file, not the main one
        Assert.Equal("suggested-orders", Assert.Single(check.Snapshot!.Routes["orders"].RateLimits).Name);
        Assert.Equal(Orders, File.ReadAllText(PathOf("conf.d/orders.yaml"))); // nothing written
    }

    [Fact]
    public void APatchForTheMainFilesOwnEntryStillTargetsTheMainFile()
    {
        WriteIncludes();
        var patch = new ConfigPatch("rateLimits:\n  per-ip:\n    limit: 50\n", "changes per-ip");
        var check = new AdvicePatchValidator(_ => null, null, TimeProvider.System).Check(Load(PathOf("portcullis.yaml")), patch);
        Assert.True(check.Valid, string.Join("\n", check.Errors));
        Assert.Equal(PathOf("portcullis.yaml"), check.TargetFile);
        Assert.Equal(50, check.Snapshot!.RateLimits["per-ip"].Limit);
    }

    [Fact]
    public void APatchChangingEntriesOfTwoFilesIsNotOffered()
    {
        WriteIncludes();
        var patch = new ConfigPatch("clusters:\n  orders: { retries: 0 }\n  billing: { retries: 0 }\n", "sets retries");
        var check = new AdvicePatchValidator(_ => null, null, TimeProvider.System).Check(Load(PathOf("portcullis.yaml")), patch);
        Assert.False(check.Valid);
        var error = Assert.Single(check.Errors);
        Assert.Contains(Path.Combine("conf.d", "orders.yaml"), error, StringComparison.Ordinal);
        Assert.Contains(Path.Combine("conf.d", "billing.yaml"), error, StringComparison.Ordinal);
    }

    [Fact]
    public void WithAnOverlayThePatchGoesToTheFileWhoseDefinitionWins()
    {
        Write("base.yaml", """
            listeners: [{ name: public, address: "127.0.0.1:8080" }]
            rateLimits:
              per-ip: { key: [ip], limit: 100, per: 1s }
            routes:
              - { name: orders, match: { pathPrefix: /orders }, cluster: orders, rateLimits: [per-ip] }
              - { name: search, match: { pathPrefix: /search }, cluster: orders }
            clusters:
              orders: { destinations: ["http://127.0.0.1:9001"] }
            """);
        // The overlay overrides orders' rate limits and search's stripPrefix, not search's limits.
        Write("prod.yaml", """
            routes:
              - { name: orders, rateLimits: [] }
              - { name: search, stripPrefix: /search }
            """);
        var source = Load(PathOf("base.yaml"), PathOf("prod.yaml"));
        var validator = new AdvicePatchValidator(_ => null, null, TimeProvider.System);

        // orders' rateLimits: the overlay's value wins, so the overlay is patched (patched in base it would change nothing).
        var orders = validator.Check(source, AddPolicy);
        Assert.True(orders.Valid, string.Join("\n", orders.Errors));
        Assert.Equal(PathOf("prod.yaml"), orders.TargetFile);
        Assert.Equal("suggested-orders", Assert.Single(orders.Snapshot!.Routes["orders"].RateLimits).Name);

        // search's rateLimits: only base sets anything the patch reaches (the route), so base is patched.
        var search = validator.Check(source, new ConfigPatch(AddPolicy.Yaml.Replace("name: orders", "name: search", StringComparison.Ordinal), "on search"));
        Assert.True(search.Valid, string.Join("\n", search.Errors));
        Assert.Equal(PathOf("base.yaml"), search.TargetFile);
        Assert.Equal("suggested-orders", Assert.Single(search.Snapshot!.Routes["search"].RateLimits).Name);
    }

    private sealed class PatchDetector(ConfigPatch patch) : IAdviceDetector
    {
        public string Name => "test.patch";

        public IReadOnlyList<Finding> Detect(AdviceContext context) => [Findings.Make(FindingKinds.RateLimitSuggested, "orders", context.Now, patch)];
    }

    private static (int Code, string Output, string Errors) Advise(string format, string? apply, params string[] configs)
    {
        using var output = new StringWriter();
        using var errors = new StringWriter();
        var code = AdviseCommand.Run(configs, null, null, format, apply, TimeProvider.System, output, errors,
            services => services.AddSingleton<IAdviceDetector>(new PatchDetector(AddPolicy)));
        return (code, output.ToString(), errors.ToString());
    }

    [Fact]
    public void AdviseNamesTheIncludedFileAndApplyWritesItWithABackup()
    {
        WriteIncludes();
        var id = Finding.MakeId(FindingKinds.RateLimitSuggested, new FindingSubject(SubjectKind.Route, "orders"));
        var json = Advise("json", null, PathOf("portcullis.yaml"));
        Assert.True(json.Code == 0, json.Errors);
        var patch = System.Text.Json.JsonDocument.Parse(json.Output).RootElement.GetProperty("findings")[0].GetProperty("patch");
        Assert.Equal(Path.Combine("conf.d", "orders.yaml"), patch.GetProperty("file").GetString());

        var (code, output, errors) = Advise("text", id, PathOf("portcullis.yaml"));
        Assert.True(code == 0, errors + output);
        Assert.Equal(Main, File.ReadAllText(PathOf("portcullis.yaml")));
        Assert.Equal(Orders, File.ReadAllText(Assert.Single(new DirectoryInfo(PathOf("conf.d")).GetFiles("orders.yaml.bak-*")).FullName));
        Assert.Contains("suggested-orders", File.ReadAllText(PathOf("conf.d/orders.yaml")), StringComparison.Ordinal);
        var built = new SnapshotBuilder().Build(PathOf("portcullis.yaml"));
        Assert.True(built.Succeeded, string.Join("\n", built.Errors));
        Assert.Equal("suggested-orders", Assert.Single(built.Snapshot!.Routes["orders"].RateLimits).Name);
        Assert.Contains("What a reload would change", output, StringComparison.Ordinal);
    }

    [Fact]
    public void ApplyWithAnOverlayWritesTheOverlay()
    {
        var baseText = """
            listeners: [{ name: public, address: "127.0.0.1:8080" }]
            routes:
              - { name: orders, match: { pathPrefix: /orders }, cluster: orders, rateLimits: [] }
            clusters:
              orders: { destinations: ["http://127.0.0.1:9001"] }
            """;
        Write("base.yaml", baseText);
        Write("prod.yaml", "routes:\n  - { name: orders, rateLimits: [] }\n");
        var id = Finding.MakeId(FindingKinds.RateLimitSuggested, new FindingSubject(SubjectKind.Route, "orders"));
        var (code, _, errors) = Advise("text", id, PathOf("base.yaml"), PathOf("prod.yaml"));
        Assert.True(code == 0, errors);
        Assert.Equal(baseText, File.ReadAllText(PathOf("base.yaml")));
        Assert.Contains("suggested-orders", File.ReadAllText(PathOf("prod.yaml")), StringComparison.Ordinal);
        var built = new SnapshotBuilder().Build([PathOf("base.yaml"), PathOf("prod.yaml")]);
        Assert.Equal("suggested-orders", Assert.Single(built.Snapshot!.Routes["orders"].RateLimits).Name);
    }
}
