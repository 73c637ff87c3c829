using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Portcullis.Configuration;

namespace Portcullis.Listeners;

/// <summary>
/// The shutdown's control over the route listeners, apart from the admin listener. Kestrel stops every
/// listener at once; the gateway must instead keep the admin listener (and /readyz answering 503) up to
/// the end, and may keep the route listeners accepting for <c>limits.shutdownDelay</c>. So Kestrel's
/// transport is decorated: each route listener's socket can be closed on its own (new connections are
/// refused, those already open carry on), and while <see cref="Draining"/> the gateway asks every
/// connection it answers to close after the response.
/// </summary>
internal sealed class RouteListenerGate(SnapshotStore store)
{
    // Listeners are bound once at start: the admin listener is known by its port.
    private readonly int? _adminPort = store.Current.Listeners.FirstOrDefault(l => l.Admin)?.Address.Port;
    private readonly Lock _gate = new();
    private readonly List<GatedListener> _routeListeners = [];
    private volatile bool _draining;
    private bool _closed;

    /// <summary>True from the start of a shutdown: responses close their connections.</summary>
    public bool Draining => _draining;

    public void BeginDrain() => _draining = true;

    /// <summary>
    /// Asks the connection of <paramref name="context"/> to close once this response is done: HTTP/1.x with
    /// <c>Connection: close</c>; HTTP/2 with GOAWAY (Kestrel's graceful close: the streams under way finish).
    /// </summary>
    public static void CloseAfterResponse(HttpContext context)
    {
        if (HttpProtocol.IsHttp2(context.Request.Protocol) || HttpProtocol.IsHttp3(context.Request.Protocol))
        {
            // Connection-specific headers are not allowed in HTTP/2 (Kestrel drops them with a warning).
            context.Features.Get<IConnectionLifetimeNotificationFeature>()?.RequestClose();
        }
        else if (!context.Response.HasStarted)
        {
            context.Response.Headers.Connection = "close";
        }
    }

    /// <summary>Closes the route listeners' sockets: connects are refused from now on; open connections carry on.</summary>
    public async Task StopAcceptingAsync(CancellationToken cancellationToken)
    {
        GatedListener[] listeners;
        lock (_gate)
        {
            _closed = true;
            listeners = [.. _routeListeners];
        }

        foreach (var listener in listeners) await listener.UnbindAsync(cancellationToken);
    }

    private bool IsAdmin(EndPoint endpoint) => endpoint is IPEndPoint ip && ip.Port == _adminPort;

    private IConnectionListener Track(IConnectionListener listener)
    {
        if (IsAdmin(listener.EndPoint)) return listener;
        var gated = new GatedListener(listener);
        bool closed;
        lock (_gate)
        {
            closed = _closed;
            _routeListeners.Add(gated);
        }

        // Bound after the shutdown closed the others (a race at start-up): closed at once as well.
        if (closed) _ = gated.UnbindAsync(CancellationToken.None).AsTask();
        return gated;
    }

    /// <summary>
    /// Decorates every registered Kestrel transport (sockets by default) so that its listeners pass through
    /// the gate. Transports registered after this call are left alone (their route listeners then close with Kestrel).
    /// </summary>
    public static void DecorateTransports(IServiceCollection services)
    {
        services.AddSingleton<RouteListenerGate>();
        for (var i = 0; i < services.Count; i++)
        {
            var descriptor = services[i];
            if (descriptor.ServiceType != typeof(IConnectionListenerFactory) || descriptor.IsKeyedService) continue;
            services[i] = ServiceDescriptor.Singleton<IConnectionListenerFactory>(sp =>
                new GatedFactory(Create(sp, descriptor), sp.GetRequiredService<RouteListenerGate>()));
        }
    }

    private static IConnectionListenerFactory Create(IServiceProvider services, ServiceDescriptor descriptor) =>
        (IConnectionListenerFactory)(descriptor.ImplementationInstance
            ?? descriptor.ImplementationFactory?.Invoke(services)
            ?? ActivatorUtilities.CreateInstance(services, descriptor.ImplementationType!));

    private sealed class GatedFactory(IConnectionListenerFactory inner, RouteListenerGate gate) : IConnectionListenerFactory, IConnectionListenerFactorySelector
    {
        public async ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default) =>
            gate.Track(await inner.BindAsync(endpoint, cancellationToken));

        public bool CanBind(EndPoint endpoint) => inner is not IConnectionListenerFactorySelector selector || selector.CanBind(endpoint);
    }

    /// <summary>A route listener whose socket the gate can close before Kestrel stops (Kestrel's own unbind is then a no-op).</summary>
    private sealed class GatedListener(IConnectionListener inner) : IConnectionListener
    {
        private Task? _unbound;
        private readonly Lock _gate = new();

        public EndPoint EndPoint => inner.EndPoint;

        // After the unbind, the transport answers null: Kestrel's accept loop ends as it does on its own stop.
        public ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default) => inner.AcceptAsync(cancellationToken);

        public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
        {
            lock (_gate) _unbound ??= inner.UnbindAsync(cancellationToken).AsTask();
            return new ValueTask(_unbound);
        }

        public ValueTask DisposeAsync() => inner.DisposeAsync();
    }
}
