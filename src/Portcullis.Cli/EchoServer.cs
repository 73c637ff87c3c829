using System.Net;
using System.Net.WebSockets;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Portcullis.Cli;

/// <summary>
/// `portcullis echo`: an upstream for the quickstart and tests. Answers every request with what it saw
/// (method, path, headers, protocol, body size) as JSON, /healthz with 200, and echoes WebSocket messages.
/// </summary>
public static class EchoServer
{
    private static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true };

    public static WebApplication Create(string address, int port, string? name, bool h2c)
    {
        var builder = WebApplication.CreateSlimBuilder(HostDefaults.Options());
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(options =>
        {
            options.AddServerHeader = false;
            var ip = address == "localhost" ? IPAddress.Loopback : IPAddress.Parse(address);
            options.Listen(ip, port, listen => listen.Protocols = h2c ? HttpProtocols.Http2 : HttpProtocols.Http1);
        });
        var app = builder.Build();
        var serverName = name ?? $"echo-{port}";
        app.UseWebSockets();
        app.Run(context => HandleAsync(context, serverName));
        return app;
    }

    public static async Task<int> RunAsync(string address, int port, string? name, bool h2c, TextWriter output, TextWriter errors, CancellationToken cancellationToken)
    {
        if (port is < 1 or > 65535)
        {
            await errors.WriteLineAsync($"error: port {port} is out of range (1-65535)");
            return PortcullisCli.Usage;
        }

        if (address != "localhost" && !IPAddress.TryParse(address, out _))
        {
            await errors.WriteLineAsync($"error: '{address}' is not an IP address");
            return PortcullisCli.Usage;
        }

        await using var app = Create(address, port, name, h2c);
        try
        {
            await app.StartAsync(cancellationToken);
        }
        catch (IOException ex)
        {
            await errors.WriteLineAsync($"error: cannot listen on {address}:{port}: {ex.Message}");
            return PortcullisCli.Invalid;
        }

        await output.WriteLineAsync($"echo {name ?? $"echo-{port}"} listening on http://{address}:{port}");
        await app.WaitForShutdownAsync(cancellationToken);
        return PortcullisCli.Ok;
    }

    private static async Task HandleAsync(HttpContext context, string serverName)
    {
        if (context.WebSockets.IsWebSocketRequest)
        {
            using var socket = await context.WebSockets.AcceptWebSocketAsync();
            await EchoMessagesAsync(socket, context.RequestAborted);
            return;
        }

        if (context.Request.Path == "/healthz")
        {
            context.Response.ContentType = "text/plain";
            await context.Response.WriteAsync("ok\n");
            return;
        }

        long bodyBytes = 0;
        var buffer = new byte[16 * 1024];
        int read;
        while ((read = await context.Request.Body.ReadAsync(buffer, context.RequestAborted)) > 0) bodyBytes += read;

        var request = context.Request;
        var seen = new Dictionary<string, object?>
        {
            ["server"] = serverName,
            ["method"] = request.Method,
            ["path"] = (request.PathBase + request.Path).ToString(),
            ["query"] = request.QueryString.Value ?? "",
            ["protocol"] = request.Protocol,
            ["host"] = request.Host.Value,
            ["remoteAddress"] = context.Connection.RemoteIpAddress?.ToString(),
            ["headers"] = request.Headers.ToDictionary(h => h.Key, h => h.Value.ToString(), StringComparer.OrdinalIgnoreCase),
            ["bodyBytes"] = bodyBytes,
        };
        context.Response.ContentType = "application/json";
        context.Response.Headers["X-Echo-Server"] = serverName;
        await context.Response.WriteAsync(JsonSerializer.Serialize(seen, JsonOptions) + "\n");
    }

    private static async Task EchoMessagesAsync(WebSocket socket, CancellationToken cancellationToken)
    {
        var buffer = new byte[16 * 1024];
        while (socket.State == WebSocketState.Open)
        {
            var result = await socket.ReceiveAsync(buffer, cancellationToken);
            if (result.MessageType == WebSocketMessageType.Close)
            {
                await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", cancellationToken);
                return;
            }

            await socket.SendAsync(buffer.AsMemory(0, result.Count), result.MessageType, result.EndOfMessage, cancellationToken);
        }
    }
}
