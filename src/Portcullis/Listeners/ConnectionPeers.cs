using System.Collections.Concurrent;
using Microsoft.AspNetCore.Connections;

namespace Portcullis.Listeners;

/// <summary>
/// The peer address of each open connection on the HTTP/2-capable listeners, by Kestrel connection id: Kestrel's
/// HTTP/2 flood events name only the connection, and <see cref="Http2FloodLog"/> reports who attacked.
/// </summary>
internal sealed class ConnectionPeers
{
    private readonly ConcurrentDictionary<string, string> _peers = new(StringComparer.Ordinal);

    public string? Find(string connectionId) => _peers.TryGetValue(connectionId, out var peer) ? peer : null;

    /// <summary>The connection middleware: the peer is known from accept to close.</summary>
    public ConnectionDelegate Middleware(ConnectionDelegate next) => async connection =>
    {
        var id = connection.ConnectionId;
        _peers[id] = connection.RemoteEndPoint is System.Net.IPEndPoint ip ? ip.Address.ToString() : connection.RemoteEndPoint?.ToString() ?? "unknown";
        try
        {
            await next(connection);
        }
        finally
        {
            _peers.TryRemove(id, out _);
        }
    };
}
