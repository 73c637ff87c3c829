using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.OutputCaching;
using Microsoft.Net.Http.Headers;
using Portcullis.Pipeline;

namespace Portcullis.Routing;

/// <summary>
/// routes[].cache on ASP.NET Core's output cache (in memory, size-bounded, one upstream call for concurrent misses),
/// with the HTTP caching rules a shared cache must keep (RFC 9111), since the output cache itself decides only by
/// server policy: GET and HEAD only; an answer is stored only when it is a 200 without Set-Cookie whose
/// Cache-Control allows a shared cache (no no-store, private or no-cache; s-maxage or max-age above 0, or the
/// route's defaultTtl when it gives none) and whose Vary names only headers the route varies by; a client's
/// no-cache skips the lookup and no-store the storage. Routes with auth are cached only per consumer. The entry is
/// found after auth and rate limits ran (the middleware sits behind them), so a refused caller never gets one.
/// </summary>
internal sealed class RouteOutputCachePolicy : IOutputCachePolicy
{
    /// <summary>The one named policy every caching route's endpoint carries; the route's settings come from its compiled route.</summary>
    internal const string Name = "Portcullis.Route";

    public ValueTask CacheRequestAsync(OutputCacheContext context, CancellationToken cancellation)
    {
        var http = context.HttpContext;
        var gateway = http.Features.Get<GatewayFeature>();
        var route = gateway?.ResolveRoute(http);
        if (route?.Cache is not { } cache || !(HttpMethods.IsGet(http.Request.Method) || HttpMethods.IsHead(http.Request.Method)))
        {
            context.EnableOutputCaching = false;
            return ValueTask.CompletedTask;
        }

        if (route.Auth is { Anonymous: false })
        {
            if (!cache.PerConsumer || gateway!.Consumer is not { } consumer)
            {
                context.EnableOutputCaching = false;
                return ValueTask.CompletedTask;
            }

            context.CacheVaryByRules.VaryByValues["consumer"] = consumer;
        }

        var requestCacheControl = http.Request.Headers.CacheControl.ToString();
        context.EnableOutputCaching = true;
        context.AllowLocking = true;
        context.AllowCacheLookup = !Has(requestCacheControl, "no-cache") && !http.Request.Headers.Pragma.ToString().Contains("no-cache", StringComparison.OrdinalIgnoreCase);
        context.AllowCacheStorage = !Has(requestCacheControl, "no-store");
        context.CacheVaryByRules.QueryKeys = "*";
        context.CacheVaryByRules.HeaderNames = cache.VaryByHeaders;
        return ValueTask.CompletedTask;
    }

    public ValueTask ServeFromCacheAsync(OutputCacheContext context, CancellationToken cancellation) => ValueTask.CompletedTask;

    // Also decided by CacheDecisionTransform as soon as the upstream's headers are copied: the output cache fixes an
    // entry's lifetime when the body starts, before this runs for answers with a body.
    public ValueTask ServeResponseAsync(OutputCacheContext context, CancellationToken cancellation)
    {
        Decide(context);
        return ValueTask.CompletedTask;
    }

    /// <summary>Whether (and how long) the answer in the response may be stored; idempotent.</summary>
    internal static void Decide(OutputCacheContext context)
    {
        var http = context.HttpContext;
        var response = http.Response;
        var cache = http.Features.Get<GatewayFeature>()?.ResolveRoute(http)?.Cache;
        if (cache is null || response.StatusCode != StatusCodes.Status200OK || response.Headers.ContainsKey(HeaderNames.SetCookie) || !VaryAllowed(response.Headers.Vary, cache))
        {
            context.AllowCacheStorage = false;
            return;
        }

        var cacheControl = response.Headers.CacheControl.ToString();
        if (Has(cacheControl, "no-store") || Has(cacheControl, "private") || Has(cacheControl, "no-cache"))
        {
            context.AllowCacheStorage = false;
            return;
        }

        var lifetime = Seconds(cacheControl, "s-maxage") ?? Seconds(cacheControl, "max-age");
        if (lifetime is { } seconds ? seconds <= 0 : cache.DefaultTtl is null)
        {
            context.AllowCacheStorage = false;
            return;
        }

        context.ResponseExpirationTimeSpan = lifetime is { } s ? TimeSpan.FromSeconds(s) : cache.DefaultTtl!.Value;
    }

    // Vary: * never matches a later request; a header the route does not vary by would serve one variant to all.
    private static bool VaryAllowed(Microsoft.Extensions.Primitives.StringValues vary, CompiledCache cache)
    {
        foreach (var value in vary)
        {
            foreach (var part in (value ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
            {
                if (part == "*" || !cache.VaryAllowed.Contains(part)) return false;
            }
        }

        return true;
    }

    private static bool Has(string cacheControl, string directive) =>
        cacheControl.Length > 0 && cacheControl.Split(',', StringSplitOptions.TrimEntries).Any(d => d.Equals(directive, StringComparison.OrdinalIgnoreCase) || d.StartsWith(directive + "=", StringComparison.OrdinalIgnoreCase));

    private static long? Seconds(string cacheControl, string directive)
    {
        foreach (var part in cacheControl.Split(',', StringSplitOptions.TrimEntries))
        {
            if (part.StartsWith(directive + "=", StringComparison.OrdinalIgnoreCase)
                && long.TryParse(part.AsSpan(directive.Length + 1).Trim('"'), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var value))
            {
                return value;
            }
        }

        return null;
    }
}

/// <summary>
/// Applies <see cref="RouteOutputCachePolicy.Decide"/> once the upstream's status and headers are on the response
/// and before its body is written (YARP's response transforms run there): the output cache fixes whether it buffers
/// the body, and the entry's lifetime, at the first write.
/// </summary>
internal sealed class CacheDecisionTransform : Yarp.ReverseProxy.Transforms.ResponseTransform
{
    public override ValueTask ApplyAsync(Yarp.ReverseProxy.Transforms.ResponseTransformContext context)
    {
        if (context.HttpContext.Features.Get<IOutputCacheFeature>()?.Context is { } cache) RouteOutputCachePolicy.Decide(cache);
        return ValueTask.CompletedTask;
    }
}
