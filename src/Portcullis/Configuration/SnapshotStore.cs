using System.Runtime.CompilerServices;
using Microsoft.Extensions.Primitives;
using Yarp.ReverseProxy.Configuration;

namespace Portcullis.Configuration;

/// <summary>
/// Holds the current snapshot and publishes its routes and clusters to YARP. Readers take the
/// reference once per request; writers (reloads) replace it whole.
/// </summary>
internal sealed class SnapshotStore : IProxyConfigProvider
{
    private volatile GatewaySnapshot? _current;
    private volatile ProxyConfigSnapshot? _proxyConfig;

    // Which snapshot each route handed to YARP came from; entries go with the routes (when YARP and the
    // snapshot let go of them).
    private readonly ConditionalWeakTable<RouteConfig, GatewaySnapshot> _generations = new();

    /// <summary>RouteConfig metadata key with the generation a route was published with.</summary>
    internal const string GenerationKey = "Portcullis.Generation";

    public SnapshotStore()
    {
    }

    public SnapshotStore(GatewaySnapshot initial) => Initialize(initial);

    public bool IsInitialized => _current is not null;

    public GatewaySnapshot Current => _current ?? throw new InvalidOperationException("The gateway configuration is not loaded yet: call app.UsePortcullis().");

    /// <summary>Warnings found when the first configuration was loaded.</summary>
    public IReadOnlyList<ConfigDiagnostic> StartupDiagnostics { get; private set; } = [];

    internal void Initialize(GatewaySnapshot initial, IReadOnlyList<ConfigDiagnostic>? diagnostics = null)
    {
        StartupDiagnostics = diagnostics ?? [];
        if (_current is not null) throw new InvalidOperationException("The gateway configuration is already loaded.");
        _proxyConfig = new ProxyConfigSnapshot(initial, _generations);
        _current = initial;
    }

    public IProxyConfig GetConfig() => _proxyConfig ?? throw new InvalidOperationException("The gateway configuration is not loaded yet.");

    /// <summary>
    /// Puts a snapshot in place. Only <see cref="ConfigReloader"/> calls this, after every
    /// <see cref="ISnapshotParticipant"/> prepared and committed it.
    /// </summary>
    internal void Swap(GatewaySnapshot next)
    {
        var previous = _proxyConfig!;
        _current = next;
        _proxyConfig = new ProxyConfigSnapshot(next, _generations);
        previous.SignalChange();
    }

    /// <summary>The snapshot a route YARP runs was published with (null for a route not published here).</summary>
    internal GatewaySnapshot? SnapshotOf(RouteConfig route) => _generations.TryGetValue(route, out var snapshot) ? snapshot : null;

    // The token source has no timer and no links, so it holds nothing to release; disposing it while YARP may
    // still register on its token (after the swap) would race, so it is left to the GC as YARP's own in-memory provider does.
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "unlinked, timerless CancellationTokenSource; see comment")]
    private sealed class ProxyConfigSnapshot : IProxyConfig
    {
        private readonly CancellationTokenSource _changed = new();

        public ProxyConfigSnapshot(GatewaySnapshot snapshot, ConditionalWeakTable<RouteConfig, GatewaySnapshot> generations)
        {
            // Each route carries its generation, so YARP rebuilds every route's endpoint at each reload and the
            // endpoint's metadata (Routing.RouteBinding) names the snapshot it belongs to, even for a route whose
            // YARP-side settings did not change (its auth, limits or header edits may have).
            var generation = snapshot.Generation.ToString(System.Globalization.CultureInfo.InvariantCulture);
            var routes = new RouteConfig[snapshot.ProxyRoutes.Count];
            for (var i = 0; i < routes.Length; i++)
            {
                var route = snapshot.ProxyRoutes[i];
                var metadata = route.Metadata is null ? new Dictionary<string, string>(StringComparer.Ordinal) : new Dictionary<string, string>(route.Metadata, StringComparer.Ordinal);
                metadata[GenerationKey] = generation;
                routes[i] = route with { Metadata = metadata };
                generations.AddOrUpdate(routes[i], snapshot);
            }

            Routes = routes;
            Clusters = snapshot.ProxyClusters;
            RevisionId = snapshot.Generation.ToString(System.Globalization.CultureInfo.InvariantCulture);
            ChangeToken = new CancellationChangeToken(_changed.Token);
        }

        public string RevisionId { get; }

        public IReadOnlyList<RouteConfig> Routes { get; }

        public IReadOnlyList<ClusterConfig> Clusters { get; }

        public IChangeToken ChangeToken { get; }

        public void SignalChange() => _changed.Cancel();
    }
}
