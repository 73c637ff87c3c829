using System.Net;
using Microsoft.AspNetCore.Http;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Admin;

/// <summary>Tells admin-listener connections from route traffic by their local endpoint.</summary>
internal sealed class AdminListenerFilter(SnapshotStore store)
{
    // Listeners are bound once at start; later reloads cannot move them.
    private readonly Portcullis.Configuration.ListenerBinding? _admin = store.Current.Listeners.FirstOrDefault(l => l.Admin);

    /// <summary>Whether the running admin listener is reachable from this host only (validate then allows it without admin.auth).</summary>
    public bool OnLoopback => _admin is null || _admin.Address.IsLoopback;

    public bool IsAdmin(ConnectionInfo connection)
    {
        if (_admin is null || connection.LocalPort != _admin.Address.Port) return false;
        var address = _admin.Address;
        if (address.IsAny || address.IsLocalhost) return true;
        var local = connection.LocalIpAddress;
        if (local is null) return false;
        if (local.IsIPv4MappedToIPv6) local = local.MapToIPv4();
        return local.Equals(address.Ip) || (IPAddress.IsLoopback(local) && IPAddress.IsLoopback(address.Ip!));
    }
}
