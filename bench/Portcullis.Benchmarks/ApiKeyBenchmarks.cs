using BenchmarkDotNet.Attributes;
using Portcullis.Configuration;
using Portcullis.Identity;

namespace Portcullis.Benchmarks;

/// <summary>
/// API-key authentication (CompiledApiKeys.Authenticate): SHA-256 of the presented key and a frozen
/// dictionary lookup, over a table of 1000 consumers, for a valid key (the hit path) and an unknown one.
/// </summary>
[MemoryDiagnoser]
public class ApiKeyBenchmarks
{
    private CompiledApiKeys _keys = null!;
    private string _validKey = "";
    private string _unknownKey = "";
    private readonly DateTimeOffset _now = DateTimeOffset.UtcNow;

    [GlobalSetup]
    public void Setup()
    {
        var consumers = new Dictionary<string, ApiKeyConsumer>();
        for (var i = 0; i < 1000; i++)
        {
            var (key, record) = ApiKeyGenerator.Create(_now);
            consumers[$"consumer-{i:D4}"] = new ApiKeyConsumer { Group = "premium", Scopes = ["orders.read"], Keys = [record] };
            if (i == 500) _validKey = key;
        }

        _unknownKey = ApiKeyGenerator.Create(_now).Key;
        var errors = new List<string>();
        _keys = CompiledApiKeys.Compile(new ApiKeyOptions(), new ApiKeyFile { Consumers = consumers }, (path, message) => errors.Add($"{path}: {message}"));
        if (errors.Count > 0) throw new InvalidOperationException(string.Join("; ", errors));
        if (ValidKey() is null || UnknownKey() != "apikey.unknown") throw new InvalidOperationException("API key lookups do not decide what the benchmark expects");
    }

    [Benchmark]
    public object? ValidKey() => _keys.Authenticate(_validKey, _now).Identity; // the consumer's (cached) identity

    /// <summary>Just the hash of the presented key (UTF-8 into a stack buffer, SHA-256): the share of ValidKey that is hashing.</summary>
    [Benchmark]
    public ulong KeyHashOnly() => KeyHash.TryCompute(_validKey, out var hash) ? hash.A : 0;

    [Benchmark]
    public string UnknownKey() => _keys.Authenticate(_unknownKey, _now).Reason;
}
