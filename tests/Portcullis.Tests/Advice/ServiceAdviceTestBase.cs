using Microsoft.Extensions.DependencyInjection;
using Portcullis.Advice;
using Portcullis.Analytics;
using Portcullis.Configuration;
using Portcullis.Testing;

namespace Portcullis.Tests.Advice;

/// <summary>
/// What the service-advice tests share: configs built by the real SnapshotBuilder, a real temporary DuckDB store,
/// an <see cref="AdviceContext"/> at a fixed Now, and applying a finding's patch with the engine's ConfigPatcher and building
/// the result (the patch must validate with the real loader and compiler).
/// </summary>
public abstract class ServiceAdviceTestBase : ConfigBuildTestBase
{
    internal static readonly DateTime Now = new(2026, 12, 4, 12, 0, 30, DateTimeKind.Utc);

    private AnalyticsDatabase? _database;
    private string _yaml = "";

    protected ServiceAdviceTestBase() : base("portcullis-advice-services-")
    {
    }

    internal AnalyticsDatabase Store => _database ??= new AnalyticsDatabase(Path.Combine(_directory.FullName, "analytics.duckdb"));

    internal GatewaySnapshot Snapshot(string yaml)
    {
        _yaml = yaml;
        var result = Build(yaml);
        Assert.True(result.Succeeded, Dump(result));
        return result.Snapshot!;
    }

    internal AdviceContext Context(GatewaySnapshot snapshot, bool store = true, IAdviceRuntime? runtime = null, DateTime? now = null) => new()
    {
        Now = now ?? Now,
        Snapshot = snapshot,
        Settings = snapshot.Advice ?? new CompiledAdvice { Interval = TimeSpan.FromMinutes(1), Window = TimeSpan.FromDays(7) },
        Analytics = store ? AnalyticsSource.Local(Store) : null,
        Runtime = runtime ?? OfflineAdviceRuntime.Instance,
    };

    internal static IAdviceRuntime Live(IServiceProvider services) => new LiveAdviceRuntime(services);

    internal static ServiceProvider Services(Action<IServiceCollection> configure)
    {
        var services = new ServiceCollection();
        configure(services);
        return services.BuildServiceProvider();
    }

    internal void Write(AnalyticsDataGenerator data) => data.WriteTo(Store);

    /// <summary>Merges the patch into the last config (ConfigPatch's semantics) and builds it: it must succeed.</summary>
    internal GatewaySnapshot Apply(ConfigPatch? patch)
    {
        Assert.NotNull(patch);
        var merged = ConfigPatcher.Apply(_yaml, patch.Yaml);
        var result = Build(merged);
        Assert.True(result.Succeeded, "the patched config does not validate:\n" + merged + "\n" + Dump(result));
        return result.Snapshot!;
    }
}
