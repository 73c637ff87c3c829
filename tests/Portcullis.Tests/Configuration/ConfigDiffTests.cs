using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Tests.Configuration;

public sealed class ConfigDiffTests : IDisposable
{
    private const string Listener = """
        listeners:
          - name: public
            address: 127.0.0.1:18080
        """;

    private const string Minimal = Listener + """

        clusters:
          c:
            destinations: [http://127.0.0.1:5001]
        routes:
          - name: r
            cluster: c
        """;

    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("portcullis-diff-tests-");

    public void Dispose() => _dir.Delete(recursive: true);

    [Fact]
    public void IdenticalConfigsHaveNoChanges()
    {
        var result = Diff(Minimal, Minimal);

        Assert.False(result.HasChanges);
        Assert.Empty(result.Changes);
        Assert.Equal("No changes.\n0 to add, 0 to change, 0 to remove.\n", result.Format());
    }

    [Fact]
    public void IdenticalRichConfigsHaveNoChanges()
    {
        var yaml = Listener + """

            limits:
              maxRequestBodySize: 1MiB
            trustedProxies: [10.0.0.0/8]
            maps:
              versions:
                file: versions.map
                default: c
            clusters:
              c:
                loadBalancing: leastRequests
                destinations:
                  - http://127.0.0.1:5001
                  - { name: b, address: http://127.0.0.1:5002 }
                healthCheck:
                  active: { path: /health }
            routes:
              - name: r
                cluster: ${map:versions(header:Api-Version)}
                requestHeaders:
                  set: { Authorization: Bearer s3cret }
            """;
        var files = new Dictionary<string, string> { ["versions.map"] = "1 c\n" };

        var result = Diff(yaml, yaml, files, files);

        Assert.Equal("No changes.\n0 to add, 0 to change, 0 to remove.\n", result.Format());
    }

    [Fact]
    public void RoutesAddedRemovedAndChanged()
    {
        var before = Listener + """

            clusters:
              c: { destinations: [http://127.0.0.1:5001] }
              x: { destinations: [http://127.0.0.1:5002] }
            routes:
              - name: orders
                match: { path: "/orders/{**rest}" }
                cluster: x
              - name: legacy
                match: { pathPrefix: /legacy }
                cluster: c
            """;
        var after = Listener + """

            clusters:
              c: { destinations: [http://127.0.0.1:5001] }
              x: { destinations: [http://127.0.0.1:5002] }
            routes:
              - name: orders
                order: 5
                match: { path: "/v2/orders/{**rest}", methods: [GET] }
                cluster: c
              - name: orders-v3
                match: { path: /v3 }
                cluster: c
            """;

        var result = Diff(before, after);

        Assert.Equal(
            """
            + route orders-v3
            - route legacy
            ~ route orders
                cluster: "x" → "c"
                match.methods: [] → ["GET"]
                match.path: "/orders/{**rest}" → "/v2/orders/{**rest}"
                order: 0 → 5
            1 to add, 1 to change, 1 to remove.

            """.ReplaceLineEndings("\n"),
            result.Format());
        Assert.True(result.HasChanges);
        Assert.False(result.RestartRequired);
        Assert.Equal(
            [(ChangeKind.Added, "route", "orders-v3"), (ChangeKind.Removed, "route", "legacy"), (ChangeKind.Changed, "route", "orders")],
            result.Changes.Select(c => (c.Kind, c.Section, c.Name)));
    }

    [Fact]
    public void MovedRouteReportsItsPosition()
    {
        var before = Listener + """

            clusters: { c: { destinations: [http://127.0.0.1:5001] } }
            routes:
              - { name: a, cluster: c, match: { pathPrefix: /a } }
              - { name: b, cluster: c, match: { pathPrefix: /b } }
              - { name: catchall, cluster: c }
            """;
        var after = Listener + """

            clusters: { c: { destinations: [http://127.0.0.1:5001] } }
            routes:
              - { name: catchall, cluster: c }
              - { name: a, cluster: c, match: { pathPrefix: /a } }
              - { name: b, cluster: c, match: { pathPrefix: /b } }
            """;

        Assert.Equal(
            """
            ~ route catchall
                position: 3 → 1
            0 to add, 1 to change, 0 to remove.

            """.ReplaceLineEndings("\n"),
            Diff(before, after).Format());
    }

