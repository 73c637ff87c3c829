using Microsoft.AspNetCore.Http;
using Portcullis.Configuration;
using Portcullis.Routing;
using Portcullis.Pipeline;

namespace Portcullis.Tests.Routing;

public sealed class MapTests
{
    // ---------------------------------------------------------------- CompiledMap: exact

    [Fact]
    public void Map_Exact_FindsKeyOrFallsBackToDefault()
    {
        var map = Map(MapKind.Exact, "v1 orders-v1\nv2 orders-v2\n", defaultValue: "orders-legacy");

        Assert.Equal("orders-v1", map.Lookup("v1"));
        Assert.Equal("orders-v2", map.Lookup("v2"));
        Assert.Equal("orders-legacy", map.Lookup("v3"));
        Assert.Equal("orders-legacy", map.Lookup("v"));
        Assert.Equal("orders-legacy", map.Lookup(""));
    }

    [Fact]
    public void Map_Exact_WithoutDefault_YieldsNull()
    {
        var map = Map(MapKind.Exact, "v1 orders-v1\n");

        Assert.Null(map.Lookup("v9"));
        Assert.Null(map.Lookup(""));
    }

    [Fact]
    public void Map_Exact_IsCaseSensitiveByDefault()
    {
        var map = Map(MapKind.Exact, "Gold orders-gold\n");

        Assert.Equal("orders-gold", map.Lookup("Gold"));
        Assert.Null(map.Lookup("gold"));
        Assert.Null(map.Lookup("GOLD"));
    }

    [Fact]
    public void Map_Exact_IgnoreCase()
    {
        var map = Map(MapKind.Exact, "Gold orders-gold\n", ignoreCase: true);

        Assert.Equal("orders-gold", map.Lookup("gold"));
        Assert.Equal("orders-gold", map.Lookup("GOLD"));
        Assert.Null(map.Lookup("golden"));
    }

    [Fact]
    public void Map_Exact_LooksUpSlicesOfLargerStrings()
    {
        var map = Map(MapKind.Exact, "v2 orders-v2\n");
        const string path = "/v2/orders";

        Assert.Equal("orders-v2", map.Lookup(path.AsSpan(1, 2)));
    }

    // ---------------------------------------------------------------- CompiledMap: prefix

    [Fact]
    public void Map_Prefix_LongestPrefixWins_RegardlessOfFileOrder()
    {
        var map = Map(MapKind.Prefix, "/api orders-api\n/api/v2 orders-v2\n/ catch-all\n/api/v2/admin admin\n");

        Assert.Equal("admin", map.Lookup("/api/v2/admin/users"));
        Assert.Equal("orders-v2", map.Lookup("/api/v2/orders"));
        Assert.Equal("orders-api", map.Lookup("/api/v1/orders"));
        Assert.Equal("orders-api", map.Lookup("/api"));
        Assert.Equal("catch-all", map.Lookup("/other"));
    }

    [Fact]
    public void Map_Prefix_NoMatch_UsesDefault()
    {
        var map = Map(MapKind.Prefix, "/api orders\n", defaultValue: "web");

        Assert.Equal("web", map.Lookup("/ap"));
        Assert.Equal("web", map.Lookup("api"));
        Assert.Equal("web", map.Lookup(""));
    }

    [Fact]
    public void Map_Prefix_IgnoreCase()
    {
        var caseSensitive = Map(MapKind.Prefix, "/API orders\n");
        var ignoreCase = Map(MapKind.Prefix, "/API orders\n", ignoreCase: true);

        Assert.Null(caseSensitive.Lookup("/api/x"));
        Assert.Equal("orders", ignoreCase.Lookup("/api/x"));
        Assert.Equal("orders", ignoreCase.Lookup("/Api"));
    }

    // ---------------------------------------------------------------- CompiledMap: regex

