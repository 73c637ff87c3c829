using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;

namespace Portcullis.IntegrationTests.Infrastructure;

/// <summary>
/// A real Kestrel upstream on 127.0.0.1 whose behaviour a test controls: its health answer, a delay,
/// or a custom handler. Answers with JSON naming itself and echoing what it received.
/// </summary>
internal sealed class TestUpstream : IAsyncDisposable
{
    private WebApplication? _app;
    private int _requests;

    private TestUpstream(string name, int port, bool http2)
    {
        Name = name;
        Port = port;
        Http2 = http2;
    }

    public string Name { get; }

    public int Port { get; }

    public bool Http2 { get; }

    public string Url => $"http://127.0.0.1:{Port}";

    /// <summary>Requests answered, health probes excluded.</summary>
    public int Requests => Volatile.Read(ref _requests);

    private int _healthProbes;

    /// <summary>Active health probes (GET /healthz) answered, over restarts.</summary>
    public int HealthProbes => Volatile.Read(ref _healthProbes);

    /// <summary>What /healthz answers.</summary>
    public volatile bool Healthy = true;

    /// <summary>Delay before answering ordinary requests.</summary>
    public TimeSpan Delay { get; set; }

    /// <summary>Replaces the default answer when set.</summary>
    public Func<HttpContext, Task>? Handler { get; set; }

    public static async Task<TestUpstream> StartAsync(string name, bool http2 = false, int? port = null)
    {
        var upstream = new TestUpstream(name, port ?? Ports.GetFree(), http2);
        await upstream.StartAsync();
        return upstream;
    }

    /// <summary>Starts (again) on the same port.</summary>
    public async Task StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(options =>
            options.Listen(IPAddress.Loopback, Port, listen => listen.Protocols = Http2 ? HttpProtocols.Http2 : HttpProtocols.Http1));
        var app = builder.Build();
        app.UseWebSockets();
        app.Run(HandleAsync);
        await app.StartAsync();
        _app = app;
    }

    /// <summary>Stops listening: new connections are refused.</summary>
    public async Task StopAsync()
    {
        if (_app is null) return;
        await _app.StopAsync();
        await _app.DisposeAsync();
        _app = null;
    }

    private async Task HandleAsync(HttpContext context)
    {
        if (context.Request.Path == "/healthz")
        {
            Interlocked.Increment(ref _healthProbes);
            context.Response.StatusCode = Healthy ? 200 : 503;
            return;
        }

        Interlocked.Increment(ref _requests);
        if (Delay > TimeSpan.Zero) await Task.Delay(Delay, context.RequestAborted);
        if (Handler is not null)
        {
            await Handler(context);
            return;
        }

        using var body = new MemoryStream();
        await context.Request.Body.CopyToAsync(body, context.RequestAborted);
        var answer = new UpstreamAnswer(
            Name,
            context.Request.Method,
            (context.Request.PathBase + context.Request.Path).ToString(),
            context.Request.QueryString.Value ?? "",
            context.Request.Protocol,
            context.Request.Headers.ToDictionary(h => h.Key, h => h.Value.ToString(), StringComparer.OrdinalIgnoreCase),
            body.Length);
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(JsonSerializer.Serialize(answer));
    }

    public async ValueTask DisposeAsync() => await StopAsync();
}

internal sealed record UpstreamAnswer(
    string Server,
    string Method,
    string Path,
    string Query,
    string Protocol,
    Dictionary<string, string> Headers,
    long BodyBytes)
{
    public static async Task<UpstreamAnswer> ReadAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"upstream answer expected, got {(int)response.StatusCode}: {text}");
        return JsonSerializer.Deserialize<UpstreamAnswer>(text)!;
    }

    public string? Header(string name) => Headers.GetValueOrDefault(name) is { } value ? value : Headers.FirstOrDefault(h => string.Equals(h.Key, name, StringComparison.OrdinalIgnoreCase)).Value;
}
