using BenchmarkDotNet.Attributes;
using Portcullis.Configuration;
using Portcullis.Routing;

namespace Portcullis.Benchmarks;

/// <summary>
/// Map file lookups (CompiledMap.Lookup), as the route-action stage does them per request: an exact map
/// of 1000 keys, a prefix map of 50 prefixes and a regex map of 20 patterns, each looked up with a key
/// that matches (the hit path) and, for exact, one that falls back to the default.
/// </summary>
[MemoryDiagnoser]
public class MapLookupBenchmarks
{
    private CompiledMap _exact = null!;
    private CompiledMap _prefix = null!;
    private CompiledMap _regex = null!;

    // Keys as request data arrives: a span over a string the request already holds.
    private readonly string _exactKey = "tenant-0500";
    private readonly string _exactMissKey = "tenant-9999";
    private readonly string _prefixKey = "/api/v25/orders/123/items";
    private readonly string _regexKey = "/orders/v19/12345";

    [GlobalSetup]
    public void Setup()
    {
        var exact = Enumerable.Range(0, 1000).Select(i => new MapEntry($"tenant-{i:D4}", $"cluster-{i % 7}", i + 1)).ToList();
        _exact = new CompiledMap("tenants", MapKind.Exact, ignoreCase: false, defaultValue: "default", exact);

        var prefixes = Enumerable.Range(0, 50).Select(i => new MapEntry($"/api/v{i}/", $"cluster-{i % 7}", i + 1)).ToList();
        _prefix = new CompiledMap("versions", MapKind.Prefix, ignoreCase: false, defaultValue: "default", prefixes);

        var patterns = Enumerable.Range(0, 20).Select(i =>
        {
            var key = $"^/orders/v{i}/[0-9]+$";
            var regex = MapFileParser.CompilePattern(key, ignoreCase: false, out var error, out _) ?? throw new InvalidOperationException(error);
            return new MapEntry(key, $"cluster-{i % 7}", i + 1, regex);
        }).ToList();
        _regex = new CompiledMap("patterns", MapKind.Regex, ignoreCase: false, defaultValue: "default", patterns);

        if (ExactHit() != "cluster-3" || ExactMiss() != "default" || PrefixHit() != "cluster-4" || RegexHit() != "cluster-5")
        {
            throw new InvalidOperationException("map lookups do not return what the benchmark expects");
        }
    }

    [Benchmark]
    public string? ExactHit() => _exact.Lookup(_exactKey);

    [Benchmark]
    public string? ExactMiss() => _exact.Lookup(_exactMissKey);

    [Benchmark]
    public string? PrefixHit() => _prefix.Lookup(_prefixKey);

    [Benchmark]
    public string? RegexHit() => _regex.Lookup(_regexKey);
}
