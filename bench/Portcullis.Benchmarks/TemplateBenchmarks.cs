using BenchmarkDotNet.Attributes;
using Microsoft.AspNetCore.Http;
using Portcullis.Routing;

namespace Portcullis.Benchmarks;

/// <summary>
/// Rendering header templates (ValueTemplate.Evaluate) as requestHeaders.set and transforms.response do per
/// request: a literal (no allocation), one source part (the value's string), and three parts joined in a
/// stack buffer (only the result string is allocated). Issue 19 item 7.
/// </summary>
[MemoryDiagnoser]
public class TemplateBenchmarks
{
    private ValueTemplate _literal = null!;
    private ValueTemplate _single = null!;
    private ValueTemplate _composite = null!;
    private HttpRequest _request = null!;

    [GlobalSetup]
    public void Setup()
    {
        _literal = Parse("portcullis");
        _single = Parse("${header:X-User}");
        _composite = Parse("user=${header:X-User}; tenant=${header:X-Tenant}; route=${query:v}");
        var context = new DefaultHttpContext();
        context.Request.Headers["X-User"] = "customer-8c1f2e4a-5b7d";
        context.Request.Headers["X-Tenant"] = "acme-eu";
        context.Request.QueryString = new QueryString("?v=2");
        _request = context.Request;
        if (_composite.Evaluate(_request) != "user=customer-8c1f2e4a-5b7d; tenant=acme-eu; route=2") throw new InvalidOperationException("bad render");
    }

    private static ValueTemplate Parse(string text) => ValueTemplate.Parse(text, out var error) ?? throw new InvalidOperationException(error);

    [Benchmark]
    public string? Literal() => _literal.Evaluate(_request);

    [Benchmark]
    public string? SinglePart() => _single.Evaluate(_request);

    [Benchmark]
    public string? ThreeParts() => _composite.Evaluate(_request);
}
