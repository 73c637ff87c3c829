using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;

namespace Portcullis.Listeners;

/// <summary>
/// Kestrel's HTTP/2 flood mitigations (rapid reset, output-queue overflow) work, but log a Critical line for
/// every operation they refuse: dozens per attacking connection, an attacker's way to flood the log. Those
/// events (Warning and above from <see cref="Category"/>) are counted here instead: the first one of an
/// interval is logged at once, the rest as one summary at the end of the interval (counts per event and the
/// number of connections). At most two lines per interval, however many connections attack.
/// </summary>
internal sealed partial class Http2FloodLog : IDisposable
{
    public const string Category = "Microsoft.AspNetCore.Server.Kestrel.Http2";

    /// <summary>How often a summary is written while events keep coming.</summary>
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(10);

    private const int MaxTrackedConnections = 10_000;

    private readonly Lock _gate = new();
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Dictionary<string, int> _byEvent = new(StringComparer.Ordinal);
    private readonly HashSet<string> _connections = new(StringComparer.Ordinal);
    private readonly Dictionary<string, int> _byPeer = new(StringComparer.Ordinal);
    private readonly ConnectionPeers? _peers;
    private ITimer? _timer;
    private int _events;
    private bool _connectionsCapped;

    public Http2FloodLog(TimeProvider time, ILogger logger, ConnectionPeers? peers = null)
    {
        _time = time;
        _logger = logger;
        _peers = peers;
    }

    /// <summary>Counts one Kestrel event; logs it when it is the first of an interval.</summary>
    public void Record(EventId eventId, string? connectionId)
    {
        var name = eventId.Name ?? eventId.Id.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var peer = (connectionId is null ? null : _peers?.Find(connectionId)) ?? "unknown";
        bool first;
        lock (_gate)
        {
            first = _timer is null;
            if (first)
            {
                _timer = _time.CreateTimer(static state => ((Http2FloodLog)state!).Flush(), this, Interval, Timeout.InfiniteTimeSpan);
            }
            else
            {
                // The first event is logged on its own; the summary counts the ones after it.
                _events++;
                _byEvent[name] = _byEvent.GetValueOrDefault(name) + 1;
                if (connectionId is not null)
                {
                    if (_connections.Count < MaxTrackedConnections) _connections.Add(connectionId);
                    else _connectionsCapped = true;
                }

                if (_byPeer.Count < MaxTrackedConnections || _byPeer.ContainsKey(peer)) _byPeer[peer] = _byPeer.GetValueOrDefault(peer) + 1;
            }
        }

        if (first) Log.First(_logger, name, connectionId ?? "?", peer, Interval.TotalSeconds);
    }

    /// <summary>Writes the interval's summary (when anything followed the first event) and starts a new interval.</summary>
    internal void Flush()
    {
        int events;
        string byEvent;
        string connections;
        string peers;
        lock (_gate)
        {
            _timer?.Dispose();
            _timer = null;
            events = _events;
            if (events == 0) return;
            byEvent = string.Join(", ", _byEvent.Select(e => $"{e.Key}={e.Value}"));
            // The five peers with the most events.
            peers = string.Join(", ", _byPeer.OrderByDescending(p => p.Value).Take(5).Select(p => $"{p.Key}={p.Value}"));
            connections = _connectionsCapped ? $"{_connections.Count}+" : _connections.Count.ToString(System.Globalization.CultureInfo.InvariantCulture);
            _events = 0;
            _byEvent.Clear();
            _connections.Clear();
            _byPeer.Clear();
            _connectionsCapped = false;
        }

        Log.Summary(_logger, events, connections, Interval.TotalSeconds, byEvent, peers);
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _timer?.Dispose();
            _timer = null;
        }
    }

    /// <summary>
    /// Puts the counting in front of the host's logger factory (whichever it is): loggers of <see cref="Category"/>
    /// hand their Warning-and-above events to <see cref="Http2FloodLog"/>; every other logger is the factory's own.
    /// </summary>
    public static void Decorate(IServiceCollection services)
    {
        var original = services.LastOrDefault(d => d.ServiceType == typeof(ILoggerFactory) && !d.IsKeyedService);
        if (original is null) return;
        Func<IServiceProvider, ILoggerFactory> create = original switch
        {
            { ImplementationInstance: ILoggerFactory instance } => _ => instance,
            { ImplementationFactory: { } factory } => sp => (ILoggerFactory)factory(sp),
            _ => sp => (ILoggerFactory)ActivatorUtilities.CreateInstance(sp, original.ImplementationType!),
        };
        var owned = original.ImplementationInstance is null;
        services.TryAddSingleton<ConnectionPeers>();
        services.Replace(ServiceDescriptor.Singleton<ILoggerFactory>(sp =>
            new FloodSummarizingLoggerFactory(create(sp), owned, sp.GetService<TimeProvider>() ?? TimeProvider.System, sp.GetService<ConnectionPeers>())));
    }

    private sealed class FloodSummarizingLoggerFactory : ILoggerFactory
    {
        private readonly ILoggerFactory _inner;
        private readonly bool _owned;
        private readonly Http2FloodLog _flood;

        public FloodSummarizingLoggerFactory(ILoggerFactory inner, bool owned, TimeProvider time, ConnectionPeers? peers)
        {
            _inner = inner;
            _owned = owned;
            _flood = new Http2FloodLog(time, inner.CreateLogger<Http2FloodLog>(), peers);
        }

        public ILogger CreateLogger(string categoryName)
        {
            var logger = _inner.CreateLogger(categoryName);
            return string.Equals(categoryName, Category, StringComparison.Ordinal) ? new FloodLogger(logger, _flood) : logger;
        }

        public void AddProvider(ILoggerProvider provider) => _inner.AddProvider(provider);

        public void Dispose()
        {
            _flood.Flush();
            _flood.Dispose();
            if (_owned) _inner.Dispose();
        }
    }

    private sealed class FloodLogger(ILogger inner, Http2FloodLog flood) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => inner.BeginScope(state);

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning || inner.IsEnabled(logLevel);

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (logLevel < LogLevel.Warning)
            {
                inner.Log(logLevel, eventId, state, exception, formatter);
                return;
            }

            flood.Record(eventId, ConnectionId(state));
        }

        private static string? ConnectionId<TState>(TState state)
        {
            if (state is not IReadOnlyList<KeyValuePair<string, object?>> values) return null;
            for (var i = 0; i < values.Count; i++)
            {
                if (values[i].Key == "ConnectionId") return values[i].Value as string;
            }

            return null;
        }
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 1301, EventName = "Http2FloodMitigated", Level = LogLevel.Warning,
            Message = "HTTP/2 flood refused by Kestrel ({KestrelEvent}) on connection {ConnectionId} from {Peer}; further such events are summarized every {IntervalSeconds}s.")]
        public static partial void First(ILogger logger, string kestrelEvent, string connectionId, string peer, double intervalSeconds);

        [LoggerMessage(EventId = 1302, EventName = "Http2FloodSummary", Level = LogLevel.Warning,
            Message = "HTTP/2 flood: {Events} more Kestrel events from {Connections} connections in the last {IntervalSeconds}s ({ByEvent}); top peers: {Peers}.")]
        public static partial void Summary(ILogger logger, int events, string connections, double intervalSeconds, string byEvent, string peers);
    }
}
