using Microsoft.AspNetCore.Http;
using Portcullis.Pipeline;

namespace Portcullis.Observability;

/// <summary>
/// Something that reads a request's <see cref="GatewayFeature"/> once its response has completed, next to
/// the access log and metrics (analytics). Must not block or do I/O: it runs on the request's completion.
/// </summary>
internal interface IRequestCompletionObserver
{
    void Completed(HttpContext context, GatewayFeature gateway);
}
