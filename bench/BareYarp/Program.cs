// A bare YARP proxy: the floor of Portcullis's own stack in bench/run.sh.
// One catch-all route to one cluster with one destination, configured from code; logging set up the way
// `portcullis run` sets it up (single-line console, Microsoft and Yarp at Warning) so that the
// comparison measures the gateway pipeline, not logging.
//   BAREYARP_PORT         loopback port to listen on (required)
//   BAREYARP_DESTINATION  upstream base URL, e.g. http://127.0.0.1:8081 (required)
using System.Net;
using Yarp.ReverseProxy.Configuration;

var port = int.Parse(Environment.GetEnvironmentVariable("BAREYARP_PORT")
    ?? throw new InvalidOperationException("BAREYARP_PORT is not set"), System.Globalization.CultureInfo.InvariantCulture);
var destination = Environment.GetEnvironmentVariable("BAREYARP_DESTINATION")
    ?? throw new InvalidOperationException("BAREYARP_DESTINATION is not set");

var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = [] });
builder.Logging.ClearProviders();
builder.Logging.AddSimpleConsole(options => options.SingleLine = true);
builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
builder.Logging.AddFilter("Yarp", LogLevel.Warning);
builder.WebHost.ConfigureKestrel(options =>
{
    options.AddServerHeader = false;
    options.Listen(IPAddress.Loopback, port);
});

builder.Services.AddReverseProxy().LoadFromMemory(
    [
        new RouteConfig
        {
            RouteId = "all",
            ClusterId = "origin",
            Match = new RouteMatch { Path = "{**catch-all}" },
        },
    ],
    [
        new ClusterConfig
        {
            ClusterId = "origin",
            Destinations = new Dictionary<string, DestinationConfig>
            {
                ["d1"] = new DestinationConfig { Address = destination },
            },
        },
    ]);

var app = builder.Build();
app.MapReverseProxy();
app.Run();