    [Fact]
    public void DestinationAdded()
    {
        var after = Minimal.Replace("[http://127.0.0.1:5001]", "[http://127.0.0.1:5001, http://127.0.0.1:5002]");

        var result = Diff(Minimal, after);

        Assert.Equal(
            """
            ~ cluster c
                + destination d2 (http://127.0.0.1:5002)
            1 to add, 0 to change, 0 to remove.

            """.ReplaceLineEndings("\n"),
            result.Format());
        var change = Assert.Single(result.Changes);
        Assert.Equal((ChangeKind.Added, "destination", "c/d2"), (change.Kind, change.Section, change.Name));
    }

    [Fact]
    public void DestinationsRemovedAndChangedByName()
    {
        var before = Minimal.Replace("[http://127.0.0.1:5001]", "[{ name: a, address: http://127.0.0.1:5001 }, { name: b, address: http://127.0.0.1:5002 }]");
        var after = Minimal.Replace("[http://127.0.0.1:5001]", "[{ name: a, address: http://127.0.0.1:5011, health: http://127.0.0.1:6011 }]");

        Assert.Equal(
            """
            ~ cluster c
                - destination b (http://127.0.0.1:5002)
                ~ destination a
                    address: "http://127.0.0.1:5001" → "http://127.0.0.1:5011"
                    health: (none) → "http://127.0.0.1:6011"
            0 to add, 1 to change, 1 to remove.

            """.ReplaceLineEndings("\n"),
            Diff(before, after).Format());
    }

    [Fact]
    public void LoadBalancingAndClusterSettingsChange()
    {
        var before = Listener + """

            clusters:
              orders:
                destinations: [http://127.0.0.1:5001]
                loadBalancing: roundRobin
                retries: 2
                timeouts: { request: 100s }
                healthCheck:
                  active: { path: /healthz, interval: 5s }
            routes: [{ name: r, cluster: orders }]
            """;
        var after = Listener + """

            clusters:
              orders:
                destinations: [http://127.0.0.1:5001]
                loadBalancing: leastRequests
                retries: 0
                timeouts: { request: 30s }
                healthCheck:
                  active: { path: /health, interval: 10s }
              extra:
                destinations: [http://127.0.0.1:5009]
            routes: [{ name: r, cluster: orders }]
            """;

        Assert.Equal(
            """
            + cluster extra
                + destination d1 (http://127.0.0.1:5009)
            ~ cluster orders
                healthCheck.active.interval: "5s" → "10s"
                healthCheck.active.path: "/healthz" → "/health"
                loadBalancing: "roundRobin" → "leastRequests"
                retries.attempts: 2 → 0
                timeouts.request: "100s" → "30s"
            1 to add, 1 to change, 0 to remove.

            """.ReplaceLineEndings("\n"),
            Diff(before, after).Format());
    }

    [Fact]
    public void MapEntryChangesAreReadFromTheCompiledMaps()
    {
        // Same config file, map file rewritten in place: what a reload sees.
        var yaml = Minimal + """

            maps:
              versions:
                file: versions.map
            """;
        var path = Write("reload", "portcullis.yaml", yaml);
        Write("reload", "versions.map", "# api versions\n1 orders-v1\n2 orders-v2\n");
        var before = Build(path);
        Write("reload", "versions.map", "2 orders-v2b\n3 orders-v3\n");
        var after = Build(path);

        var result = ConfigDiff.Compare(before, after);

        Assert.Equal(
            """
            ~ map versions
                + 3 → orders-v3
                - 1 → orders-v1
                ~ 2: orders-v2 → orders-v2b
            0 to add, 1 to change, 0 to remove.

            """.ReplaceLineEndings("\n"),
            result.Format());
    }

