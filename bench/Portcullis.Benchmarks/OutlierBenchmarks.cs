using System.Diagnostics;
using BenchmarkDotNet.Attributes;
using Portcullis.Clusters;
using Yarp.ReverseProxy.Model;

namespace Portcullis.Benchmarks;

/// <summary>
/// What healthCheck.outlierDetection adds to a proxied request (the passive policy): the destination's counters
/// (a reference-keyed lookup) and the interval's counts and latency bucket (Interlocked). No allocation.
/// </summary>
[MemoryDiagnoser]
public class OutlierBenchmarks
{
    private readonly DestinationCounterTable _table = new();
    private DestinationState _destination = null!;
    private long _start;
    private long _end;

    [GlobalSetup]
    public void Setup()
    {
        _destination = new DestinationState("d1");
        _table.Of(_destination);
        _end = Stopwatch.GetTimestamp();
        _start = _end - Stopwatch.Frequency / 50; // 20 ms
    }

    [Benchmark]
    public void CountAnsweredRequest() => _table.Of(_destination).Window.Record(failed: false, _start, _end);

    [Benchmark]
    public void CountFailedRequest() => _table.Of(_destination).Window.Record(failed: true, 0, 0);
}
