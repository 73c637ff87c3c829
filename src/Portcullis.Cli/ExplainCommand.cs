using System.CommandLine;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Portcullis.Configuration;
using Portcullis.Pipeline;
using Yarp.ReverseProxy.Forwarder;

namespace Portcullis.Cli;

/// <summary>
/// <c>portcullis explain -c FILE --request 'GET https://host/path' -H 'Name: value'</c>: runs one request through the
/// real gateway pipeline in memory (no listener bound, nothing proxied) and prints what each stage decided —
/// listener, route, authentication, rate limits and quota, cluster and destination, and the request the upstream
/// would have received — so staging and production configurations can be checked to decide the same.
/// </summary>
internal static class ExplainCommand
{
    public static Command Create(TextWriter output, TextWriter errors)
    {
        var config = new Option<string[]>("--config", "-c") { Description = "The YAML configuration file; repeat -c to add overlays.", Required = true, Arity = ArgumentArity.OneOrMore };
        var request = new Option<string>("--request", "-r") { Description = "The request: 'METHOD URL', e.g. 'GET https://api.example.com/orders/42' (a path alone uses the listener's scheme and localhost).", Required = true };
        var headers = new Option<string[]>("--header", "-H") { Description = "A request header, 'Name: value' (repeatable).", Arity = ArgumentArity.ZeroOrMore };
        var listener = new Option<string?>("--listener", "-l") { Description = "The listener the request arrives on (default: the first one whose scheme and port fit the URL)." };
        var client = new Option<string>("--client-ip") { Description = "The client's address as the gateway sees it.", DefaultValueFactory = _ => "203.0.113.10" };
        var json = new Option<bool>("--json") { Description = "Print the explanation as JSON." };
        var command = new Command("explain", "Show which listener, route, auth rule, rate limits, maps and cluster a request would meet, and what each would decide, without proxying it.")
        {
            config, request, headers, listener, client, json,
        };
        command.SetAction((result, ct) => RunAsync(
            result.GetRequiredValue(config), result.GetRequiredValue(request), result.GetValue(headers) ?? [], result.GetValue(listener),
            result.GetValue(client)!, result.GetValue(json), output, errors, ct));
        return command;
    }

    private static async Task<int> RunAsync(string[] paths, string requestText, string[] headerTexts, string? listenerName, string clientIp,
        bool json, TextWriter output, TextWriter errors, CancellationToken cancellationToken)
    {
        if (!TryParseRequest(requestText, out var method, out var target, out var problem) || !TryParseHeaders(headerTexts, out var headers, out problem)
            || !IPAddress.TryParse(clientIp, out var clientAddress))
        {
            await errors.WriteLineAsync("error: " + (problem ?? $"--client-ip '{clientIp}' is not an IP address"));
            return PortcullisCli.Usage;
        }

        var upstream = new RecordedUpstream();
        var builder = WebApplication.CreateBuilder(HostDefaults.Options());
        builder.Logging.ClearProviders();
        builder.WebHost.UseTestServer();
        try
        {
            builder.Services.AddPortcullis(options =>
            {
                options.ConfigPath = paths[0];
                foreach (var overlay in paths.Skip(1)) options.Overlays.Add(overlay);
                options.ConfigureKestrel = false;
                options.Rewrite = WithoutSideEffects;
            });
        }
        catch (ConfigException ex)
        {
            foreach (var diagnostic in ex.Diagnostics) await errors.WriteLineAsync(diagnostic.ToString());
            await errors.WriteLineAsync($"{string.Join(" + ", paths)}: not valid; nothing to explain.");
            return PortcullisCli.Invalid;
        }

        // The last stage does not proxy: the forwarder's client hands the request it would send to the recorder.
        builder.Services.Replace(ServiceDescriptor.Singleton<IForwarderHttpClientFactory>(new RecordingClientFactory(upstream)));
        await using var app = builder.Build();
        app.UsePortcullis();
        await app.StartAsync(cancellationToken);
        var snapshot = app.Services.GetRequiredService<SnapshotStore>().Current;

        var listener = PickListener(snapshot, listenerName, target);
        if (listener is null)
        {
            await errors.WriteLineAsync($"error: no listener named '{listenerName}'; listeners: {string.Join(", ", snapshot.Listeners.Select(l => l.Name))}");
            return PortcullisCli.Usage;
        }

        var scheme = target.IsAbsoluteUri ? target.Scheme : listener.Tls is null ? "http" : "https";
        var host = target.IsAbsoluteUri ? target.Authority : "localhost";
        var pathAndQuery = target.IsAbsoluteUri ? target.PathAndQuery : target.OriginalString;
        var context = await app.GetTestServer().SendAsync(c =>
        {
            c.Request.Method = method;
            c.Request.Scheme = scheme;
            c.Request.Host = new HostString(host);
            var query = pathAndQuery.IndexOf('?', StringComparison.Ordinal);
            c.Request.Path = PathString.FromUriComponent(query < 0 ? pathAndQuery : pathAndQuery[..query]);
            c.Request.QueryString = query < 0 ? QueryString.Empty : new QueryString(pathAndQuery[query..]);
            foreach (var (name, value) in headers) c.Request.Headers.Append(name, value);
            c.Connection.LocalIpAddress = listener.Address.Ip ?? IPAddress.Loopback;
            c.Connection.LocalPort = listener.Address.Port;
            c.Connection.RemoteIpAddress = clientAddress;
            c.Connection.RemotePort = 50000;
        }, cancellationToken);

        var explanation = Explanation.Of(snapshot, listener, method, $"{scheme}://{host}{pathAndQuery}", context, upstream);
        await output.WriteAsync(json ? explanation.ToJson() : explanation.ToText());
        await app.StopAsync(cancellationToken);
        return PortcullisCli.Ok;
    }