    [Fact]
    public void MapsAddedRemovedAndSettingsChanged()
    {
        var before = Minimal + """

            maps:
              old: { entries: { a: b } }
              tiers: { entries: { gold: c }, kind: exact }
            """;
        var after = Minimal + """

            maps:
              new: { entries: { a: b } }
              tiers: { entries: { gold: c, silver: c }, kind: prefix, default: c }
            """;

        Assert.Equal(
            """
            + map new
            - map old
            ~ map tiers
                + silver → c
                default: (none) → "c"
                kind: "exact" → "prefix"
            1 to add, 1 to change, 1 to remove.

            """.ReplaceLineEndings("\n"),
            Diff(before, after).Format());
    }

    [Fact]
    public void ListenerChangeRequiresRestart()
    {
        var before = Minimal + "\nlimits: { maxRequestBodySize: 10MiB }\n";
        var after = Minimal.Replace("127.0.0.1:18080", "127.0.0.1:18081") + "\nlimits: { maxRequestBodySize: 20MiB }\n";

        var result = Diff(before, after);

        Assert.Equal(
            """
            ~ listener public (restart required)
                address: "127.0.0.1:18080" → "127.0.0.1:18081"
            ~ limits (restart required)
                maxRequestBodySize: "10MiB" → "20MiB"
            0 to add, 2 to change, 0 to remove.

            """.ReplaceLineEndings("\n"),
            result.Format());
        Assert.True(result.RestartRequired);
        Assert.All(result.Changes, c => Assert.True(c.RestartRequired));
    }

    [Fact]
    public void DropUnderscoreHeadersChange_AppliesOnReload_ButNotWithAnAddressChange()
    {
        var after = Minimal.Replace("address: 127.0.0.1:18080", "address: 127.0.0.1:18080\n    dropUnderscoreHeaders: false");

        var result = Diff(Minimal, after);

        Assert.Equal(
            """
            ~ listener public
                dropUnderscoreHeaders: true → false
            0 to add, 1 to change, 0 to remove.

            """.ReplaceLineEndings("\n"),
            result.Format());
        Assert.False(result.RestartRequired);

        var moved = Diff(Minimal, after.Replace("127.0.0.1:18080", "127.0.0.1:18081"));
        Assert.True(moved.RestartRequired);
    }

    [Fact]
    public void TrustedProxiesAreComparedAsASet()
    {
        var before = Minimal + "\ntrustedProxies: [10.0.0.1, 192.168.0.0/16]\n";
        var after = Minimal + "\ntrustedProxies: [192.168.0.0/16, 10.0.0.0/8]\n";

        Assert.Equal(
            """
            ~ trustedProxies
                + 10.0.0.0/8
                - 10.0.0.1
            0 to add, 1 to change, 0 to remove.

            """.ReplaceLineEndings("\n"),
            Diff(before, after).Format());
        Assert.Equal("No changes.\n0 to add, 0 to change, 0 to remove.\n", Diff(before, Minimal + "\ntrustedProxies: [192.168.0.0/16, 10.0.0.1]\n").Format());
    }

    [Fact]
    public void SensitiveHeaderValuesAreRedacted()
    {
        var withHeaders = Minimal + """

                requestHeaders:
                  set:
                    Authorization: Bearer s3cret-one
                    X-Tenant: acme
            """;

        var added = Diff(Minimal, withHeaders).Format();

        Assert.Equal(
            """
            ~ route r
                requestHeaders.set.Authorization: (none) → <redacted>
                requestHeaders.set.X-Tenant: (none) → "acme"
            0 to add, 1 to change, 0 to remove.

            """.ReplaceLineEndings("\n"),
            added);
        Assert.DoesNotContain("s3cret", added);
    }

