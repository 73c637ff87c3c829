using System.Collections.Frozen;
using Portcullis.Admin;
using Portcullis.Clusters;
using Portcullis.Identity;
using Portcullis.Identity.Sessions;
using Portcullis.Listeners;
using Portcullis.Observability;
using Portcullis.Routing;
using Portcullis.Traffic;
using Yarp.ReverseProxy.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Configuration;

internal sealed record BuildResult(GatewaySnapshot? Snapshot, IReadOnlyList<ConfigDiagnostic> Diagnostics)
{
    public bool Succeeded => Snapshot is not null;

    public IEnumerable<ConfigDiagnostic> Errors => Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error);
}

/// <summary>
/// Reads, validates and compiles a config file into a <see cref="GatewaySnapshot"/>. Every problem is
/// collected (with file:line:column and a hint) before deciding; one error rejects the whole file.
/// Each capability compiles its own section (its XxxCompiler); this class only runs them in order, the
/// order being that of the diagnostics, and assembles the snapshot.
/// </summary>
internal sealed class SnapshotBuilder
{
    private readonly Func<string, string?> _environment;
    private readonly IConfigValidator? _proxyValidator;
    private readonly TimeProvider _time;

    public SnapshotBuilder(Func<string, string?>? environment = null, IConfigValidator? proxyValidator = null, TimeProvider? time = null)
    {
        _environment = environment ?? Environment.GetEnvironmentVariable;
        _proxyValidator = proxyValidator;
        _time = time ?? TimeProvider.System;
    }

    /// <summary>Changes the loaded configuration before it is compiled (see <see cref="PortcullisOptions"/>); null for gateways.</summary>
    internal Func<PortcullisConfig, PortcullisConfig>? Rewrite { get; init; }

    public BuildResult Build(string path, long generation = 1) => Build([path], generation);

    /// <summary>Builds from a main file and its overlays (each overriding the ones before it by name).</summary>
    /// <param name="previous">The generation serving now: its YARP objects are kept for routes and clusters that did not change.</param>
    /// <param name="timings">Where a reload's parse, bind and compile times go; null when nobody asks.</param>
    public BuildResult Build(IReadOnlyList<string> paths, long generation = 1, GatewaySnapshot? previous = null, ReloadTimings? timings = null)
    {
        var diagnostics = new List<ConfigDiagnostic>();
        var loaded = ConfigLoader.Load(paths, _environment, diagnostics, timings: timings);
        if (loaded is not null && Rewrite is not null) loaded = loaded with { Config = Rewrite(loaded.Config) };
        if (loaded is null) return new BuildResult(null, diagnostics);
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var result = Compile(loaded, generation, diagnostics, previous);
        timings?.Add("compile", started);
        return result;
    }

