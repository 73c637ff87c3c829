using System.Net;
using Portcullis.Configuration;
using Portcullis.Tls;
using Portcullis.Pipeline;

namespace Portcullis.Listeners;

/// <summary>Validation and compilation of listeners (with their TLS), trusted proxies and connection limits.</summary>
internal static class ListenersCompiler
{
    internal static List<ListenerBinding> Compile(CompileContext context, IReadOnlyList<ListenerOptions> listeners)
    {
        var result = new List<ListenerBinding>();
        if (listeners.Count == 0)
        {
            context.Error("listeners", "no listeners are configured", "add one, e.g. listeners: [{ name: public, address: 127.0.0.1:8080 }]");
            return result;
        }

        var names = new Dictionary<string, int>(StringComparer.Ordinal);
        var admins = 0;
        for (var i = 0; i < listeners.Count; i++)
        {
            var listener = listeners[i];
            var path = $"listeners[{i}]";
            if (string.IsNullOrWhiteSpace(listener.Name))
            {
                context.Error(path, "listener has no name", "add name: public");
            }
            else if (names.TryGetValue(listener.Name, out var first))
            {
                context.Error(path + ".name", $"duplicate listener name '{listener.Name}' (first at listeners[{first}])", "give each listener its own name");
            }
            else
            {
                names[listener.Name] = i;
            }

            if (listener.Admin && ++admins > 1)
            {
                context.Error(path + ".admin", "more than one admin listener", "keep admin: true on one listener");
            }

            if (!ListenAddress.TryParse(listener.Address, out var address, out var error))
            {
                context.Error(path + ".address", $"bad listener address: {error}", "write host:port, e.g. 127.0.0.1:8080 or *:8080");
                continue;
            }

            foreach (var other in result)
            {
                if (other.Address.ConflictsWith(address))
                {
                    context.Error(path + ".address", $"address {listener.Address} conflicts with listener '{other.Name}' ({other.Address})", "use another port");
                }
            }

            var tls = listener.Tls is null ? null : TlsCompiler.Compile(context, listener.Tls, path + ".tls");
            var redirect = TlsCompiler.CompileRedirect(context, listener, path);
            result.Add(new ListenerBinding(listener.Name, address, listener.Protocols, listener.Admin, tls, redirect));
        }

        if (result.Count > 0 && result.All(l => l.Admin))
        {
            context.Error("listeners", "only an admin listener is configured; routes need a non-admin listener");
        }

        return result;
    }

    internal static List<IPNetwork> CompileTrustedProxies(CompileContext context, IReadOnlyList<string> trustedProxies)
    {
        var result = new List<IPNetwork>();
        for (var i = 0; i < trustedProxies.Count; i++)
        {
            var text = trustedProxies[i];
            if (IPNetwork.TryParse(text, out var network))
            {
                result.Add(network);
            }
            else if (IPAddress.TryParse(text, out var ip))
            {
                result.Add(new IPNetwork(ip, ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128));
            }
            else
            {
                context.Error($"trustedProxies[{i}]", $"'{text}' is not an IP address or CIDR range", "write 10.0.0.7 or 10.0.0.0/8");
            }
        }

        return result;
    }

    internal static void ValidateLimits(CompileContext context, LimitsOptions limits)
    {
        void Positive(long value, string key, string example)
        {
            if (value <= 0) context.Error("limits." + key, $"limits.{key} must be greater than zero", $"e.g. {key}: {example}");
        }

        Positive(limits.MaxRequestHeadersSize.Bytes, "maxRequestHeadersSize", "32KiB");
        if (limits.MaxRequestHeadersSize.Bytes > 16L << 20) context.Error("limits.maxRequestHeadersSize", "limits.maxRequestHeadersSize is above 16MiB", "request headers of that size are an attack, not a request; 32KiB to 64KiB is typical");
        if (limits.MaxRequestLineSize.Bytes > 16L << 20) context.Error("limits.maxRequestLineSize", "limits.maxRequestLineSize is above 16MiB", "8KiB to 64KiB is typical");
        if (limits.MaxRequestHeaderCount > 10_000) context.Error("limits.maxRequestHeaderCount", "limits.maxRequestHeaderCount is above 10000", "100 to 200 is typical");
        Positive(limits.MaxRequestHeaderCount, "maxRequestHeaderCount", "100");
        Positive(limits.MaxRequestLineSize.Bytes, "maxRequestLineSize", "8KiB");
        Positive(limits.MaxRequestBodySize.Bytes, "maxRequestBodySize", "10MiB");
        Positive(limits.RequestHeadersTimeout.Ticks, "requestHeadersTimeout", "15s");
        Positive(limits.KeepAliveTimeout.Ticks, "keepAliveTimeout", "120s");
        if (limits.MaxConnections < 0) context.Error("limits.maxConnections", "limits.maxConnections cannot be negative", "0 means unlimited");
        if (limits.MinRequestBodyDataRate < 0) context.Error("limits.minRequestBodyDataRate", "limits.minRequestBodyDataRate cannot be negative", "0 disables the check");
        if (limits.MinRequestBodyDataRate > 0 && limits.MinRequestBodyDataRateGracePeriod <= TimeSpan.FromSeconds(1))
        {
            context.Error("limits.minRequestBodyDataRateGracePeriod", "limits.minRequestBodyDataRateGracePeriod must be longer than 1s", "e.g. minRequestBodyDataRateGracePeriod: 5s");
        }

        if (limits.ShutdownTimeout < TimeSpan.Zero) context.Error("limits.shutdownTimeout", "limits.shutdownTimeout cannot be negative");
        if (limits.ShutdownDelay < TimeSpan.Zero) context.Error("limits.shutdownDelay", "limits.shutdownDelay cannot be negative", "0s stops accepting at once; 5s to 10s behind Kubernetes");
        else if (limits.ShutdownDelay > TimeSpan.FromMinutes(10))
        {
            context.Error("limits.shutdownDelay", "limits.shutdownDelay is above 10m", "it only has to outlast your load balancer's health-check interval × fall count (Kubernetes: a few seconds)");
        }
    }
}
