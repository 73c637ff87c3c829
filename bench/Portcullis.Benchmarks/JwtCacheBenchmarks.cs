using System.Security.Cryptography;
using System.Text.Json;
using BenchmarkDotNet.Attributes;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using Portcullis.Configuration;
using Portcullis.Identity;

namespace Portcullis.Benchmarks;

/// <summary>
/// A repeated bearer JWT through JwtAuthenticator.AuthenticateAsync, the entry point the identity
/// middleware calls: after the first, full validation the token is in the validated-token cache, so every
/// call measured here is the cached-hit path (trim "Bearer ", SHA-256 of the token, LRU lookup, expiry and
/// key-still-published checks). The issuer reads an RS256 key from a local JWKS file, as with `jwksFile`.
/// </summary>
[MemoryDiagnoser]
public class JwtCacheBenchmarks : IDisposable
{
    private string _directory = "";
    private IssuerRegistry _registry = null!;
    private JwtAuthenticator _authenticator = null!;
    private CompiledRouteAuth _auth = null!;
    private string _authorization = "";

    [GlobalSetup]
    public void Setup()
    {
        _directory = Directory.CreateTempSubdirectory("portcullis-bench-").FullName;
        using var rsa = RSA.Create(2048);
        var parameters = rsa.ExportParameters(false);
        var jwks = JsonSerializer.Serialize(new
        {
            keys = new[]
            {
                new { kty = "RSA", use = "sig", alg = "RS256", kid = "bench", n = Base64UrlEncoder.Encode(parameters.Modulus), e = Base64UrlEncoder.Encode(parameters.Exponent) },
            },
        });
        var jwksFile = Path.Combine(_directory, "jwks.json");
        File.WriteAllText(jwksFile, jwks);

        var source = new IssuerKeySource("bench", null, null, jwksFile, TimeSpan.FromMinutes(10), TimeSpan.FromSeconds(30), TimeSpan.FromHours(1), TimeSpan.FromSeconds(5), TimeSpan.FromMinutes(1));
        _registry = new IssuerRegistry(new PlainHttpClientFactory(), TimeProvider.System, NullLoggerFactory.Instance);
        _registry.Sync([source]);
        if (!_registry.Get("bench")!.WaitForKeysAsync(TimeSpan.FromSeconds(10)).GetAwaiter().GetResult())
        {
            throw new InvalidOperationException("the issuer's JWKS file was not loaded");
        }

        var issuer = new CompiledIssuer
        {
            Name = "bench",
            KeySource = source,
            ConfiguredIssuer = "https://bench.portcullis.test/",
            Audiences = ["bench-api"],
            Algorithms = [SecurityAlgorithms.RsaSha256],
            ClockSkew = TimeSpan.FromSeconds(30),
            RequiredClaims = ["exp"],
            Claims = new ClaimMappingOptions(),
        };
        _auth = new CompiledRouteAuth { Issuers = [issuer], AssertionAudience = "bench" };
        _authenticator = new JwtAuthenticator(_registry, TimeProvider.System, NullLogger<JwtAuthenticator>.Instance);

        // The private key signs here, in the benchmark's own setup, with IdentityModel (as a provider would).
        using var signer = RSA.Create();
        signer.ImportParameters(rsa.ExportParameters(true));
        var token = new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = "https://bench.portcullis.test/",
            Audience = "bench-api",
            Expires = DateTime.UtcNow.AddHours(1),
            Claims = new Dictionary<string, object> { ["sub"] = "bench-user", ["scope"] = "bench" },
            SigningCredentials = new SigningCredentials(new RsaSecurityKey(signer.ExportParameters(true)) { KeyId = "bench" }, SecurityAlgorithms.RsaSha256),
        });
        _authorization = "Bearer " + token;

        var first = Authenticate();
        if (!first.Allowed || first.Reason != "jwt.valid") throw new InvalidOperationException($"the token was not accepted: {first.Reason}");
        var second = Authenticate();
        if (second.Reason != "jwt.cached") throw new InvalidOperationException($"the second call did not hit the cache: {second.Reason}");
    }

    [GlobalCleanup]
    public void Dispose()
    {
        _registry?.Dispose();
        if (Directory.Exists(_directory)) Directory.Delete(_directory, recursive: true);
        GC.SuppressFinalize(this);
    }

    /// <summary>The cached-hit path; it completes synchronously, so GetAwaiter().GetResult() does not block.</summary>
    [Benchmark]
    public object? CachedHit()
    {
        var pending = _authenticator.AuthenticateAsync(_authorization, _auth, 16 * 1024);
        return (pending.IsCompleted ? pending.Result : pending.AsTask().GetAwaiter().GetResult()).Identity;
    }

    /// <summary>Just TokenHash.Of (SHA-256 of the token's UTF-8/ASCII bytes): the share of CachedHit that is hashing.</summary>
    [Benchmark]
    public ulong TokenHashOnly() => TokenHash.Of(_authorization.AsSpan(7)).A;

    /// <summary>
    /// What TokenHash.Of did before 2026-11-26 (SHA-256 of the token's UTF-16 code units, twice the bytes),
    /// kept to compare the two in one run.
    /// </summary>
    [Benchmark]
    public ulong TokenHashUtf16Before()
    {
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(_authorization.AsSpan(7)), digest);
        return System.Runtime.InteropServices.MemoryMarshal.Read<ulong>(digest);
    }

    private (bool Allowed, string Reason) Authenticate()
    {
        var decision = _authenticator.AuthenticateAsync(_authorization, _auth, 16 * 1024).AsTask().GetAwaiter().GetResult();
        return (decision.Allowed, decision.Reason);
    }

    private sealed class PlainHttpClientFactory : IHttpClientFactory
    {
        public HttpClient CreateClient(string name) => new();
    }
}
