using System.Net;
using System.Text;
using Microsoft.AspNetCore.Http;

namespace Portcullis.Identity.Sessions;

/// <summary>Small HTML pages for browsers (no internals), request classification and return-URL checks.</summary>
internal static class SessionPages
{
    public static Task WriteAsync(HttpContext context, int status, string title, string message, params (string Text, string Href)[] links)
    {
        var response = context.Response;
        if (response.HasStarted) return Task.CompletedTask;
        response.StatusCode = status;
        response.ContentType = "text/html; charset=utf-8";
        response.Headers.CacheControl = "no-store";
        response.Headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'";
        response.Headers["X-Content-Type-Options"] = "nosniff";
        var html = new StringBuilder(512)
            .Append("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>")
            .Append(WebUtility.HtmlEncode(title))
            .Append("</title><style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}</style></head><body><h1>")
            .Append(WebUtility.HtmlEncode(title)).Append("</h1><p id=\"message\">").Append(WebUtility.HtmlEncode(message)).Append("</p>");
        foreach (var (text, href) in links)
        {
            html.Append("<p><a href=\"").Append(WebUtility.HtmlEncode(href)).Append("\">").Append(WebUtility.HtmlEncode(text)).Append("</a></p>");
        }

        html.Append("<p><small>Request ").Append(WebUtility.HtmlEncode(context.TraceIdentifier)).Append("</small></p></body></html>");
        var bytes = Encoding.UTF8.GetBytes(html.ToString());
        response.ContentLength = bytes.Length;
        return HttpMethods.IsHead(context.Request.Method) ? Task.CompletedTask : response.Body.WriteAsync(bytes).AsTask();
    }

    /// <summary>
    /// A request from script rather than a page load: X-Requested-With, or an Accept asking for JSON and not
    /// HTML. It gets 401/403 problem+json instead of a redirect to the provider or an HTML page.
    /// </summary>
    public static bool IsApiRequest(HttpRequest request)
    {
        if (request.Headers.ContainsKey("X-Requested-With")) return true;
        var accept = request.Headers.Accept.ToString();
        return accept.Contains("application/json", StringComparison.OrdinalIgnoreCase) && !accept.Contains("text/html", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>
    /// A return URL only when it stays on this origin: a path with a single leading '/', no backslash,
    /// no scheme, no control characters. Anything else (//evil, /\evil, https://evil, javascript:) is null,
    /// and so are percent-encoded forms of the same (/%2F%2Fevil, /%5Cevil, /%09/evil, double-encoded too),
    /// in case something down the line decodes the path once more.
    /// </summary>
    public static string? SafeReturnUrl(string? candidate)
    {
        if (string.IsNullOrEmpty(candidate) || candidate.Length > 2048) return null;
        if (candidate[0] != '/') return null;
        foreach (var c in candidate)
        {
            if (c == '\\' || char.IsControl(c)) return null;
        }

        var form = candidate;
        for (var round = 0; round < 4; round++)
        {
            if (form.Length > 1 && (form[1] == '/' || form[1] == '\\')) return null;
            foreach (var c in form)
            {
                if (char.IsControl(c)) return null;
            }

            if (!form.Contains('%')) break;
            var decoded = Uri.UnescapeDataString(form);
            if (decoded == form) break;
            form = decoded;
        }

        return candidate;
    }
}
