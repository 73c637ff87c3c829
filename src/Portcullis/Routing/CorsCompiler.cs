using Microsoft.AspNetCore.Cors.Infrastructure;
using Microsoft.AspNetCore.Http;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Routing;

/// <summary>Validation and compilation of routes[].cors into an ASP.NET Core <see cref="CorsPolicy"/> (once per snapshot).</summary>
internal static class CorsCompiler
{
    /// <summary>The policy name YARP puts on every CORS route's endpoint; the provider resolves it per route.</summary>
    internal const string PolicyName = "Portcullis.Route";

    public static CorsPolicy? Compile(CompileContext context, RouteCorsOptions? cors, string path)
    {
        if (cors is null) return null;
        var ok = true;
        var builder = new CorsPolicyBuilder();
        if (cors.AllowOrigins.Count == 0)
        {
            context.Error(path + ".allowOrigins", "cors needs at least one allowed origin", "e.g. allowOrigins: [https://app.example.com]");
            return null;
        }

        if (cors.AllowOrigins.Contains("*"))
        {
            if (cors.AllowOrigins.Count > 1) context.Warning(path + ".allowOrigins", "\"*\" allows every origin: the other entries add nothing");
            if (cors.AllowCredentials)
            {
                context.Error(path + ".allowCredentials", "allowCredentials cannot be combined with allowOrigins \"*\" (the Fetch standard forbids it: any site could act as the user)", "list the origins that may send credentials");
                ok = false;
            }

            builder.AllowAnyOrigin();
        }
        else
        {
            for (var i = 0; i < cors.AllowOrigins.Count; i++)
            {
                var origin = cors.AllowOrigins[i];
                if (!IsOrigin(origin))
                {
                    context.Error($"{path}.allowOrigins[{i}]", $"'{origin}' is not an origin", "scheme://host[:port] with no path, e.g. https://app.example.com or https://*.example.com");
                    ok = false;
                }
            }

            builder.WithOrigins([.. cors.AllowOrigins.Select(o => o.TrimEnd('/'))]);
            if (cors.AllowOrigins.Any(o => o.Contains("://*.", StringComparison.Ordinal))) builder.SetIsOriginAllowedToAllowWildcardSubdomains();
        }

        if (cors.AllowMethods.Count == 0 || cors.AllowMethods.Contains("*")) builder.AllowAnyMethod();
        else
        {
            for (var i = 0; i < cors.AllowMethods.Count; i++)
            {
                if (!IsToken(cors.AllowMethods[i]))
                {
                    context.Error($"{path}.allowMethods[{i}]", $"'{cors.AllowMethods[i]}' is not an HTTP method", "e.g. GET, POST, PUT, DELETE");
                    ok = false;
                }
            }

            builder.WithMethods([.. cors.AllowMethods.Select(m => m.ToUpperInvariant())]);
        }

        if (cors.AllowHeaders.Contains("*")) builder.AllowAnyHeader();
        else builder.WithHeaders([.. cors.AllowHeaders]);
        for (var i = 0; i < cors.AllowHeaders.Count; i++)
        {
            if (cors.AllowHeaders[i] != "*" && !IsToken(cors.AllowHeaders[i]))
            {
                context.Error($"{path}.allowHeaders[{i}]", $"'{cors.AllowHeaders[i]}' is not a header name");
                ok = false;
            }
        }

        builder.WithExposedHeaders([.. cors.ExposeHeaders]);
        if (cors.AllowCredentials) builder.AllowCredentials();
        builder.SetPreflightMaxAge(cors.MaxAge);
        return ok ? builder.Build() : null;
    }

    private static bool IsOrigin(string origin)
    {
        var text = origin.Replace("://*.", "://wildcard.", StringComparison.Ordinal).TrimEnd('/');
        return Uri.TryCreate(text, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https"
            && uri.AbsolutePath == "/" && string.IsNullOrEmpty(uri.Query) && string.IsNullOrEmpty(uri.Fragment) && string.IsNullOrEmpty(uri.UserInfo)
            && text.Length == uri.GetLeftPart(UriPartial.Authority).Length;
    }

    private static bool IsToken(string value) => value.Length > 0 && value.All(c => c > ' ' && c < 127 && !"()<>@,;:\\\"/[]?={}".Contains(c));
}

/// <summary>
/// ASP.NET Core's CORS middleware asks for the route's policy by <see cref="CorsCompiler.PolicyName"/>: this
/// answers with the compiled policy of the route the request matched, in that route's own generation. Without
/// an endpoint (YARP checking at config time that the policy name exists) it answers with an empty policy.
/// </summary>
internal sealed class RouteCorsPolicyProvider : ICorsPolicyProvider
{
    private static readonly Task<CorsPolicy?> Placeholder = Task.FromResult<CorsPolicy?>(new CorsPolicy());

    public Task<CorsPolicy?> GetPolicyAsync(HttpContext context, string? policyName) =>
        policyName == CorsCompiler.PolicyName && RouteOf(context)?.CorsTask is { } policy
            ? policy
            : policyName == CorsCompiler.PolicyName ? Placeholder : Task.FromResult<CorsPolicy?>(null);

    // The route in the generation the request bound (after routing); else the endpoint's current binding.
    private static CompiledRoute? RouteOf(HttpContext context) =>
        (context.Features.Get<GatewayFeature>()?.RouteBinding ?? context.GetEndpoint()?.Metadata.GetMetadata<RouteBindingSlot>()?.Current)?.Route;
}
