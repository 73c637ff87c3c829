using Portcullis.Configuration;

namespace Portcullis.Tests.Configuration;

/// <summary>
/// One test per class of configuration error. Every config is written to a temp directory and built
/// with <see cref="SnapshotBuilder"/>; each test pins the exact 1-based line:column (as an editor shows
/// it) of the offending token, and the message and hint.
/// </summary>
public sealed class ValidatorTests() : ConfigBuildTestBase("portcullis-validator-")
{
    private readonly List<string> _environmentLookups = [];

    // ---------------------------------------------------------------- valid

    [Fact]
    public void Validate_ValidConfig_ProducesNoDiagnostics()
    {
        WriteFile("maps/versions.map", """
            # api versions, one per line

            v1 orders-v1
            v2 orders-v2
            """);
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:8080
              - name: admin
                address: 127.0.0.1:9901
                admin: true
            limits:
              maxRequestBodySize: 1MiB
              requestHeadersTimeout: 10s
            trustedProxies: [10.0.0.0/8, 192.168.1.7]
            maps:
              versions:
                file: maps/versions.map
                default: orders-v1
            clusters:
              orders-v1:
                destinations:
                  - http://127.0.0.1:5001
              orders-v2:
                loadBalancing: leastRequests
                destinations:
                  - name: a
                    address: http://127.0.0.1:5002
                healthCheck:
                  active:
                    interval: 5s
                    timeout: 1s
                timeouts:
                  connect: 2s
                  request: 1m30s
            routes:
              - name: orders
                match:
                  pathPrefix: /orders
                cluster: orders-v2
                requestHeaders:
                  set:
                    X-Upstream: ${map:versions(header:Api-Version,segment:1)}
              - name: home
                match:
                  path: /
                respond:
                  body: hello
            """);

        Assert.True(result.Succeeded, Dump(result));
        Assert.Empty(result.Diagnostics);
        var snapshot = result.Snapshot!;
        Assert.Equal(["orders", "home"], snapshot.ProxyRoutes.Select(r => r.RouteId));
        Assert.Equal(["orders-v1", "orders-v2"], snapshot.ProxyClusters.Select(c => c.ClusterId).Order());
        Assert.Contains(Path.Combine(_directory.FullName, "maps", "versions.map"), snapshot.Files);
        Assert.Equal(TimeSpan.FromSeconds(90), snapshot.Config.Clusters["orders-v2"].Timeouts.Request);
        Assert.Equal(1024 * 1024, snapshot.Config.Limits.MaxRequestBodySize.Bytes);
        // ${map:...} is a route template, never an environment variable.
        Assert.Empty(_environmentLookups);
    }

    [Fact]
    public void Validate_ValidClusterTemplate_ProducesNoDiagnostics()
    {
        WriteFile("maps/versions.map", "v1 orders-v1\nv2 orders-v2\n");
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            maps:
              versions:
                file: maps/versions.map
                default: orders-v1
            clusters:
              orders-v1:
                destinations: [http://127.0.0.1:5001]
              orders-v2:
                destinations: [http://127.0.0.1:5002]
            routes:
              - name: orders
                cluster: ${map:versions(header:Api-Version,segment:1)}
            """);

