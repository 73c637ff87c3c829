using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Extensions;
using Portcullis.Configuration;
using Portcullis.Tls;
using Portcullis.Pipeline;

namespace Portcullis.Listeners;

/// <summary>What a listener does to every request before routing: HSTS on its HTTPS answers, or a redirect to HTTPS.</summary>
internal sealed record ListenerPolicy(string Listener, string? Hsts, HttpsRedirect? RedirectToHttps)
{
    /// <summary>Key of the policy in a connection's items (set by the listener when the connection is accepted).</summary>
    public const string ItemKey = "Portcullis.ListenerPolicy";

    /// <summary>The listener's policy, or null when it has neither HSTS nor a redirect.</summary>
    public static ListenerPolicy? For(ListenerBinding listener) =>
        listener.Tls?.Hsts is null && listener.RedirectToHttps is null ? null : new ListenerPolicy(listener.Name, listener.Tls?.Hsts, listener.RedirectToHttps);
}

/// <summary>
/// Applies the listener's policy (see <see cref="ListenerPolicy"/>): a cleartext listener with redirectToHttps
/// answers 308 (or 301) to the same host, path and query over https; a TLS listener with hsts adds
/// Strict-Transport-Security to every answer (gateway answers and proxied ones alike, replacing an upstream's).
/// </summary>
internal sealed class ListenerPolicyMiddleware(RequestDelegate next)
{
    public Task InvokeAsync(HttpContext context)
    {
        if (Policy(context) is not { } policy) return next(context);
        if (policy.RedirectToHttps is { } redirect && !context.Request.IsHttps) return Redirect(context, redirect);
        if (policy.Hsts is not null && context.Request.IsHttps) context.Response.OnStarting(SetHsts, context);
        return next(context);
    }

    private static ListenerPolicy? Policy(HttpContext context) =>
        context.Features.Get<IConnectionItemsFeature>()?.Items is { } items && items.TryGetValue(ListenerPolicy.ItemKey, out var value) ? value as ListenerPolicy : null;

    private static Task SetHsts(object state)
    {
        var context = (HttpContext)state;
        if (Policy(context)?.Hsts is { } hsts) context.Response.Headers.StrictTransportSecurity = hsts;
        return Task.CompletedTask;
    }

    private static Task Redirect(HttpContext context, HttpsRedirect redirect)
    {
        var request = context.Request;
        var host = request.Host.Host;
        if (string.IsNullOrEmpty(host))
        {
            return ProblemWriter.WriteAsync(context, StatusCodes.Status400BadRequest, "Host required", "A request to be redirected to HTTPS needs a Host header.", ReasonCodes.RedirectNoHost);
        }

        var target = redirect.Port == 443 ? new HostString(host) : new HostString(host, redirect.Port);
        var response = context.Response;
        response.StatusCode = redirect.Status;
        response.Headers.Location = UriHelper.BuildAbsolute("https", target, request.PathBase, request.Path, request.QueryString);
        response.ContentLength = 0;
        return Task.CompletedTask;
    }
}