    /// <param name="previous">The generation serving now: its YARP objects are kept for routes and clusters that did not change.</param>
    public BuildResult Compile(LoadedConfig loaded, long generation, List<ConfigDiagnostic> diagnostics, GatewaySnapshot? previous = null)
    {
        var context = new CompileContext(loaded, diagnostics, _environment, _time);
        var config = loaded.Config;

        var listeners = ListenersCompiler.Compile(context, config.Listeners);
        var trusted = ListenersCompiler.CompileTrustedProxies(context, config.TrustedProxies);
        ListenersCompiler.ValidateLimits(context, config.Limits);
        var maps = MapsCompiler.Compile(context, config.Maps);
        var clusters = ClustersCompiler.Compile(context, config.Clusters);
        var credentials = IdentityCompiler.Compile(context, config.Identity);
        var sessions = config.Identity.Sessions is { } sessionOptions ? SessionsCompiler.Compile(context, sessionOptions) : null;
        var traffic = TrafficCompiler.Compile(context, config.Stores.Redis, config.RateLimits, config.Quotas);
        traffic = traffic with { Plans = PlanCompiler.Compile(context, traffic, maps) };
        var observability = ObservabilityCompiler.Compile(context, config.Observability, config.Identity.ApiKeys?.QueryParameter);
        var analytics = Portcullis.Analytics.AnalyticsCompiler.Compile(context, config.Analytics, config.Routes);
        var advice = Portcullis.Advice.AdviceCompiler.Compile(context, config.Advice, analytics?.Path);
        var adminAuth = AdminCompiler.Compile(context, config.Admin.Auth, listeners);
        var clusterNames = clusters.Compiled.Select(c => c.Name).ToHashSet(StringComparer.Ordinal);
        var routes = RoutesCompiler.Compile(context, config.Routes, new RouteInputs(maps, clusterNames, credentials, traffic));

        if (previous is not null && !context.HasErrors)
        {
            // The same objects for what did not change: YARP keeps their endpoints, and their validation is cached.
            ValidatedProxyConfigs.Reuse(routes.Proxy, previous.ProxyRoutes);
            ValidatedProxyConfigs.Reuse(clusters.Proxy, previous.ProxyClusters);
        }

        if (_proxyValidator is not null && !context.HasErrors)
        {
            ValidateWithProxy(context, routes.Proxy, clusters.Proxy);
        }

        if (context.HasErrors)
        {
            return new BuildResult(null, diagnostics);
        }

        // Positions are needed only to report what this compile found. A snapshot keeps the file name alone: at
        // 50,000 routes the positions are ~670,000 entries (~50 MB) that would live as long as the generation.
        var snapshot = new GatewaySnapshot(
            loaded with { Locations = loaded.Locations.FileOnly() },
            generation,
            _time.GetUtcNow(),
            context.Fingerprint,
            context.Files,
            routes.Compiled.ToFrozenDictionary(r => r.Name, StringComparer.Ordinal),
            clusters.Compiled.ToFrozenDictionary(c => c.Name, StringComparer.Ordinal),
            maps.ToFrozenDictionary(StringComparer.Ordinal),
            routes.Proxy,
            clusters.Proxy,
            trusted,
            listeners,
            [.. credentials.Issuers.Values],
            credentials.ApiKeys,
            traffic.RateLimits.ToFrozenDictionary(StringComparer.Ordinal),
            traffic.Quotas.ToFrozenDictionary(StringComparer.Ordinal))
        {
            Observability = observability,
            Assertion = credentials.Assertion,
            Analytics = analytics is null ? null : analytics with { ArrivalRetention = advice is null ? TimeSpan.Zero : TimeSpan.FromTicks(Math.Min(advice.Window.Ticks, analytics.Retention.Ticks)) },
            Advice = advice,
            Sessions = sessions,
            AdminAuth = adminAuth,
            HeaderScrub = InboundHeaderScrub.Compile(loaded.Config, routes.Compiled, clusters.Compiled),
            EdgeRefusals = EdgeLimitRefusals.Compile(loaded.Config.Limits),
            Plans = traffic.Plans,
        };
        return new BuildResult(snapshot, diagnostics);
    }

    private void ValidateWithProxy(CompileContext context, List<RouteConfig> routes, List<ClusterConfig> clusters)
    {
        // YARP checks what only it knows (route template syntax, policy names); map its findings back
        // to our lines so a reload never reaches YARP with something it would reject.
        for (var i = 0; i < routes.Count; i++)
        {
            var errors = _proxyValidator!.ValidateRouteAsync(routes[i]).AsTask().GetAwaiter().GetResult();
            if (errors.Count == 0) continue;
            // Looked up only for a route with errors: a search per route made validation quadratic in the route count.
            var index = context.Config.Routes.Select((r, n) => (r, n)).First(x => x.r.Name == routes[i].RouteId).n;
            foreach (var error in errors)
            {
                context.Error($"routes[{index}].match", $"route '{routes[i].RouteId}': {error.Message}");
            }
        }

        foreach (var cluster in clusters)
        {
            var errors = _proxyValidator!.ValidateClusterAsync(cluster).AsTask().GetAwaiter().GetResult();
            foreach (var error in errors)
            {
                context.Error("clusters." + cluster.ClusterId, $"cluster '{cluster.ClusterId}': {error.Message}");
            }
        }
    }
}
