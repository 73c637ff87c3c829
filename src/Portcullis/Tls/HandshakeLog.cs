using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Portcullis.Tls;

/// <summary>
/// Logs refused TLS handshakes without a log storm: each refusal at Debug, and per listener at most one
/// Information line per interval that counts the refusals since the previous line and names the latest
/// reason and peer. Connections that close before sending a ClientHello (port scans, TCP health checks),
/// or after it but before the handshake completed (clients going away), are logged at Debug only.
/// </summary>
internal sealed partial class HandshakeLog(TimeProvider time, ILogger logger)
{
    internal static readonly TimeSpan Interval = TimeSpan.FromSeconds(10);

    private readonly ConcurrentDictionary<string, Window> _windows = new(StringComparer.Ordinal);

    public void Refused(string listener, string? peer, string reason)
    {
        Log.RefusedDetail(logger, listener, peer ?? "unknown", reason);
        var window = _windows.GetOrAdd(listener, static _ => new Window());
        var now = time.GetUtcNow();
        long count;
        lock (window)
        {
            window.Count++;
            if (window.LastReport is { } last && now - last < Interval) return;
            count = window.Count;
            window.Count = 0;
            window.LastReport = now;
        }

        Log.Refused(logger, count, listener, reason, peer ?? "unknown");
    }

    public void ClosedBeforeHello(string listener, string? peer) => Log.ClosedBeforeHello(logger, listener, peer ?? "unknown");

    /// <summary>The client sent its hello, then closed or reset the connection before the handshake completed: not a refusal.</summary>
    public void ClosedDuringHandshake(string listener, string? peer, string offered) => Log.ClosedDuringHandshake(logger, listener, peer ?? "unknown", offered);

    private sealed class Window
    {
        public long Count { get; set; }

        public DateTimeOffset? LastReport { get; set; }
    }

    private static partial class Log
    {
        [LoggerMessage(6010, LogLevel.Information, "Refused {Count} TLS handshake(s) on listener {Listener} (at most one such line per 10 s); latest: {Reason} from {Peer}")]
        public static partial void Refused(ILogger logger, long count, string listener, string reason, string peer);

        [LoggerMessage(6011, LogLevel.Debug, "TLS handshake on listener {Listener} from {Peer} refused: {Reason}")]
        public static partial void RefusedDetail(ILogger logger, string listener, string peer, string reason);

        [LoggerMessage(6012, LogLevel.Debug, "Connection on TLS listener {Listener} from {Peer} closed before a ClientHello")]
        public static partial void ClosedBeforeHello(ILogger logger, string listener, string peer);

        [LoggerMessage(6013, LogLevel.Debug, "Connection on TLS listener {Listener} from {Peer} closed by the client during the handshake (client hello names {Offered}); not a refusal")]
        public static partial void ClosedDuringHandshake(ILogger logger, string listener, string peer, string offered);
    }
}
