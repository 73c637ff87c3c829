using System.Net;
using System.Text;
using Microsoft.AspNetCore.Http;

namespace Portcullis.Identity.Sessions;

/// <summary>Small HTML pages for browsers (no internals), request classification and return-URL checks.</summary>
internal static class SessionPages
{
    public static Task WriteAsync(HttpContext context, int status, string title, string message, params (string Text, string Href)[] links) =>
        WritePageAsync(context, status, title, message, null, links);

    /// <summary>A page with a form that POSTs to <paramref name="form"/>'s action (the logout confirmation).</summary>
    public static Task WritePageAsync(HttpContext context, int status, string title, string message, (string Action, string Button)? form, params (string Text, string Href)[] links)
    {
        var response = context.Response;
        if (response.HasStarted) return Task.CompletedTask;
        response.StatusCode = status;
        response.ContentType = "text/html; charset=utf-8";
        response.Headers.CacheControl = "no-store";
        response.Headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'";
        response.Headers["X-Content-Type-Options"] = "nosniff";
        var html = new StringBuilder(512)
            .Append("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>")
            .Append(WebUtility.HtmlEncode(title))
            .Append("</title><style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}</style></head><body><h1>")
            .Append(WebUtility.HtmlEncode(title)).Append("</h1><p id=\"message\">").Append(WebUtility.HtmlEncode(message)).Append("</p>");
        if (form is { } f)
        {
            html.Append("<form method=\"post\" action=\"").Append(WebUtility.HtmlEncode(f.Action)).Append("\"><button id=\"confirm\" type=\"submit\">")
                .Append(WebUtility.HtmlEncode(f.Button)).Append("</button></form>");
        }

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
        // fetch(), images, scripts: a browser says so (Sec-Fetch-Mode is not navigate). A redirect to the provider
        // is no use to them, and each would start (and pile up) another pending sign-in.
        var mode = request.Headers["Sec-Fetch-Mode"];
        if (mode.Count > 0 && !string.Equals(mode.ToString(), "navigate", StringComparison.OrdinalIgnoreCase)) return true;
        var accept = request.Headers.Accept.ToString();
        return accept.Contains("application/json", StringComparison.OrdinalIgnoreCase) && !accept.Contains("text/html", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>
    /// A return URL only when it stays on this origin: a path with a single leading '/', no backslash,
    /// no scheme, no control characters. Anything else (//evil, /\evil, https://evil, javascript:) is null,
    /// and so are percent-encoded forms of the same (/%2F%2Fevil, /%5Cevil, /%09/evil, double-encoded too),
    /// in case something down the line decodes the path once more. Characters outside printable ASCII (é,
    /// U+2028, U+3002 ...) are percent-encoded as UTF-8: a Location header carries ASCII only.
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

        return AsciiOnly(candidate);
    }

    private static string? AsciiOnly(string url)
    {
        var plain = true;
        foreach (var c in url)
        {
            if (c is <= ' ' or > '~') plain = false;
        }

        if (plain) return url;
        var result = new StringBuilder(url.Length * 3);
        Span<byte> utf8 = stackalloc byte[4];
        for (var i = 0; i < url.Length; i++)
        {
            var c = url[i];
            if (c is > ' ' and <= '~')
            {
                result.Append(c);
                continue;
            }

            // A lone surrogate has no UTF-8 form: no return URL rather than a guessed one.
            if (System.Text.Rune.DecodeFromUtf16(url.AsSpan(i), out var rune, out var used) != System.Buffers.OperationStatus.Done) return null;
            i += used - 1;
            var written = rune.EncodeToUtf8(utf8);
            foreach (var b in utf8[..written]) result.Append('%').Append(b.ToString("X2", System.Globalization.CultureInfo.InvariantCulture));
        }

        return result.ToString();
    }
}
