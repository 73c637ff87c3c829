using Microsoft.Extensions.Hosting;
using Portcullis.Configuration;
using Portcullis.Routing;

namespace Portcullis.Hosting;

/// <summary>
/// Readies the first generation before the listeners open: YARP's endpoints and the route table are otherwise
/// built by the first request (seconds at tens of thousands of routes, with that request waiting), and the start's
/// garbage is then given back (<see cref="HeapTrim"/>) while nothing is being served. Hosted services start before
/// the server, so this runs before Kestrel binds.
/// </summary>
internal sealed class GatewayWarmup(RouteTableSource routeTable, HeapTrim trim, StartBuildCost build) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        var allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        _ = routeTable.Current;
        trim.Now("start", build.AllocatedBytes + GC.GetAllocatedBytesForCurrentThread() - allocatedBefore);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
