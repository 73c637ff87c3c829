using Microsoft.AspNetCore.Http;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Identity;

/// <summary>
/// Before routing, so neither route matching, authorization nor an upstream ever sees a client's copy of a
/// header the gateway sets: applies the snapshot's <see cref="InboundHeaderScrub"/>.
/// </summary>
internal sealed class InboundHeaderScrubMiddleware(RequestDelegate next)
{
    public Task InvokeAsync(HttpContext context)
    {
        context.Features.Get<GatewayFeature>()?.Snapshot.HeaderScrub.Apply(context);
        return next(context);
    }
}