        Assert.True(result.Succeeded, Dump(result));
        Assert.Empty(result.Diagnostics);
        var route = result.Snapshot!.Routes["orders"];
        Assert.Null(route.StaticCluster);
        Assert.NotNull(route.ClusterTemplate);
        Assert.Equal(["orders-v1", "orders-v2"], route.ClusterTemplate.PossibleValues().Order());
    }

    // ---------------------------------------------------------------- malformed YAML

    [Fact]
    public void Validate_MalformedYaml_ReportsLineAndColumn()
    {
        var result = Build("""
            listeners:
              - name: public
               address: 127.0.0.1:8080
            """);

        Assert.Null(result.Snapshot);
        var error = Assert.Single(result.Diagnostics);
        AssertAt(error, 3, 4);
        Assert.StartsWith("malformed YAML: ", error.Message, StringComparison.Ordinal);
        Assert.Contains("did not find expected '-' indicator", error.Message, StringComparison.Ordinal);
        // YamlDotNet's own "(Line: .., Col: ..)" prefix is stripped; we print our own position.
        Assert.DoesNotContain("Line:", error.Message, StringComparison.Ordinal);
        Assert.Contains("indentation", error.Hint, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_MalformedYaml_UnterminatedQuote_PointsAtOpeningQuote()
    {
        var result = Build("""
            listeners:
              - name: "public
                address: 127.0.0.1:8080
            """);

        var error = Assert.Single(result.Diagnostics);
        AssertAt(error, 2, 11);
        Assert.Contains("malformed YAML: While scanning a multi-line double-quoted scalar", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_DuplicateYamlKey_ReportsSecondKey()
    {
        var result = Build("""
            listeners:
              - name: public
                name: other
                address: 127.0.0.1:8080
            """);

        var error = Assert.Single(result.Diagnostics);
        AssertAt(error, 3, 5);
        Assert.Contains("Duplicate key", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_MalformedYaml_UnclosedFlowSequence_ReportsDiagnosticInsteadOfThrowing()
    {
        var result = Build("""
            trustedProxies: [10.0.0.1, 10.0.0.2
            routes: []
            """);

        Assert.Null(result.Snapshot);
        var error = Assert.Single(result.Diagnostics);
        Assert.StartsWith("malformed YAML: ", error.Message, StringComparison.Ordinal);
        // The unclosed '[' is on line 1 (column 17); YamlDotNet gives no mark here, so only the line is pinned.
        Assert.Equal((ConfigPath, 1), (error.File, error.Line));
    }

    [Fact]
    public void Validate_MalformedYaml_TabIndentation_PointsAtTab()
    {
        var result = Build("listeners:\n\t- name: public\n");

        var error = Assert.Single(result.Diagnostics);
        Assert.Contains("tab", error.Message, StringComparison.Ordinal);
        AssertAt(error, 2, 1);
    }

    [Fact]
    public void Validate_UnquotedWildcardAddress_PointsAtAliasAndSuggestsQuotes()
    {
        var result = Build("""
            listeners:
              - name: public
                address: *:8080
            """);

        var error = Assert.Single(result.Diagnostics);
        AssertAt(error, 3, 14);
        Assert.Contains("quote", error.Hint, StringComparison.OrdinalIgnoreCase);
    }

    // ---------------------------------------------------------------- unknown keys

    [Fact]
    public void Validate_UnknownKey_SuggestsClosestKey()
    {
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            clusters:
              backend:
                lodBalancing: random
                destinations: [http://127.0.0.1:5001]
            routes:
              - name: all
                cluster: backend
            """);

        var error = SingleError(result);
        AssertAt(error, 6, 5);
        Assert.Equal("unknown key 'lodBalancing' in clusters.backend", error.Message);
        Assert.Equal("did you mean 'loadBalancing'?", error.Hint);
    }

    [Fact]
    public void Validate_UnknownTopLevelKey_ReportsLineAndColumn()
    {
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            clusters:
              backend:
                destinations: [http://127.0.0.1:5001]
            routes:
              - name: all
                cluster: backend
            trustedProxy: [10.0.0.1]
            foobar: 1
            """);

        var errors = result.Errors.ToList();
        Assert.Equal(2, errors.Count);

        AssertAt(errors[0], 10, 1);
        Assert.Equal("unknown key 'trustedProxy'", errors[0].Message);
        Assert.Equal("did you mean 'trustedProxies'?", errors[0].Hint);

        AssertAt(errors[1], 11, 1);
        Assert.Equal("unknown key 'foobar'", errors[1].Message);
        Assert.Equal("allowed keys here: listeners, limits, trustedProxies, identity, maps, routes, clusters, rateLimits, quotas, plans, plan, stores, observability, admin, analytics, advice, include", errors[1].Hint);
    }

    [Fact]
    public void Validate_UnknownEnumValue_SuggestsClosestValue()
    {
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            clusters:
              backend:
                loadBalancing: roundRobn
                destinations: [http://127.0.0.1:5001]
            routes:
              - name: all
                cluster: backend
            """);

        var error = SingleError(result);
        AssertAt(error, 6, 20);
        Assert.Equal("clusters.backend.loadBalancing: 'roundRobn' is not allowed (did you mean 'roundRobin'?)", error.Message);
        Assert.Equal("expected one of roundRobin, leastRequests, powerOfTwoChoices, random, first, consistentHash", error.Hint);
    }

    // ---------------------------------------------------------------- wrong types

    [Fact]
    public void Validate_WrongType_MappingWhereStringExpected()
    {
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            clusters:
              backend:
                destinations: [http://127.0.0.1:5001]
            routes:
              - name: all
                cluster: backend
                stripPrefix: { value: /api }
            """);

        var error = SingleError(result);
        AssertAt(error, 10, 18);
        Assert.Equal("routes[0].stripPrefix: expected a string, found a mapping", error.Message);
    }

    [Fact]
    public void Validate_WrongType_StringWhereIntegerExpected()
    {
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            clusters:
              backend:
                destinations: [http://127.0.0.1:5001]
                retries: many
            routes:
              - name: all
                cluster: backend
            """);

        var error = SingleError(result);
        AssertAt(error, 7, 14);
        Assert.Equal("clusters.backend.retries.attempts: not an integer", error.Message);
        Assert.Equal("expected an integer", error.Hint);
    }

    [Fact]
    public void Validate_WrongType_ScalarWhereListExpected()
    {
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            clusters:
              backend:
                destinations: [http://127.0.0.1:5001]
            routes:
              - name: all
                cluster: backend
                match:
                  headers: X-Tier
            """);

        var error = SingleError(result);
        AssertAt(error, 11, 16);
        Assert.Equal("routes[0].match.headers: expected a list, found 'X-Tier'", error.Message);
    }

    // ---------------------------------------------------------------- durations and sizes

    [Theory]
    [InlineData("5 parsecs", null)]
    [InlineData("5parsecs", "unknown unit 'parsecs'")]
    [InlineData("-1s", "a duration cannot be negative")]
    [InlineData("10", "missing unit")]
    public void Validate_BadDuration_ReportsLineAndColumn(string value, string? reason)
    {
        var result = Build($"""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            clusters:
              backend:
                destinations: [http://127.0.0.1:5001]
                timeouts:
                  connect: {value}
            routes:
              - name: all
                cluster: backend
            """);

        var error = SingleError(result);
        AssertAt(error, 8, 16);
        Assert.StartsWith($"clusters.backend.timeouts.connect: bad duration '{value}': ", error.Message, StringComparison.Ordinal);
        if (reason is not null) Assert.EndsWith(reason, error.Message, StringComparison.Ordinal);
        Assert.Equal("expected a duration such as 250ms, 5s, 1m or 2h", error.Hint);
    }

    [Theory]
    [InlineData("lots", "not a size")]
    [InlineData("-5MiB", "a size cannot be negative")]
    [InlineData("1.5MiB", "not a size")]
    [InlineData("10 parsecs", "not a size")]
    public void Validate_BadSize_ReportsLineAndColumn(string value, string reason)
    {
        var result = Build($"""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            limits:
              maxRequestBodySize: {value}
            clusters:
              backend:
                destinations: [http://127.0.0.1:5001]
            routes:
              - name: all
                cluster: backend
            """);

        var error = SingleError(result);
        AssertAt(error, 5, 23);
        Assert.Equal($"limits.maxRequestBodySize: bad size '{value}': {reason}", error.Message);
        Assert.Equal("expected a size such as 512, 32KiB or 10MiB", error.Hint);
    }

    [Fact]
    public void Validate_ZeroSizeLimit_ReportsLineAndColumn()
    {
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            limits:
              maxRequestHeadersSize: 0
            clusters:
              backend:
                destinations: [http://127.0.0.1:5001]
            routes:
              - name: all
                cluster: backend
            """);

        var error = SingleError(result);
        AssertAt(error, 5, 26);
        Assert.Equal("limits.maxRequestHeadersSize must be greater than zero", error.Message);
    }

    [Fact]
    public void Validate_ShutdownDelayAbove10m_ReportsLineAndColumnWithHint()
    {
        // (A negative duration is already refused by the duration parser.)
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            limits:
              shutdownDelay: 11m
            routes:
              - name: all
                respond: { status: 200 }
            """);

        var error = SingleError(result);
        AssertAt(error, 5, 18);
        Assert.Equal("limits.shutdownDelay is above 10m", error.Message);
        Assert.NotNull(error.Hint);
    }

    // ---------------------------------------------------------------- timeouts

    [Fact]
    public void Validate_NegativeTimeout_ReportsLineAndColumn()
    {
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            clusters:
              backend:
                destinations: [http://127.0.0.1:5001]
                timeouts:
                  request: -1s
            routes:
              - name: all
                cluster: backend
            """);

        var error = SingleError(result);
        AssertAt(error, 8, 16);
        Assert.Equal("clusters.backend.timeouts.request: bad duration '-1s': a duration cannot be negative", error.Message);
    }

    [Fact]
    public void Validate_ZeroTimeout_ReportsLineAndColumn()
    {
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            clusters:
              backend:
                destinations: [http://127.0.0.1:5001]
                timeouts:
                  connect: 0s
            routes:
              - name: all
                cluster: backend
            """);

        var error = SingleError(result);
        AssertAt(error, 8, 16);
        Assert.Equal("connect timeout must be greater than zero", error.Message);
        Assert.Equal("e.g. connect: 5s", error.Hint);
    }

    // ---------------------------------------------------------------- destinations

    [Theory]
    [InlineData("not-a-url")]
    [InlineData("ftp://files.example.com")]
    [InlineData("localhost:5001")]
    [InlineData("/relative/path")]
    public void Validate_BadDestinationUrl_ReportsLineAndColumn(string address)
    {
        var result = Build($"""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            clusters:
              backend:
                destinations:
                  - http://127.0.0.1:5001
                  - {address}
            routes:
              - name: all
                cluster: backend
            """);

        var error = SingleError(result);
        AssertAt(error, 8, 9);
        Assert.Equal($"destination address '{address}' is not an absolute http:// or https:// URL", error.Message);
        Assert.Equal("e.g. http://10.0.0.5:8080", error.Hint);
    }

    [Fact]
    public void Validate_BadDestinationUrl_InMappingForm_PointsAtAddressValue()
    {
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            clusters:
              backend:
                destinations:
                  - name: a
                    address: 10.0.0.5:8080
            routes:
              - name: all
                cluster: backend
            """);

        var error = SingleError(result);
        AssertAt(error, 8, 18);
        Assert.Equal("destination address '10.0.0.5:8080' is not an absolute http:// or https:// URL", error.Message);
    }

    // ---------------------------------------------------------------- names

    [Fact]
    public void Validate_DuplicateRouteNames_ReportsSecondName()
    {
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            clusters:
              backend:
                destinations: [http://127.0.0.1:5001]
            routes:
              - name: all
                cluster: backend
              - name: all
                cluster: backend
            """);

        var error = SingleError(result);
        AssertAt(error, 10, 11);
        Assert.Equal("duplicate route name 'all' (first at routes[0])", error.Message);
        Assert.Equal("give each route its own name", error.Hint);
    }

    [Fact]
    public void Validate_DuplicateListenerNames_ReportsSecondName()
    {
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:8080
              - name: public
                address: 127.0.0.1:8081
            clusters:
              backend:
                destinations: [http://127.0.0.1:5001]
            routes:
              - name: all
                cluster: backend
            """);

        var error = SingleError(result);
        AssertAt(error, 4, 11);
        Assert.Equal("duplicate listener name 'public' (first at listeners[0])", error.Message);
    }

    [Fact]
    public void Validate_UnknownCluster_ReportsLineAndColumn()
    {
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            clusters:
              backend:
                destinations: [http://127.0.0.1:5001]
            routes:
              - name: all
                cluster: backnd
            """);

        var error = SingleError(result);
        AssertAt(error, 9, 14);
        Assert.Equal("route 'all' names unknown cluster 'backnd'", error.Message);
        Assert.Equal("did you mean 'backend'?", error.Hint);
    }

    [Fact]
    public void Validate_UnknownClusterFarFromAnyName_HintsToDefineIt()
    {
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            clusters:
              backend:
                destinations: [http://127.0.0.1:5001]
            routes:
              - name: all
                cluster: payments
            """);

        var error = SingleError(result);
        AssertAt(error, 9, 14);
        Assert.Equal("define it under clusters:", error.Hint);
    }

    // ---------------------------------------------------------------- maps in templates

    [Fact]
    public void Validate_UnknownMapInClusterTemplate_ReportsLineAndColumn()
    {
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            maps:
              tier:
                entries:
                  gold: orders-gold
            clusters:
              orders-gold:
                destinations: [http://127.0.0.1:5001]
            routes:
              - name: all
                cluster: ${map:tiers(header:X-Tier)}
            """);

        var error = SingleError(result);
        AssertAt(error, 13, 14);
        Assert.Equal("unknown map 'tiers'", error.Message);
        Assert.Equal("did you mean 'tier'?", error.Hint);
    }

    [Fact]
    public void Validate_UnknownMapInHeaderTemplate_ReportsLineAndColumn()
    {
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            maps:
              tier:
                entries:
                  gold: orders-gold
            clusters:
              backend:
                destinations: [http://127.0.0.1:5001]
            routes:
              - name: all
                cluster: backend
                requestHeaders:
                  set:
                    X-Tier: "${map:tierz(host)}"
            """);

        var error = SingleError(result);
        AssertAt(error, 16, 17);
        Assert.Equal("unknown map 'tierz'", error.Message);
        Assert.Equal("did you mean 'tier'?", error.Hint);
    }

    [Fact]
    public void Validate_BadTemplateSource_ReportsLineAndColumn()
    {
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            maps:
              tier:
                entries:
                  gold: orders-gold
            clusters:
              orders-gold:
                destinations: [http://127.0.0.1:5001]
            routes:
              - name: all
                cluster: orders-${map:tier(bogus:tier)}
            """);

        var error = SingleError(result);
        AssertAt(error, 13, 14);
        Assert.StartsWith("bad cluster template: unknown request source 'bogus:tier'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_MapValueResolvesToUnknownCluster_ReportsLineAndColumn()
    {
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            maps:
              tier:
                entries:
                  gold: gold
                  silver: silvr
                default: bronze
            clusters:
              orders-gold:
                destinations: [http://127.0.0.1:5001]
              orders-silver:
                destinations: [http://127.0.0.1:5002]
              orders-bronze:
                destinations: [http://127.0.0.1:5003]
            routes:
              - name: all
                cluster: orders-${map:tier(header:X-Tier)}
            """);

        var error = SingleError(result);
        AssertAt(error, 19, 14);
        Assert.Equal("route 'all' can resolve to unknown cluster 'orders-silvr' (from map tier)", error.Message);
    }

    [Fact]
    public void Validate_MapDefaultResolvesToUnknownCluster_IsReported()
    {
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            maps:
              tier:
                entries:
                  gold: orders-gold
                default: orders-free
            clusters:
              orders-gold:
                destinations: [http://127.0.0.1:5001]
            routes:
              - name: all
                cluster: ${map:tier(header:X-Tier)}
            """);

        var error = SingleError(result);
        AssertAt(error, 14, 14);
        Assert.Equal("route 'all' can resolve to unknown cluster 'orders-free' (from map tier)", error.Message);
    }

    // ---------------------------------------------------------------- listeners

    [Fact]
    public void Validate_ConflictingListenerAddresses_ReportsSecondAddress()
    {
        var result = Build("""
            listeners:
              - name: local
                address: 127.0.0.1:8080
              - name: any
                address: "*:8080"
            clusters:
              backend:
                destinations: [http://127.0.0.1:5001]
            routes:
              - name: all
                cluster: backend
            """);

        var error = SingleError(result);
        AssertAt(error, 5, 14);
        Assert.Equal("address *:8080 conflicts with listener 'local' (127.0.0.1:8080)", error.Message);
        Assert.Equal("use another port", error.Hint);
    }

    [Fact]
    public void Validate_PortOutOfRange_ReportsLineAndColumn()
    {
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:70000
            clusters:
              backend:
                destinations: [http://127.0.0.1:5001]
            routes:
              - name: all
                cluster: backend
            """);

        var error = SingleError(result);
        AssertAt(error, 3, 14);
        Assert.Equal("bad listener address: port '70000' is out of range", error.Message);
        Assert.Equal("write host:port, e.g. 127.0.0.1:8080 or *:8080", error.Hint);
    }

    // ---------------------------------------------------------------- map files

    [Fact]
    public void Validate_MissingMapFile_ReportsLineAndColumn()
    {
        Directory.CreateDirectory(Path.Combine(_directory.FullName, "maps"));
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            maps:
              versions:
                file: maps/missing.map
            clusters:
              backend:
                destinations: [http://127.0.0.1:5001]
            routes:
              - name: all
                cluster: backend
            """);

        var error = SingleError(result);
        AssertAt(error, 6, 11);
        var full = Path.Combine(_directory.FullName, "maps", "missing.map");
        Assert.Equal($"cannot read map file 'maps/missing.map' ({full}): file not found", error.Message);
        Assert.Equal("paths are relative to the config file", error.Hint);
    }

    [Fact]
    public void Validate_UnreadableMapFile_ReportsLineAndColumn()
    {
        // A directory cannot be read as a file (works even when the tests run as root, unlike chmod 000).
        Directory.CreateDirectory(Path.Combine(_directory.FullName, "maps", "versions.map"));
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            maps:
              versions:
                file: maps/versions.map
            clusters:
              backend:
                destinations: [http://127.0.0.1:5001]
            routes:
              - name: all
                cluster: backend
            """);

        var error = SingleError(result);
        AssertAt(error, 6, 11);
        Assert.StartsWith("cannot read map file 'maps/versions.map' (", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_MapFileEntryWithoutValue_ReportsMapFileLineAndColumn()
    {
        var mapPath = WriteFile("maps/versions.map", "# versions\n\nv1 orders\n  v2\n");
        var result = Build(ConfigWithMapFile("exact"));

        var error = SingleError(result);
        AssertAt(error, 4, 3, mapPath);
        Assert.Equal("map entry 'v2' has no value", error.Message);
        Assert.Equal("write the key, whitespace, then the value: `v2 orders-v2`", error.Hint);
    }

    [Fact]
    public void Validate_MapFileDuplicateKey_ReportsMapFileLineAndColumn()
    {
        var mapPath = WriteFile("maps/versions.map", "# versions\nv1 orders\n\n\tv1 orders\n");
        var result = Build(ConfigWithMapFile("exact"));

        var error = SingleError(result);
        AssertAt(error, 4, 2, mapPath);
        Assert.Equal("duplicate map key 'v1' (first on line 2)", error.Message);
    }

    [Fact]
    public void Validate_MapFileBadRegex_ReportsMapFileLineAndColumn()
    {
        var mapPath = WriteFile("maps/versions.map", "^/v1/ orders\n^/(v2 orders\n(a)\\1 orders\n");
        var result = Build(ConfigWithMapFile("regex"));

        var errors = result.Errors.ToList();
        Assert.Equal(2, errors.Count);
        AssertAt(errors[0], 2, 1, mapPath);
        Assert.StartsWith("bad regular expression '^/(v2': ", errors[0].Message, StringComparison.Ordinal);
        // Backreferences are rejected by the non-backtracking engine (NotSupportedException).
        AssertAt(errors[1], 3, 1, mapPath);
        Assert.StartsWith("bad regular expression '(a)\\1': ", errors[1].Message, StringComparison.Ordinal);
        Assert.Equal("backreferences and lookarounds are not supported", errors[1].Hint);
    }

    [Theory]
    [InlineData("\"\"")]
    [InlineData("")]
    public void Validate_InlineMapEntryWithoutValue_IsReportedAtItsKey(string value)
    {
        var result = Build($"""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            maps:
              versions:
                entries:
                  v1: orders
                  v2: {value}
            clusters:
              orders:
                destinations: [http://127.0.0.1:5001]
            routes:
              - name: all
                cluster: orders
            """);

        var error = SingleError(result);
        Assert.Equal("map entry 'v2' has no value", error.Message);
        AssertAt(error, 8, 7);
    }

    [Fact]
    public void Validate_InlineMapBadRegex_IsReportedAtItsKey()
    {
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            maps:
              versions:
                kind: regex
                entries:
                  "^/v1/": orders
                  "^(v3": orders
            clusters:
              orders:
                destinations: [http://127.0.0.1:5001]
            routes:
              - name: all
                cluster: orders
            """);

        var error = SingleError(result);
        Assert.StartsWith("bad regular expression '^(v3': ", error.Message, StringComparison.Ordinal);
        AssertAt(error, 9, 7);
    }

    // ---------------------------------------------------------------- environment variables

    [Fact]
    public void Validate_UnsetEnvironmentVariable_ReportsLineAndColumn()
    {
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:${PORT}
            clusters:
              backend:
                destinations: [http://127.0.0.1:5001]
            routes:
              - name: all
                cluster: backend
            """);

        Assert.False(result.Succeeded);
        var error = ErrorContaining(result, "environment variable");
        AssertAt(error, 3, 24);
        Assert.Equal("environment variable 'PORT' is not set", error.Message);
        Assert.Equal("set PORT, or give a default with ${PORT:-value}", error.Hint);
        Assert.Contains("PORT", _environmentLookups);
    }

    [Fact]
    public void Validate_UnsetEnvironmentVariableInQuotedScalar_PointsAtDollar()
    {
        var result = Build("""
            listeners:
              - name: public
                address: "127.0.0.1:${PORT}"
            clusters:
              backend:
                destinations: [http://127.0.0.1:5001]
            routes:
              - name: all
                cluster: backend
            """);

        var error = ErrorContaining(result, "environment variable");
        AssertAt(error, 3, 25);
    }

    [Theory]
    [InlineData(null, 8080)]
    [InlineData("", 8080)]
    [InlineData("9090", 9090)]
    public void Validate_EnvironmentVariableDefault_IsUsedWhenUnsetOrEmpty(string? port, int expected)
    {
        if (port is not null) _environment["PORT"] = port;
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:${PORT:-8080}
            clusters:
              backend:
                destinations: [http://127.0.0.1:5001]
            routes:
              - name: all
                cluster: backend
            """);

        Assert.True(result.Succeeded, Dump(result));
        Assert.Empty(result.Diagnostics);
        Assert.Equal(expected, Assert.Single(result.Snapshot!.Listeners).Address.Port);
    }

    [Fact]
    public void Validate_EnvironmentVariable_IsSubstituted()
    {
        _environment["UPSTREAM"] = "http://10.0.0.5:8080";
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            clusters:
              backend:
                destinations: [ "${UPSTREAM}" ]
            routes:
              - name: all
                cluster: backend
            """);

        Assert.True(result.Succeeded, Dump(result));
        Assert.Equal("http://10.0.0.5:8080", result.Snapshot!.ProxyClusters[0].Destinations!["d1"].Address);
    }

    [Fact]
    public void Validate_DoubleDollar_IsLiteral()
    {
        _environment["AMOUNT"] = "should not be used";
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:8080
            routes:
              - name: price
                respond:
                  body: cost is $${AMOUNT}
            """);

        Assert.True(result.Succeeded, Dump(result));
        Assert.Equal("cost is ${AMOUNT}", result.Snapshot!.Config.Routes[0].Respond!.Body);
        Assert.DoesNotContain("AMOUNT", _environmentLookups);
    }

    // ---------------------------------------------------------------- many errors

    [Fact]
    public void Validate_SeveralErrors_AllReported()
    {
        var result = Build("""
            listeners:
              - name: public
                address: 127.0.0.1:70000
            clusters:
              backend:
                lodBalancing: random
                destinations: [http://127.0.0.1:5001]
                timeouts:
                  connect: 5 parsecs
            routes:
              - name: all
                cluster: backnd
              - name: all
                cluster: backend
            """);

        Assert.Null(result.Snapshot);
        var found = result.Errors.Select(e => (e.Line, e.Column, e.Message)).OrderBy(e => e.Line).ToList();
        Assert.Equal(5, found.Count);
        Assert.Equal((3, 14, "bad listener address: port '70000' is out of range"), found[0]);
        Assert.Equal((6, 5, "unknown key 'lodBalancing' in clusters.backend"), found[1]);
        Assert.Equal((9, 16), (found[2].Line, found[2].Column));
        Assert.StartsWith("clusters.backend.timeouts.connect: bad duration '5 parsecs'", found[2].Message, StringComparison.Ordinal);
        Assert.Equal((12, 14, "route 'all' names unknown cluster 'backnd'"), found[3]);
        Assert.Equal((13, 11, "duplicate route name 'all' (first at routes[0])"), found[4]);
        Assert.All(result.Errors, e => Assert.Equal(ConfigPath, e.File));
    }

    [Fact]
    public void Validate_MissingConfigFile_ReportsFileNotFound()
    {
        var path = Path.Combine(_directory.FullName, "nope.yaml");
        var result = new SnapshotBuilder(environment: _ => null).Build(path);

        var error = Assert.Single(result.Diagnostics);
        Assert.Equal((path, 1, 1), (error.File, error.Line, error.Column));
        Assert.Equal("cannot read the configuration file: file not found", error.Message);
    }

    // ---------------------------------------------------------------- helpers

    private static string ConfigWithMapFile(string kind) => $"""
        listeners:
          - name: public
            address: 127.0.0.1:8080
        maps:
          versions:
            file: maps/versions.map
            kind: {kind}
        clusters:
          orders:
            destinations: [http://127.0.0.1:5001]
        routes:
          - name: all
            cluster: orders
        """;

    // Also records which variables were looked up.
    private protected override BuildResult Build(string yaml)
    {
        WriteFile("portcullis.yaml", yaml);
        var builder = new SnapshotBuilder(environment: name =>
        {
            _environmentLookups.Add(name);
            return _environment.TryGetValue(name, out var value) ? value : null;
        });
        return builder.Build(ConfigPath);
    }
}
