using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Portcullis.Pipeline;

namespace Portcullis.Routing;

/// <summary>
/// routes[].jsonLimits: JSON threat protection while the body streams (never buffered whole). A declared length
/// above maxSize, or a non-JSON body where JSON is required, is refused before the upstream is contacted; the
/// other limits are checked as the forwarder reads the body, and a broken one stops the upload and answers
/// 400/413 problem+json with its reason code (the upstream sees an aborted request, never the offending part).
/// Routes without jsonLimits pay one null check.
/// </summary>
internal sealed class JsonLimitsMiddleware(RequestDelegate next)
{
    public Task InvokeAsync(HttpContext context)
    {
        if (context.Features.Get<GatewayFeature>() is not { } gateway || gateway.ResolveRoute(context)?.JsonLimits is not { } limits
            || context.Features.Get<IHttpRequestBodyDetectionFeature>() is { CanHaveBody: false })
        {
            return next(context);
        }

        var request = context.Request;
        if (!IsJson(request.ContentType))
        {
            return limits.RequireJson ? RefuseAsync(context, gateway, ReasonCodes.JsonRequired, "Not JSON", "This route accepts only JSON bodies (Content-Type application/json or application/*+json).") : next(context);
        }

        if (request.ContentLength > limits.MaxSize)
        {
            return RefuseAsync(context, gateway, ReasonCodes.JsonTooLarge, "JSON body too large", $"The JSON body is larger than {limits.MaxSize} bytes.");
        }

        return CheckWhileStreamingAsync(context, gateway, limits);
    }

    private async Task CheckWhileStreamingAsync(HttpContext context, GatewayFeature gateway, CompiledJsonLimits limits)
    {
        var request = context.Request;
        var original = request.Body;
        using var validator = new JsonBodyValidator(limits);
        request.Body = new JsonLimitsStream(original, validator);
        try
        {
            await next(context);
        }
        finally
        {
            request.Body = original;
        }

        // The forwarder gave up on the body (a client-side body error, a bare 400 so far): say why, unless an
        // upstream's answer already started.
        if (validator.Refusal is { } refusal && !context.Response.HasStarted)
        {
            context.Response.Clear();
            await RefuseAsync(context, gateway, refusal, Title(refusal), Detail(refusal, limits));
        }
    }

    private static Task RefuseAsync(HttpContext context, GatewayFeature gateway, ReasonCode reason, string title, string detail)
    {
        gateway.Refusal = reason;
        // The rest of the body is not read: close rather than let the next request on this connection parse it.
        context.Response.Headers.Connection = "close";
        return ProblemWriter.WriteAsync(context, reason.Status, title, detail, reason.Code);
    }

    private static string Title(ReasonCode reason) =>
        reason == ReasonCodes.JsonTooLarge ? "JSON body too large" : reason == ReasonCodes.JsonMalformed ? "Malformed JSON" : "JSON limit exceeded";

    private static string Detail(ReasonCode reason, CompiledJsonLimits limits) =>
        reason == ReasonCodes.JsonTooLarge ? $"The JSON body is larger than {limits.MaxSize} bytes."
        : reason == ReasonCodes.JsonTooDeep ? $"The JSON body is nested deeper than {limits.MaxDepth} levels."
        : reason == ReasonCodes.JsonStringTooLong ? $"A JSON string is longer than {limits.MaxStringLength} bytes."
        : reason == ReasonCodes.JsonTooManyItems ? $"A JSON array has more than {limits.MaxArrayItems} items."
        : reason == ReasonCodes.JsonTooManyMembers ? $"A JSON object has more than {limits.MaxObjectMembers} members."
        : "The body is not one well-formed JSON value.";

    /// <summary>application/json or application/*+json, parameters ignored (RFC 6839 structured suffix).</summary>
    internal static bool IsJson(string? contentType)
    {
        if (string.IsNullOrEmpty(contentType)) return false;
        var media = contentType.AsSpan();
        var semicolon = media.IndexOf(';');
        if (semicolon >= 0) media = media[..semicolon];
        media = media.Trim();
        return media.Equals("application/json", StringComparison.OrdinalIgnoreCase)
            || (media.StartsWith("application/", StringComparison.OrdinalIgnoreCase) && media.EndsWith("+json", StringComparison.OrdinalIgnoreCase));
    }
}
