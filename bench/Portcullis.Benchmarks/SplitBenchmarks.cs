using BenchmarkDotNet.Attributes;
using Microsoft.AspNetCore.Http;
using Portcullis.Routing;
using Portcullis.Pipeline;

namespace Portcullis.Benchmarks;

/// <summary>
/// Choosing a weighted route's cluster (CompiledSplit.Choose), as the route-action stage does per request:
/// at random, and sticky by a header value (XxHash3 of the value). Issue 19 asks for no allocation here.
/// </summary>
[MemoryDiagnoser]
public class SplitBenchmarks
{
    private CompiledSplit _random = null!;
    private CompiledSplit _sticky = null!;
    private HttpRequest _request = null!;

    [GlobalSetup]
    public void Setup()
    {
        _random = new CompiledSplit([("v1", 95), ("v2", 5)], null);
        if (!RequestSource.TryParse("header:X-User", out var source, out var error)) throw new InvalidOperationException(error);
        _sticky = new CompiledSplit([("v1", 95), ("v2", 5)], source);
        var context = new DefaultHttpContext();
        context.Request.Headers["X-User"] = "customer-8c1f2e4a-5b7d";
        _request = context.Request;
        if (_sticky.Choose(_request) != _sticky.Choose(_request)) throw new InvalidOperationException("sticky choice is not stable");
    }

    [Benchmark]
    public string Random() => _random.Choose(_request);

    [Benchmark]
    public string StickyByHeader() => _sticky.Choose(_request);
}
