using BenchmarkDotNet.Attributes;
using Microsoft.AspNetCore.Http;
using Portcullis.Configuration;
using Portcullis.Identity;

namespace Portcullis.Benchmarks;

/// <summary>
/// The inbound header scrub on every request (InboundHeaderScrub.Apply: one pass over the request headers
/// against a frozen set of normalised names, plus the underscore rule) against what it replaced (eight
/// HeaderDictionary.Remove calls for exact names only), on a typical API request of 12 headers that carries
/// nothing to remove. ASP.NET Core's HeaderDictionary, not Kestrel's (internal) request header collection,
/// so the numbers compare the two designs rather than predict Kestrel's exact cost.
/// </summary>
[MemoryDiagnoser]
public class HeaderScrubBenchmarks
{
    private static readonly string[] Removed = ["X-Consumer-Id", "X-Consumer-Group", "X-Subject", "X-Groups", "X-Scopes", "X-Portcullis-Assertion", "X-Original-URL", "X-Rewrite-URL"];
    private InboundHeaderScrub _scrub = null!;
    private DefaultHttpContext _context = null!;

    [GlobalSetup]
    public void Setup()
    {
        var config = new PortcullisConfig
        {
            Listeners = [new ListenerOptions { Name = "public", Address = "127.0.0.1:8080" }],
            Identity = new IdentityOptions { Assertion = new AssertionOptions() },
        };
        _scrub = InboundHeaderScrub.Compile(config, [], []);
        _context = new DefaultHttpContext();
        _context.Connection.LocalPort = 8080;
        var headers = _context.Request.Headers;
        headers.Host = "api.example.com";
        headers.UserAgent = "orders-client/2.4 (+https://example.com)";
        headers.Accept = "application/json";
        headers.AcceptEncoding = "gzip, br";
        headers.AcceptLanguage = "en-GB,en;q=0.8";
        headers.Authorization = "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln";
        headers.Connection = "keep-alive";
        headers.ContentType = "application/json";
        headers.Cookie = "theme=dark";
        headers["X-Request-Id"] = "9f1c0a";
        headers["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        headers.Origin = "https://shop.example.com";
        _scrub.Apply(_context);
        if (_context.Request.Headers.Count != 12) throw new InvalidOperationException("the scrub removed a header it should keep");
    }

    [Benchmark(Baseline = true)]
    public int EightExactRemoves()
    {
        var headers = _context.Request.Headers;
        foreach (var name in Removed) headers.Remove(name);
        return headers.Count;
    }

    [Benchmark]
    public int ScrubOnePass()
    {
        _scrub.Apply(_context);
        return _context.Request.Headers.Count;
    }
}