    [Fact]
    public void ChangedSecretIsReportedWithoutItsValue()
    {
        var before = Minimal + "\n    requestHeaders: { set: { Authorization: Bearer s3cret-one } }\n";
        var after = Minimal + "\n    requestHeaders: { set: { Authorization: Bearer s3cret-two } }\n";

        var text = Diff(before, after).Format();

        Assert.Equal(
            """
            ~ route r
                requestHeaders.set.Authorization: (sensitive value changed)
            0 to add, 1 to change, 0 to remove.

            """.ReplaceLineEndings("\n"),
            text);
        Assert.DoesNotContain("s3cret", text);
    }

    [Fact]
    public void SectionsAreOrderedAndDestinationsNestUnderTheirCluster()
    {
        var before = """
            listeners:
              - name: public
                address: 127.0.0.1:18080
                protocols: http1
            maps:
              versions: { file: versions.map }
            clusters:
              orders:
                destinations: [http://127.0.0.1:5001, http://127.0.0.1:5002]
              orders-v1: { destinations: [http://127.0.0.1:5101] }
              orders-v2: { destinations: [http://127.0.0.1:5102] }
              orders-v3: { destinations: [http://127.0.0.1:5103] }
            routes:
              - name: orders
                match: { path: "/orders/{**rest}" }
                cluster: orders
              - name: legacy
                match: { pathPrefix: /legacy }
                cluster: orders-v1
            """;
        var after = """
            listeners:
              - name: public
                address: 127.0.0.1:18080
                protocols: http2
            maps:
              versions: { file: versions.map }
            clusters:
              orders:
                destinations: [http://127.0.0.1:5001, http://127.0.0.1:5002, http://127.0.0.1:5003]
                loadBalancing: leastRequests
              orders-v1: { destinations: [http://127.0.0.1:5101] }
              orders-v2: { destinations: [http://127.0.0.1:5102] }
              orders-v3: { destinations: [http://127.0.0.1:5103] }
            routes:
              - name: orders
                match: { path: "/v2/orders/{**rest}" }
                cluster: orders
              - name: orders-v3
                match: { pathPrefix: /api }
                cluster: orders-${map:versions(header:Api-Version)}
            """;

        var result = Diff(before, after,
            new Dictionary<string, string> { ["versions.map"] = "1 v1\n2 v2\n" },
            new Dictionary<string, string> { ["versions.map"] = "1 v1\n2 v2\n3 v3\n" });

        Assert.Equal(
            """
            + route orders-v3
            - route legacy
            ~ route orders
                match.path: "/orders/{**rest}" → "/v2/orders/{**rest}"
            ~ cluster orders
                + destination d3 (http://127.0.0.1:5003)
                loadBalancing: "roundRobin" → "leastRequests"
            ~ map versions
                + 3 → v3
            ~ listener public (restart required)
                protocols: "http1" → "http2"
            2 to add, 4 to change, 1 to remove.

            """.ReplaceLineEndings("\n"),
            result.Format());
    }

    private ConfigDiffResult Diff(string before, string after, Dictionary<string, string>? beforeFiles = null, Dictionary<string, string>? afterFiles = null)
    {
        var a = Build(WriteConfig("before", before, beforeFiles));
        var b = Build(WriteConfig("after", after, afterFiles));
        return ConfigDiff.Compare(a, b);
    }

    private string WriteConfig(string folder, string yaml, Dictionary<string, string>? files)
    {
        foreach (var (name, text) in files ?? []) Write(folder, name, text);
        return Write(folder, "portcullis.yaml", yaml);
    }

    private string Write(string folder, string name, string text)
    {
        var directory = Directory.CreateDirectory(Path.Combine(_dir.FullName, folder));
        var path = Path.Combine(directory.FullName, name);
        File.WriteAllText(path, text);
        return path;
    }

    private static GatewaySnapshot Build(string path)
    {
        var result = new SnapshotBuilder(_ => null).Build(path);
        Assert.True(result.Succeeded, string.Join("\n", result.Diagnostics));
        return result.Snapshot!;
    }
}