    [Fact]
    public void Map_Regex_FirstMatchingLineWins()
    {
        var map = Map(MapKind.Regex, "^/v[0-9]+/ versioned\n^/v2/ v2-only\n/admin admin\n");

        // Both of the first two lines match: file order decides, not specificity.
        Assert.Equal("versioned", map.Lookup("/v2/orders"));
        Assert.Equal("versioned", map.Lookup("/v10/orders"));
        // Patterns are not anchored unless they say so.
        Assert.Equal("admin", map.Lookup("/tenant/admin/x"));
        Assert.Null(map.Lookup("/orders"));
    }

    [Fact]
    public void Map_Regex_IgnoreCaseAndDefault()
    {
        var caseSensitive = Map(MapKind.Regex, "^gold$ orders-gold\n", defaultValue: "orders-free");
        var ignoreCase = Map(MapKind.Regex, "^gold$ orders-gold\n", ignoreCase: true, defaultValue: "orders-free");

        Assert.Equal("orders-free", caseSensitive.Lookup("GOLD"));
        Assert.Equal("orders-gold", ignoreCase.Lookup("GOLD"));
        Assert.Equal("orders-free", ignoreCase.Lookup("golden"));
    }

    [Fact]
    public void Map_Values_ListsEveryValueAndTheDefaultOnce()
    {
        var map = Map(MapKind.Exact, "a one\nb two\nc one\n", defaultValue: "two");

        Assert.Equal(["one", "two"], map.Values);
        Assert.Equal(3, map.EntryCount);
        Assert.Equal("two", map.Default);
        Assert.Equal("test", map.Name);
        Assert.Equal(MapKind.Exact, map.Kind);
    }

    // ---------------------------------------------------------------- MapFileParser

    [Fact]
    public void MapFile_SkipsCommentsAndBlankLines_AndKeepsLineNumbers()
    {
        var diagnostics = new List<ConfigDiagnostic>();
        var entries = MapFileParser.Parse(
            "# header comment\n\n   \n  # indented comment\nv1 orders-v1\r\n\tv2\t\torders-v2  \n\n",
            "versions.map", MapKind.Exact, ignoreCase: false, diagnostics);

        Assert.Empty(diagnostics);
        Assert.Equal(2, entries.Count);
        Assert.Equal(("v1", "orders-v1", 5), (entries[0].Key, entries[0].Value, entries[0].Line));
        Assert.Equal(("v2", "orders-v2", 6), (entries[1].Key, entries[1].Value, entries[1].Line));
        Assert.Null(entries[0].Pattern);
    }

    [Fact]
    public void MapFile_ValueIsTheRestOfTheLine()
    {
        var diagnostics = new List<ConfigDiagnostic>();
        var entries = MapFileParser.Parse("key a value with spaces\n", "m.map", MapKind.Exact, ignoreCase: false, diagnostics);

        Assert.Empty(diagnostics);
        Assert.Equal("a value with spaces", Assert.Single(entries).Value);
    }

    [Fact]
    public void MapFile_EmptyText_HasNoEntries()
    {
        var diagnostics = new List<ConfigDiagnostic>();

        Assert.Empty(MapFileParser.Parse("", "m.map", MapKind.Exact, ignoreCase: false, diagnostics));
        Assert.Empty(diagnostics);
    }

    [Fact]
    public void MapFile_Errors_CarryFileLineAndColumn()
    {
        var diagnostics = new List<ConfigDiagnostic>();
        var entries = MapFileParser.Parse("v1 a\n  lonely\nV1 b\nv1 c\n", "/etc/portcullis/v.map", MapKind.Exact, ignoreCase: true, diagnostics);

        Assert.Equal(["v1"], entries.Select(e => e.Key));
        Assert.Collection(
            diagnostics,
            d => Assert.Equal(("/etc/portcullis/v.map", 2, 3, "map entry 'lonely' has no value"), (d.File, d.Line, d.Column, d.Message)),
            d => Assert.Equal(("/etc/portcullis/v.map", 3, 1, "duplicate map key 'V1' (first on line 1)"), (d.File, d.Line, d.Column, d.Message)),
            d => Assert.Equal(("/etc/portcullis/v.map", 4, 1, "duplicate map key 'v1' (first on line 1)"), (d.File, d.Line, d.Column, d.Message)));
    }

