using Microsoft.Extensions.DependencyInjection;
using Portcullis.Advice;
using Portcullis.Analytics;
using Portcullis.Configuration;
using Portcullis.Testing;
using YamlDotNet.RepresentationModel;

namespace Portcullis.Tests.Advice;

/// <summary>
/// What the service-advice tests share: configs built by the real SnapshotBuilder, a real temporary DuckDB store,
/// an <see cref="AdviceContext"/> at a fixed Now, and applying a finding's patch to the config file and building it
/// again (the patch must validate with the real loader and compiler).
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
        var merged = Merge(_yaml, patch.Yaml);
        var result = Build(merged);
        Assert.True(result.Succeeded, "the patched config does not validate:\n" + merged + "\n" + Dump(result));
        return result.Snapshot!;
    }

    internal static string Merge(string config, string patch)
    {
        var target = Load(config);
        Merge(target, Load(patch));
        var stream = new YamlStream(new YamlDocument(target));
        using var writer = new StringWriter();
        stream.Save(writer, assignAnchors: false);
        return writer.ToString().TrimEnd('.', '\n', '\r') + "\n";
    }

    private static YamlMappingNode Load(string yaml)
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(yaml));
        return (YamlMappingNode)stream.Documents[0].RootNode;
    }

    private static void Merge(YamlMappingNode target, YamlMappingNode patch)
    {
        foreach (var (key, value) in patch.Children)
        {
            if (value is YamlScalarNode { Value: null or "null" or "~" } && value.Tag.IsEmpty)
            {
                target.Children.Remove(key);
            }
            else if (target.Children.TryGetValue(key, out var existing) && existing is YamlMappingNode mapping && value is YamlMappingNode patchMapping)
            {
                Merge(mapping, patchMapping);
            }
            else if (existing is YamlSequenceNode sequence && value is YamlSequenceNode patchSequence && patchSequence.Children.All(Named))
            {
                foreach (var item in patchSequence.Children.Cast<YamlMappingNode>())
                {
                    var name = ((YamlScalarNode)item.Children[new YamlScalarNode("name")]).Value;
                    var match = sequence.Children.OfType<YamlMappingNode>().FirstOrDefault(m => m.Children.TryGetValue(new YamlScalarNode("name"), out var n) && ((YamlScalarNode)n).Value == name);
                    if (match is null) sequence.Children.Add(item);
                    else Merge(match, item);
                }
            }
            else
            {
                target.Children[key] = value;
            }
        }

        static bool Named(YamlNode node) => node is YamlMappingNode m && m.Children.ContainsKey(new YamlScalarNode("name"));
    }
}
