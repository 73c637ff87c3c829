using Microsoft.Extensions.Primitives;
using Portcullis.Configuration;

namespace Portcullis.Routing;

/// <summary>A route's response cache settings (routes[].cache), validated once per snapshot.</summary>
internal sealed class CompiledCache
{
    /// <summary>Total memory of cached answers (ASP.NET Core output cache's size limit), for every route together.</summary>
    internal const long TotalSize = 64L * 1024 * 1024;

    /// <summary>The largest answer kept; larger ones are proxied and not stored.</summary>
    internal const long MaxEntrySize = 1024L * 1024;

    public required TimeSpan? DefaultTtl { get; init; }

    public required StringValues VaryByHeaders { get; init; }

    public required HashSet<string> VaryAllowed { get; init; }

    public required bool PerConsumer { get; init; }

    public static CompiledCache? Compile(CompileContext context, RouteCacheOptions? options, RouteOptions route, string path)
    {
        if (options is null || !options.Enabled) return null;
        var ok = true;
        if (options.DefaultTtl is { } ttl && ttl <= TimeSpan.Zero)
        {
            context.Error(path + ".defaultTtl", "defaultTtl must be above 0", "e.g. defaultTtl: 30s, or leave it out to cache only what Cache-Control allows");
            ok = false;
        }

        for (var i = 0; i < options.VaryByHeaders.Count; i++)
        {
            var name = options.VaryByHeaders[i];
            if (name.Length == 0 || name.Any(c => c <= ' ' || c >= 127 || "()<>@,;:\\\"/[]?={}".Contains(c)))
            {
                context.Error($"{path}.varyByHeaders[{i}]", $"'{name}' is not a header name", "e.g. Accept-Language");
                ok = false;
            }
            else if (name.Equals("Authorization", StringComparison.OrdinalIgnoreCase) || name.Equals("Cookie", StringComparison.OrdinalIgnoreCase))
            {
                context.Error($"{path}.varyByHeaders[{i}]", $"varying by {name} would keep one entry per credential", "use perConsumer: true on a route with auth");
                ok = false;
            }
        }

        if (options.PerConsumer && route.Auth is null or { Anonymous: true })
        {
            context.Warning(path + ".perConsumer", "perConsumer has no effect on a route without auth (there is no consumer to key by)");
        }

        if (route.Auth is { Anonymous: false } && !options.PerConsumer)
        {
            context.Warning(path, "the route has auth, so its answers are not cached unless perConsumer: true (one consumer must never get another's answer)", "add perConsumer: true to cache per consumer");
        }

        if (!ok) return null;
        return new CompiledCache
        {
            DefaultTtl = options.DefaultTtl,
            VaryByHeaders = new StringValues([.. options.VaryByHeaders]),
            VaryAllowed = new HashSet<string>(options.VaryByHeaders.Append("Accept-Encoding"), StringComparer.OrdinalIgnoreCase),
            PerConsumer = options.PerConsumer,
        };
    }
}
