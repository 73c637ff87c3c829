using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Portcullis.Routing;

namespace Portcullis.Admin;

/// <summary>
/// The admin listener as its own pipeline: a branch taken by connections to the admin listener, with a
/// route table of its own (a branch of a WebApplication has its own routing world). Admin paths are never
/// in the route listeners' table, and routes are never in this one. Authentication runs after routing for
/// every request, matched or not; then the endpoint, or 404 for anything else.
/// </summary>
internal static class AdminEndpoints
{
    /// <summary>Health checks with this tag make up /readyz.</summary>
    public const string ReadyTag = "ready";

    private static readonly string[] Read = [HttpMethods.Get, HttpMethods.Head];
    private static readonly string[] Post = [HttpMethods.Post];

    /// <summary>Sends admin-listener connections into the admin pipeline; everything else goes on.</summary>
    public static IApplicationBuilder UseAdminListener(this IApplicationBuilder app)
    {
        var listener = app.ApplicationServices.GetRequiredService<AdminListenerFilter>();
        var api = app.ApplicationServices.GetRequiredService<AdminApi>();
        var trafficApi = app.ApplicationServices.GetRequiredService<AdminTrafficApi>();
        var ui = app.ApplicationServices.GetRequiredService<AdminUi>();
        var uiAssets = app.ApplicationServices.GetRequiredService<UiAssets>();
        return app.MapWhen(context => listener.IsAdmin(context.Connection), admin =>
        {
            admin.UseRouting();
            admin.Use(api.AuthorizeAsync);
            admin.UseEndpoints(endpoints =>
            {
                // Fail fast if the branch ever shared the route listeners' table: admin paths would be routable there.
                if (ReferenceEquals(endpoints, app)) throw new InvalidOperationException("The admin endpoints must have a route table of their own.");
                Map(endpoints, api, trafficApi);
                MapUi(endpoints, ui, uiAssets);
            });
        });
    }

    private static void Map(IEndpointRouteBuilder endpoints, AdminApi api, AdminTrafficApi trafficApi)
    {
        endpoints.MapHealthChecks("/healthz", new HealthCheckOptions
        {
            Predicate = static _ => false, // alive while the process answers
            AllowCachingResponses = true,
            ResponseWriter = static (context, _) =>
            {
                context.Response.ContentType = "text/plain; charset=utf-8";
                return context.Response.WriteAsync("ok\n");
            },
        }).Only(Read, "/healthz");

        var readiness = endpoints.ServiceProvider.GetRequiredService<ReadinessWriter>();
        endpoints.MapHealthChecks("/readyz", new HealthCheckOptions
        {
            Predicate = static check => check.Tags.Contains(ReadyTag),
            AllowCachingResponses = true, // the writer says no-store itself
            ResultStatusCodes =
            {
                // Degraded is still ready: only routes of the failing capability answer 503, the rest serve.
                [HealthStatus.Healthy] = StatusCodes.Status200OK,
                [HealthStatus.Degraded] = StatusCodes.Status200OK,
                [HealthStatus.Unhealthy] = StatusCodes.Status503ServiceUnavailable,
            },
            ResponseWriter = readiness.WriteAsync,
        }).Only(Read, "/readyz");

        Get(endpoints, "/admin/config", api.Config);
        Get(endpoints, "/admin/clusters", api.Clusters);
        endpoints.MapMethods("/admin/reload", Post, api.Reload).Only(null, "/admin/reload");
        Get(endpoints, "/admin/reload", api.LastReload);
        Get(endpoints, "/admin/traffic", trafficApi.Traffic);
        Get(endpoints, "/admin/certificates", api.Certificates);
        Get(endpoints, "/admin/upstream-tls", AdminApi.UpstreamTls);
        Get(endpoints, "/admin/upstream-credentials", AdminApi.UpstreamCredentials);
        Get(endpoints, "/admin/observability", api.ObservabilityStatus);
        var analytics = endpoints.ServiceProvider.GetRequiredService<AdminAnalyticsApi>();
        foreach (var (path, kind) in AdminAnalyticsApi.Endpoints) Get(endpoints, path, context => analytics.QueryAsync(context, kind));
        var advice = endpoints.ServiceProvider.GetRequiredService<AdminAdviceApi>();
        Get(endpoints, "/admin/advice", advice.List);
        Get(endpoints, "/admin/advice/{id}", context => advice.Get(context, Value(context, "id")));
        foreach (var action in AdminAdviceApi.Actions)
        {
            var template = "/admin/advice/{id}/" + action;
            endpoints.MapMethods(template, Post, context => advice.Decide(context, Value(context, "id"), action)).Only(null, template);
        }

        Get(endpoints, "/admin/quotas/{quota}", context => trafficApi.Quota(context, Value(context, "quota")));
        endpoints.MapMethods("/admin/issuers/{issuer}/refresh", Post, context => api.RefreshIssuer(context, Value(context, "issuer")))
            .Only(null, "/admin/issuers/{issuer}/refresh");
        foreach (var action in (string[])["drain", "undrain"])
        {
            var template = "/admin/clusters/{cluster}/destinations/{destination}/" + action;
            var drain = action == "drain";
            endpoints.MapMethods(template, Post, context => api.Drain(context, Value(context, "cluster"), Value(context, "destination"), drain)).Only(null, template);
        }

        // Anything else (any method): the metrics scrape at its configured path, or 404 once authenticated.
        // Matching every method, it also keeps routing from answering 405 where today's answer is 404.
        endpoints.Map("{**path}", AdminApi.NotFoundAsync);
    }

    // The dashboard (docs/analytics.md#dashboard): its sign-in, then its pages and files.
    private static void MapUi(IEndpointRouteBuilder endpoints, AdminUi ui, UiAssets assets)
    {
        Get(endpoints, AdminUi.LoginPath, ui.LoginPage);
        endpoints.MapMethods(AdminUi.LoginPath, Post, ui.Login).Only(null, AdminUi.LoginPath);
        endpoints.MapMethods(AdminUi.LogoutPath, Post, ui.Logout).Only(null, AdminUi.LogoutPath);
        Get(endpoints, "/ui", AdminUi.RedirectToRoot);
        endpoints.MapMethods(UiAssets.Prefix + "{**file}", Read, assets.ServeAsync)
            .WithMetadata(new ExactPathMetadata(UiAssets.Prefix, prefix: true));
    }

    private static void Get(IEndpointRouteBuilder endpoints, string template, RequestDelegate handler) =>
        endpoints.MapMethods(template, Read, handler).Only(null, template);

    // Methods where the endpoint itself does not restrict them, and the path as spelled (see ExactPathMetadata).
    private static void Only(this IEndpointConventionBuilder builder, string[]? methods, string template)
    {
        if (methods is not null) builder.WithMetadata(new HttpMethodMetadata(methods));
        builder.WithMetadata(new ExactPathMetadata(template));
    }

    private static string Value(HttpContext context, string name) => (string)context.Request.RouteValues[name]!;
}
