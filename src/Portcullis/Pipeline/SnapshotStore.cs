using Microsoft.Extensions.Primitives;
using Portcullis.Configuration;
using Yarp.ReverseProxy.Configuration;

namespace Portcullis.Pipeline;

/// <summary>
/// Holds the current snapshot and publishes its routes and clusters to YARP. Readers take the
/// reference once per request; writers (reloads) replace it whole.
/// </summary>
public sealed class SnapshotStore : IProxyConfigProvider
{
    private volatile GatewaySnapshot? _current;
    private volatile ProxyConfigSnapshot? _proxyConfig;

    public SnapshotStore()
    {
    }

    public SnapshotStore(GatewaySnapshot initial) => Initialize(initial);

    public bool IsInitialized => _current is not null;

    public GatewaySnapshot Current => _current ?? throw new InvalidOperationException("The gateway configuration is not loaded yet: call app.UsePortcullis().");

    /// <summary>
    /// The snapshot before <see cref="Current"/> (null until the first reload). While a reload is being
    /// applied, a request may hold one of the two while YARP already (or still) runs the other.
    /// </summary>
    public GatewaySnapshot? Previous { get; private set; }

    /// <summary>Warnings found when the first configuration was loaded.</summary>
    public IReadOnlyList<ConfigDiagnostic> StartupDiagnostics { get; private set; } = [];

    internal void Initialize(GatewaySnapshot initial, IReadOnlyList<ConfigDiagnostic>? diagnostics = null)
    {
        StartupDiagnostics = diagnostics ?? [];
        if (_current is not null) throw new InvalidOperationException("The gateway configuration is already loaded.");
        _proxyConfig = new ProxyConfigSnapshot(initial);
        _current = initial;
    }

    /// <summary>Raised before a new snapshot is put in place (prepare runtime state it needs).</summary>
    public event Action<GatewaySnapshot>? Swapping;

    /// <summary>Raised after a new snapshot is in place.</summary>
    public event Action<GatewaySnapshot>? Swapped;

    public IProxyConfig GetConfig() => _proxyConfig ?? throw new InvalidOperationException("The gateway configuration is not loaded yet.");

    internal void Swap(GatewaySnapshot next)
    {
        Swapping?.Invoke(next);
        var previous = _proxyConfig!;
        Previous = _current;
        _current = next;
        _proxyConfig = new ProxyConfigSnapshot(next);
        previous.SignalChange();
        Swapped?.Invoke(next);
    }

    private sealed class ProxyConfigSnapshot : IProxyConfig
    {
        private readonly CancellationTokenSource _changed = new();

        public ProxyConfigSnapshot(GatewaySnapshot snapshot)
        {
            Routes = snapshot.ProxyRoutes;
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