    [Fact]
    public void MapFile_CarriageReturnsAndTheLastLineWithoutNewline_AreRead()
    {
        var diagnostics = new List<ConfigDiagnostic>();
        var entries = MapFileParser.Parse("# tenants\r\nacme  c1\r\n\r\nglobex c2 \r\nlast c1", "t.map", MapKind.Exact, ignoreCase: false, diagnostics);

        Assert.Empty(diagnostics);
        Assert.Equal([("acme", "c1", 2), ("globex", "c2", 4), ("last", "c1", 5)], entries.Select(e => (e.Key, e.Value, e.Line)));
        // One string per distinct value: a million tenants on a few clusters do not hold a million copies.
        Assert.Same(entries[0].Value, entries[2].Value);
    }

    [Fact]
    public void Map_Large_StaysADictionary_AndAnswersLikeASmallOne()
    {
        var count = CompiledMap.FreezeBelow + 1000;
        var text = string.Concat(Enumerable.Range(0, count).Select(i => $"tenant{i} c{i % 7}\n"));
        var diagnostics = new List<ConfigDiagnostic>();
        var large = new CompiledMap("t", MapKind.Exact, ignoreCase: true, "none", MapFileParser.Parse(text, "t.map", MapKind.Exact, true, diagnostics));

        Assert.Empty(diagnostics);
        Assert.Equal(count, large.EntryCount);
        Assert.Equal(["c0", "c1", "c2", "c3", "c4", "c5", "c6", "none"], large.Values.Order(StringComparer.Ordinal));
        foreach (var i in new[] { 0, 1, 65_535, count - 1 })
        {
            Assert.Equal($"c{i % 7}", large.Lookup($"tenant{i}"));
            Assert.Equal($"c{i % 7}", large.Lookup($"TENANT{i}"));
            Assert.Equal($"c{i % 7}", large.Lookup($"x-tenant{i}-y".AsSpan(2, $"tenant{i}".Length)));
        }

        Assert.Equal("none", large.Lookup("tenant-1"));
    }

    [Theory]
    [InlineData("^(unclosed x")]
    [InlineData("(a)\\1 x")]
    [InlineData("(?=look)ahead x")]
    public void MapFile_BadRegex_IsReported(string line)
    {
        var diagnostics = new List<ConfigDiagnostic>();
        var entries = MapFileParser.Parse("ok x\n" + line + "\n", "r.map", MapKind.Regex, ignoreCase: false, diagnostics);

        Assert.Equal(["ok"], entries.Select(e => e.Key));
        var error = Assert.Single(diagnostics);
        Assert.Equal(("r.map", 2, 1), (error.File, error.Line, error.Column));
        Assert.StartsWith($"bad regular expression '{line[..line.IndexOf(' ', StringComparison.Ordinal)]}': ", error.Message, StringComparison.Ordinal);
    }

    // ---------------------------------------------------------------- ValueTemplate: parsing

