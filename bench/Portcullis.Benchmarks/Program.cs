// BenchmarkDotNet entry point: `bench/micro.sh` (or `dotnet run -c Release -- --filter '*'`).
// Every benchmark runs in-process (no generated child project: fast, and no second build of the
// repository) with a short job by default; pass BenchmarkDotNet's own options after `--`.
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

var config = DefaultConfig.Instance
    .AddJob(Job.ShortRun.WithToolchain(InProcessEmitToolchain.Instance).WithId("short-inprocess"));
BenchmarkSwitcher.FromAssembly(typeof(Portcullis.Benchmarks.MapLookupBenchmarks).Assembly).Run(args, config);
