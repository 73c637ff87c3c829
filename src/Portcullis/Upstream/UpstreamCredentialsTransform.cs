using Microsoft.AspNetCore.Http;
using Yarp.ReverseProxy.Model;
using Yarp.ReverseProxy.Transforms;
using Portcullis.Pipeline;

namespace Portcullis.Upstream;

/// <summary>Keys in a cluster's YARP metadata that point at its upstream TLS runtime and token source.</summary>
internal static class UpstreamMetadata
{
    public const string Tls = "Portcullis.UpstreamTls";
    public const string Credentials = "Portcullis.UpstreamCredentials";
}

/// <summary>
/// Runs last among the request transforms (after the request headers were copied): for a cluster with
/// client credentials, drops the client's Authorization (and any copy of the configured header) and sets
/// the gateway's cached token; with no valid token the request is answered 503 problem+json and not forwarded.
/// </summary>
internal sealed class UpstreamCredentialsTransform(UpstreamCredentialsStore store) : RequestTransform
{
    public static readonly ReasonCode Reason = ReasonCodes.UpstreamCredentialsUnavailable;

    public override ValueTask ApplyAsync(RequestTransformContext context)
    {
        var cluster = context.HttpContext.Features.Get<IReverseProxyFeature>()?.Cluster;
        if (cluster?.Config.Metadata is not { } metadata || !metadata.TryGetValue(UpstreamMetadata.Credentials, out var key)) return default;

        var headers = context.ProxyRequest.Headers;
        headers.Remove("Authorization");
        if (store.Get(key) is not { } source) return new ValueTask(Unavailable(context.HttpContext));
        headers.Remove(source.Settings.Header);
        var pending = source.GetHeaderAsync();
        return pending.IsCompletedSuccessfully ? new ValueTask(Apply(context, source, pending.Result)) : ApplyLaterAsync(context, source, pending);
    }

    private static async ValueTask ApplyLaterAsync(RequestTransformContext context, ClientCredentialsTokenSource source, ValueTask<string?> pending) =>
        await Apply(context, source, await pending.ConfigureAwait(false)).ConfigureAwait(false);

    private static Task Apply(RequestTransformContext context, ClientCredentialsTokenSource source, string? value)
    {
        if (value is null) return Unavailable(context.HttpContext);
        context.ProxyRequest.Headers.TryAddWithoutValidation(source.Settings.Header, value);
        return Task.CompletedTask;
    }

    private static Task Unavailable(HttpContext context)
    {
        if (context.Features.Get<GatewayFeature>() is { } gateway) gateway.Refusal = Reason;
        context.Response.Headers.RetryAfter = "5";
        return ProblemWriter.WriteAsync(context, StatusCodes.Status503ServiceUnavailable, "Upstream credentials unavailable",
            "The gateway has no valid credentials for this upstream right now.", Reason);
    }
}