    [Theory]
    [InlineData("${map:tier}", "malformed lookup at '${map:tier}'")]
    [InlineData("${map:tier(header:X-Tier)", "malformed lookup")]
    [InlineData("orders-${map:tier(header:X-Tier}", "malformed lookup")]
    [InlineData("${map:tier)(header:X-Tier}", "malformed lookup")]
    [InlineData("${map:(host)}", "lookup names no map")]
    [InlineData("${map:tier()}", "lookup in map 'tier' names no request source")]
    [InlineData("${map:tier( , )}", "lookup in map 'tier' names no request source")]
    [InlineData("${map:tier(bogus:x)}", "unknown request source 'bogus:x'")]
    [InlineData("${map:tier(header:)}", "unknown request source 'header:'")]
    [InlineData("${map:tier(query)}", "unknown request source 'query'")]
    [InlineData("${map:tier(segment:0)}", "unknown request source 'segment:0'")]
    [InlineData("${map:tier(segment:x)}", "unknown request source 'segment:x'")]
    [InlineData("${map:tier(host:example)}", "unknown request source 'host:example'")]
    [InlineData("${map:tier(Header:X)}", "unknown request source 'Header:X'")]
    [InlineData("${map:tier(claim:)}", "unknown request source")]
    public void Template_ParseErrors(string text, string expected)
    {
        var template = ValueTemplate.Parse(text, out var error);

        Assert.Null(template);
        Assert.NotNull(error);
        Assert.StartsWith(expected, error, StringComparison.Ordinal);
    }

