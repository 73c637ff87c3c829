using System.Net;
using System.Net.Sockets;

namespace Portcullis.IntegrationTests.Infrastructure;

internal static class Ports
{
    /// <summary>A port the OS says is free right now on 127.0.0.1.</summary>
    public static int GetFree()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
