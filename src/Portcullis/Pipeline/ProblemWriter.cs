using System.Text;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Http;

namespace Portcullis.Pipeline;

/// <summary>Writes RFC 9457 problem+json answers. Never includes exception text or internals.</summary>
internal static class ProblemWriter
{
    public const string ContentType = "application/problem+json";

    public static Task WriteAsync(HttpContext context, int status, string title, string detail, string reason) => WriteAsync(context, status, title, detail, reason, null);

    /// <param name="plan">The caller's plan (`plans`), written as a `plan` member so clients can tell their tier's limit; null leaves it out.</param>
    public static Task WriteAsync(HttpContext context, int status, string title, string detail, string reason, string? plan)
    {
        var response = context.Response;
        if (response.HasStarted) return Task.CompletedTask;
        response.StatusCode = status;
        response.ContentType = ContentType;
        response.Headers.CacheControl = "no-store";
        var requestId = context.TraceIdentifier;
        var json = new StringBuilder(192)
            .Append("{\"type\":\"about:blank\",\"title\":\"").Append(Escape(title))
            .Append("\",\"status\":").Append(status)
            .Append(",\"detail\":\"").Append(Escape(detail))
            .Append("\",\"reason\":\"").Append(Escape(reason))
            .Append("\",\"requestId\":\"").Append(Escape(requestId));
        if (plan is not null) json.Append("\",\"plan\":\"").Append(Escape(plan));
        var text = json.Append("\"}").ToString();
        var bytes = Encoding.UTF8.GetBytes(text);
        response.ContentLength = bytes.Length;
        return HttpMethods.IsHead(context.Request.Method) ? Task.CompletedTask : response.Body.WriteAsync(bytes).AsTask();
    }

    // Relaxed: the body is JSON served as application/problem+json, never embedded in HTML, so ' < > & stay as they are (only quotes, backslashes and control characters are escaped).
    private static string Escape(string value) => JavaScriptEncoder.UnsafeRelaxedJsonEscaping.Encode(value);
}