    // Nothing explain does may write the gateway's files or shared counters: no analytics store, advisor, access or
    // audit log, health probes; rate limits and quotas count in memory (each explain starts from an empty counter).
    // It serves nobody, so its stop does not wait out limits.shutdownDelay.
    internal static PortcullisConfig WithoutSideEffects(PortcullisConfig config) => config with
    {
        Limits = config.Limits with { ShutdownDelay = TimeSpan.Zero },
        Analytics = new(),
        Advice = config.Advice with { Enabled = false },
        Observability = config.Observability with
        {
            AccessLog = config.Observability.AccessLog with { Enabled = false },
            Audit = config.Observability.Audit with { Path = null },
        },
        RateLimits = config.RateLimits.ToDictionary(p => p.Key, p => p.Value with { Store = TrafficStore.Local }, StringComparer.Ordinal),
        Quotas = config.Quotas.ToDictionary(p => p.Key, p => p.Value with { Store = TrafficStore.Local }, StringComparer.Ordinal),
        Clusters = config.Clusters.ToDictionary(p => p.Key, p => p.Value with { HealthCheck = p.Value.HealthCheck with { Active = null } }, StringComparer.Ordinal),
    };

    private static ListenerBinding? PickListener(GatewaySnapshot snapshot, string? name, Uri target)
    {
        if (name is not null) return snapshot.Listeners.FirstOrDefault(l => l.Name == name);
        var candidates = snapshot.Listeners.Where(l => !l.Admin).ToList();
        if (target.IsAbsoluteUri)
        {
            var https = target.Scheme == Uri.UriSchemeHttps;
            var fits = candidates.Where(l => (l.Tls is not null) == https).ToList();
            return fits.Find(l => l.Address.Port == target.Port) ?? First(fits) ?? First(candidates) ?? First(snapshot.Listeners);
        }

        return First(candidates) ?? First(snapshot.Listeners);

        static ListenerBinding? First(IReadOnlyList<ListenerBinding> list) => list.Count > 0 ? list[0] : null;
    }

    private static bool TryParseRequest(string text, out string method, out Uri target, out string? problem)
    {
        var parts = text.Trim().Split(' ', 2, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        method = parts.Length == 2 ? parts[0].ToUpperInvariant() : "GET";
        var url = parts.Length == 2 ? parts[1] : parts.Length == 1 ? parts[0] : "";
        problem = null;
        if (Uri.TryCreate(url, UriKind.Absolute, out target!) && (target.Scheme == Uri.UriSchemeHttp || target.Scheme == Uri.UriSchemeHttps)) return true;
        if (url.StartsWith('/') && Uri.TryCreate(url, UriKind.Relative, out target!)) return true;
        problem = $"--request '{text}': expected 'METHOD URL' with an http(s) URL or a path, e.g. 'GET https://api.example.com/orders/42'";
        target = null!;
        return false;
    }

    private static bool TryParseHeaders(string[] texts, out List<(string Name, string Value)> headers, out string? problem)
    {
        headers = [];
        problem = null;
        foreach (var text in texts)
        {
            var colon = text.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0)
            {
                problem = $"-H '{text}': expected 'Name: value'";
                return false;
            }

            headers.Add((text[..colon].Trim(), text[(colon + 1)..].Trim()));
        }

        return true;
    }

    /// <summary>What the upstream would have received (the forwarder's outgoing request), answered with 200 and no body.</summary>
    internal sealed class RecordedUpstream
    {
        public HttpRequestMessage? Request { get; set; }
    }

    private sealed class RecordingClientFactory(RecordedUpstream upstream) : IForwarderHttpClientFactory
    {
        public HttpMessageInvoker CreateClient(ForwarderHttpClientContext context) => new(new RecordingHandler(upstream), disposeHandler: true);
    }

    private sealed class RecordingHandler(RecordedUpstream upstream) : HttpMessageHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            upstream.Request = request;
            return Task.FromResult(new HttpResponseMessage(HttpStatusCode.OK) { Content = new ByteArrayContent([]), RequestMessage = request });
        }
    }
}