    [Fact]
    public void Template_SourceErrors_ListTheSyntax()
    {
        ValueTemplate.Parse("${map:tier(bogus:x)}", out var error);

        Assert.EndsWith("; sources are " + RequestSource.Syntax, error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("orders")]
    [InlineData("")]
    [InlineData("$map:x(host)")]
    [InlineData("{map:x(host)}")]
    public void Template_WithoutLookups_IsLiteral(string text)
    {
        var template = ValueTemplate.Parse(text, out var error);

        Assert.Null(error);
        Assert.NotNull(template);
        Assert.True(template.IsLiteral);
        Assert.Empty(template.MapNames);
        Assert.Equal(text, template.Text);
        Assert.Equal([text], template.PossibleValues());
    }

    [Fact]
    public void Template_WithLookup_IsNotLiteral_BeforeBinding()
    {
        // SnapshotBuilder asks IsLiteral before it binds maps, so it must not depend on Bind().
        var template = ValueTemplate.Parse("orders-${map:tier(host)}", out _)!;

        Assert.False(template.IsLiteral);
    }

    [Fact]
    public void Template_Parse_TrimsMapNameAndSources()
    {
        var template = Parse("${map: tier ( header:X-Tier , segment:2 )}");

        Assert.Equal(["tier"], template.MapNames);
    }

    [Fact]
    public void Template_Bind_ReturnsMissingMaps()
    {
        var template = Parse("${map:tier(host)}-${map:region(header:X-Region)}-${map:zone(method)}");
        var maps = Maps(Map(MapKind.Exact, "a b", name: "tier"));

        Assert.Equal(["region", "zone"], template.Bind(maps));
        Assert.Equal(["tier", "region", "zone"], template.MapNames);
    }

    // ---------------------------------------------------------------- ValueTemplate: evaluation

    [Fact]
    public void Template_Header()
    {
        var template = Bound("${map:tier(header:X-Tier)}", Map(MapKind.Exact, "gold orders-gold\n", name: "tier"));

        Assert.Equal("orders-gold", template.Evaluate(Request(headers: [("X-Tier", "gold")])));
        Assert.Equal("orders-gold", template.Evaluate(Request(headers: [("x-tier", "gold")])));
        Assert.Null(template.Evaluate(Request(headers: [("X-Tier", "silver")])));
        Assert.Null(template.Evaluate(Request()));
    }

    [Fact]
    public void Template_Header_UsesFirstValue()
    {
        var template = Bound("${map:tier(header:X-Tier)}", Map(MapKind.Exact, "gold g\nsilver s\n", name: "tier"));
        var request = Request();
        request.Headers["X-Tier"] = new Microsoft.Extensions.Primitives.StringValues(new[] { "silver", "gold" });

        Assert.Equal("s", template.Evaluate(request));
    }

    [Fact]
    public void Template_Query()
    {
        var template = Bound("${map:versions(query:v)}", Map(MapKind.Exact, "2 orders-v2\n", name: "versions"));

        Assert.Equal("orders-v2", template.Evaluate(Request(query: "?v=2&x=1")));
        Assert.Null(template.Evaluate(Request(query: "?version=2")));
    }

    [Theory]
    [InlineData("/v2/orders/17", 1, "v2")]
    [InlineData("/v2/orders/17", 2, "orders")]
    [InlineData("/v2/orders/17", 3, "17")]
    [InlineData("/v2/orders/17/", 3, "17")]
    [InlineData("//v2//orders", 2, "orders")]
    [InlineData("/v2/orders/17", 4, "")]
    [InlineData("/", 1, "")]
    [InlineData("", 1, "")]
    public void Template_Segment_IsOneBased(string path, int index, string expected)
    {
        Assert.Equal(expected, RequestSource.Segment(path, index).ToString());
    }

    [Fact]
    public void Template_Segment()
    {
        var template = Bound("${map:versions(segment:1)}", Map(MapKind.Exact, "v1 orders-v1\nv2 orders-v2\n", name: "versions"));

        Assert.Equal("orders-v2", template.Evaluate(Request(path: "/v2/orders")));
        Assert.Equal("orders-v1", template.Evaluate(Request(path: "/v1")));
        Assert.Null(template.Evaluate(Request(path: "/orders/v2")));
    }

    [Fact]
    public void Template_Host_IgnoresPort()
    {
        var template = Bound("${map:tenants(host)}", Map(MapKind.Exact, "acme.example.com acme\n", name: "tenants"));

        Assert.Equal("acme", template.Evaluate(Request(host: "acme.example.com:8443")));
        Assert.Equal("acme", template.Evaluate(Request(host: "acme.example.com")));
        Assert.Null(template.Evaluate(Request(host: "other.example.com")));
    }

    [Fact]
    public void Template_PathAndMethod()
    {
        var byPath = Bound("${map:paths(path)}", Map(MapKind.Prefix, "/admin admin\n", name: "paths"));
        var byMethod = Bound("${map:methods(method)}", Map(MapKind.Exact, "POST writers\n", name: "methods", defaultValue: "readers"));

        Assert.Equal("admin", byPath.Evaluate(Request(path: "/admin/users")));
        Assert.Equal("writers", byMethod.Evaluate(Request(method: "POST")));
        Assert.Equal("readers", byMethod.Evaluate(Request(method: "GET")));
    }

    [Fact]
    public void Template_FallsBackAcrossSources_InOrder()
    {
        var template = Bound(
            "${map:versions(header:Api-Version,segment:1)}",
            Map(MapKind.Exact, "v1 orders-v1\nv2 orders-v2\n", name: "versions", defaultValue: "orders-default"));

        // Header present: it wins over the path.
        Assert.Equal("orders-v1", template.Evaluate(Request(path: "/v2/orders", headers: [("Api-Version", "v1")])));
        // Header absent (or empty): the next source is used.
        Assert.Equal("orders-v2", template.Evaluate(Request(path: "/v2/orders")));
        Assert.Equal("orders-v2", template.Evaluate(Request(path: "/v2/orders", headers: [("Api-Version", "")])));
        // The first *present* source is looked up; a miss there gives the default, not the next source.
        Assert.Equal("orders-default", template.Evaluate(Request(path: "/v2/orders", headers: [("Api-Version", "v9")])));
        // No source present at all: the default.
        Assert.Equal("orders-default", template.Evaluate(Request(path: "/")));
    }

    [Fact]
    public void Template_LiteralAndLookup_AreConcatenated()
    {
        var template = Bound("orders-${map:tier(header:X-Tier)}", Map(MapKind.Exact, "gold gold\nsilver silver\n", name: "tier"));

        Assert.Equal("orders-gold", template.Evaluate(Request(headers: [("X-Tier", "gold")])));
        Assert.Equal("orders-silver", template.Evaluate(Request(headers: [("X-Tier", "silver")])));
        // A lookup that yields nothing makes the whole value null (not "orders-").
        Assert.Null(template.Evaluate(Request(headers: [("X-Tier", "bronze")])));
        Assert.Null(template.Evaluate(Request()));
    }

    [Fact]
    public void Template_LiteralAndLookup_UseDefault()
    {
        var template = Bound("orders-${map:tier(header:X-Tier)}-east", Map(MapKind.Exact, "gold gold\n", name: "tier", defaultValue: "free"));

        Assert.Equal("orders-gold-east", template.Evaluate(Request(headers: [("X-Tier", "gold")])));
        Assert.Equal("orders-free-east", template.Evaluate(Request()));
    }

    [Fact]
    public void Template_SeveralLookups()
    {
        var template = Bound(
            "${map:tier(header:X-Tier)}.${map:region(host)}",
            Map(MapKind.Exact, "gold g\n", name: "tier"),
            Map(MapKind.Exact, "eu.example.com eu\n", name: "region"));

        Assert.Equal("g.eu", template.Evaluate(Request(host: "eu.example.com", headers: [("X-Tier", "gold")])));
        Assert.Null(template.Evaluate(Request(host: "us.example.com", headers: [("X-Tier", "gold")])));
    }

    [Fact]
    public void Template_Literal_EvaluatesToItself()
    {
        Assert.Equal("orders", Parse("orders").Evaluate(Request()));
    }

    // ---------------------------------------------------------------- ValueTemplate: possible values

    [Fact]
    public void Template_PossibleValues_IncludeEveryMapValueAndTheDefault()
    {
        var template = Bound("orders-${map:tier(header:X-Tier)}", Map(MapKind.Exact, "gold gold\nsilver silver\nplatinum gold\n", name: "tier", defaultValue: "free"));

        Assert.Equal(["orders-gold", "orders-silver", "orders-free"], template.PossibleValues());
    }

    [Fact]
    public void Template_PossibleValues_AreTheCrossProductOfLookups()
    {
        var template = Bound(
            "${map:tier(header:X-Tier)}-${map:region(host)}",
            Map(MapKind.Exact, "gold gold\nsilver silver\n", name: "tier"),
            Map(MapKind.Exact, "eu.example.com eu\nus.example.com us\n", name: "region"));

        Assert.Equal(["gold-eu", "gold-us", "silver-eu", "silver-us"], template.PossibleValues());
    }

    [Fact]
    public void Template_PossibleValues_OfUnboundLookup_AreEmpty()
    {
        Assert.Empty(Parse("orders-${map:tier(host)}").PossibleValues());
    }

    // ---------------------------------------------------------------- helpers

    private static CompiledMap Map(MapKind kind, string text, bool ignoreCase = false, string? defaultValue = null, string name = "test")
    {
        var diagnostics = new List<ConfigDiagnostic>();
        var entries = MapFileParser.Parse(text, name + ".map", kind, ignoreCase, diagnostics);
        Assert.Empty(diagnostics);
        return new CompiledMap(name, kind, ignoreCase, defaultValue, entries);
    }

    private static Dictionary<string, CompiledMap> Maps(params CompiledMap[] maps) =>
        maps.ToDictionary(m => m.Name, StringComparer.Ordinal);

    private static ValueTemplate Parse(string text)
    {
        var template = ValueTemplate.Parse(text, out var error);
        Assert.True(error is null, error);
        Assert.NotNull(template);
        return template;
    }

    private static ValueTemplate Bound(string text, params CompiledMap[] maps)
    {
        var template = Parse(text);
        Assert.Empty(template.Bind(Maps(maps)));
        return template;
    }

    private static HttpRequest Request(
        string path = "/",
        string query = "",
        string host = "gateway.example.com",
        string method = "GET",
        (string Name, string Value)[]? headers = null)
    {
        var context = new DefaultHttpContext();
        var request = context.Request;
        request.Method = method;
        request.Path = path;
        request.QueryString = new QueryString(query.Length == 0 ? null : query);
        request.Host = new HostString(host);
        foreach (var (name, value) in headers ?? [])
        {
            request.Headers[name] = value;
        }

        return request;
    }
}
