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

    // Which snapshot each route handed to YARP came from; entries go with the routes. Weak: YARP keeps the config
    // of a route no reload changed for as long as the route lives, and that must not keep its first snapshot alive.
    private readonly ConditionalWeakTable<RouteConfig, WeakReference<GatewaySnapshot>> _generations = new();

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

    /// <summary>The snapshot a config handed to YARP was made from (null for one not published here).</summary>
    internal static GatewaySnapshot? SnapshotOfConfig(IProxyConfig config) => (config as ProxyConfigSnapshot)?.Snapshot;

    /// <summary>The snapshot a route YARP runs was published with (null for a route not published here).</summary>
    internal GatewaySnapshot? SnapshotOf(RouteConfig route) => _generations.TryGetValue(route, out var published) && published.TryGetTarget(out var snapshot) ? snapshot : null;

    // The token source has no timer and no links, so it holds nothing to release; disposing it while YARP may
    // still register on its token (after the swap) would race, so it is left to the GC as YARP's own in-memory provider does.
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "unlinked, timerless CancellationTokenSource; see comment")]
    private sealed class ProxyConfigSnapshot : IProxyConfig
    {
        private readonly CancellationTokenSource _changed = new();

        public ProxyConfigSnapshot(GatewaySnapshot snapshot, ConditionalWeakTable<RouteConfig, WeakReference<GatewaySnapshot>> generations)
        {
            // The routes as compiled: one a reload did not change is equal to its previous config, so YARP keeps
            // its endpoint (Routing.RouteBindings moves the endpoint's binding to this generation once YARP applied
            // it). Each RouteConfig instance is mapped to its snapshot for the endpoints YARP does build.
            Snapshot = snapshot;
            var published = new WeakReference<GatewaySnapshot>(snapshot);
            foreach (var route in snapshot.ProxyRoutes) generations.AddOrUpdate(route, published);
            Routes = snapshot.ProxyRoutes;
            Clusters = snapshot.ProxyClusters;
            RevisionId = snapshot.Generation.ToString(System.Globalization.CultureInfo.InvariantCulture);
            ChangeToken = new CancellationChangeToken(_changed.Token);
        }

        public GatewaySnapshot Snapshot { get; }

        public string RevisionId { get; }

        public IReadOnlyList<RouteConfig> Routes { get; }

        public IReadOnlyList<ClusterConfig> Clusters { get; }

        public IChangeToken ChangeToken { get; }

        public void SignalChange() => _changed.Cancel();
    }
}
