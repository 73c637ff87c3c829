using System.Net;
using System.Net.Sockets;

namespace Portcullis.IntegrationTests.Infrastructure;

internal static class Ports
{
    // Below Linux's ephemeral range (32768–60999): a port the OS hands out for "any free port" can be taken
    // a moment later as the source port of one of the suite's many outgoing connections, and the server
    // meant to bind it fails with "address already in use" (seen in a full run). Ports here are never
    // chosen as source ports, and each is handed out once per test run.
    private const int First = 20_000;
    private const int Count = 12_000;
    private static int _next = Random.Shared.Next(Count);

    /// <summary>A port on 127.0.0.1 that is free now, outside the ephemeral range, not handed out before in this run.</summary>
    public static int GetFree()
    {
        for (var attempt = 0; attempt < Count; attempt++)
        {
            var port = First + (int)((uint)Interlocked.Increment(ref _next) % Count);
            try
            {
                using var listener = new TcpListener(IPAddress.Loopback, port);
                listener.Start();
                return port;
            }
            catch (SocketException)
            {
                // In use by someone else: try the next one.
            }
        }

        throw new InvalidOperationException($"no free port in {First}..{First + Count - 1} on 127.0.0.1");
    }
}
