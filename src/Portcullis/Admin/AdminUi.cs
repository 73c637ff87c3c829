using System.Text;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Portcullis.Configuration;
using Portcullis.Pipeline;

namespace Portcullis.Admin;

/// <summary>
/// The dashboard's sign-in: <c>GET /ui/login</c> (a form), <c>POST /ui/login</c> (an admin token, checked like
/// a bearer token, traded for the read-only <see cref="UiSession"/> cookie) and <c>POST /ui/logout</c>. These
/// paths and the stylesheet answer without credentials; every other /ui/ path is authenticated like the rest
/// of the admin API, and a browser navigation without credentials is sent here instead of getting a 401.
/// </summary>
internal sealed class AdminUi(SnapshotStore store, AdminListenerFilter listener, UiSession session)
{
    public const string LoginPath = "/ui/login";
    public const string LogoutPath = "/ui/logout";
    private const string StylePath = "/ui/app.css";
    private const int MaxNextLength = 2048;

    // No inline script or style anywhere: the pages load their code and styles from /ui/ only.
    private const string ContentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

    /// <summary>Paths answered without credentials: the sign-in form and action, sign-out, and the stylesheet they use.</summary>
    public static bool IsSignInPath(HttpRequest request) => request.Path.Value is LoginPath or LogoutPath or StylePath;

    /// <summary>A browser loading a dashboard page (not a script's fetch): sent to the sign-in form rather than shown a 401.</summary>
    public static bool IsPageNavigation(HttpRequest request) =>
        HttpMethods.IsGet(request.Method)
        && (request.Path.Value ?? "").StartsWith(UiAssets.Prefix, StringComparison.Ordinal)
        && request.Headers["Sec-Fetch-Mode"] is [ "navigate" ];

    public static void SecurityHeaders(HttpResponse response)
    {
        var headers = response.Headers;
        headers.ContentSecurityPolicy = ContentSecurityPolicy;
        headers.XContentTypeOptions = "nosniff";
        headers.XFrameOptions = "DENY";
        // Not no-referrer: with it browsers send "Origin: null" on the sign-in form's POST.
        headers["Referrer-Policy"] = "same-origin";
        headers["Cross-Origin-Opener-Policy"] = "same-origin";
    }

    /// <summary>303 to the sign-in form, which comes back to this page afterwards.</summary>
    public static void RedirectToLogin(HttpContext context)
    {
        SecurityHeaders(context.Response);
        context.Response.Headers.CacheControl = "no-store";
        context.Response.StatusCode = StatusCodes.Status303SeeOther;
        context.Response.Headers.Location = LoginPath + "?next=" + Uri.EscapeDataString(context.Request.Path.Value + context.Request.QueryString.Value);
    }

    /// <summary>/ui (no slash): the dashboard lives at /ui/.</summary>
    public static Task RedirectToRoot(HttpContext context)
    {
        context.Response.StatusCode = StatusCodes.Status308PermanentRedirect;
        context.Response.Headers.Location = UiAssets.Prefix;
        return Task.CompletedTask;
    }

    public Task LoginPage(HttpContext context)
    {
        if (NoSignInNeeded) return Redirect(context, UiAssets.Prefix);
        return WritePage(context, 200, SafeNext(context.Request.Query["next"]), null);
    }

    public async Task Login(HttpContext context)
    {
        if (!SameOrigin(context.Request))
        {
            SecurityHeaders(context.Response);
            await ProblemWriter.WriteAsync(context, 403, "Forbidden", "Sign in from the dashboard's own sign-in page.", ReasonCodes.AdminUiCrossOrigin);
            return;
        }

        if (NoSignInNeeded)
        {
            await Redirect(context, UiAssets.Prefix);
            return;
        }

        IFormCollection form;
        try
        {
            if (!context.Request.HasFormContentType || context.Request.ContentLength is > 16 * 1024) throw new InvalidDataException("not a small form");
            form = await context.Request.ReadFormAsync(new FormOptions { ValueCountLimit = 8, KeyLengthLimit = 64, ValueLengthLimit = 4096, BufferBody = false }, context.RequestAborted);
        }
        catch (InvalidDataException)
        {
            await WritePage(context, 400, UiAssets.Prefix, "The sign-in form could not be read; reload the page and try again.");
            return;
        }

        var next = SafeNext(form["next"]);
        var presented = ((string?)form["token"] ?? "").Trim();
        var auth = store.Current.AdminAuth;
        if (auth is null || AdminAuthenticator.FindToken(auth.Tokens, presented) is not { } token)
        {
            await Audit(context, new AdminCaller("token:unknown", AdminScope.Read), "admin.ui-signin", "failed", ReasonCodes.AdminTokenInvalid);
            await WritePage(context, 401, next, "That is not one of the admin API's tokens.");
            return;
        }

        session.SignIn(context, token);
        await Audit(context, token.Caller, "admin.ui-signin", "ok", null);
        await Redirect(context, next);
    }

    public async Task Logout(HttpContext context)
    {
        if (!SameOrigin(context.Request))
        {
            SecurityHeaders(context.Response);
            await ProblemWriter.WriteAsync(context, 403, "Forbidden", "Sign out from the dashboard itself.", ReasonCodes.AdminUiCrossOrigin);
            return;
        }

        var caller = store.Current.AdminAuth is { } auth ? session.Read(context, auth) : null;
        UiSession.SignOut(context);
        await Audit(context, caller ?? AdminCaller.Anonymous, "admin.ui-signout", "ok", null);
        await Redirect(context, NoSignInNeeded ? UiAssets.Prefix : LoginPath);
    }

    // A loopback admin listener without admin.auth lets everyone in, as the admin API does.
    private bool NoSignInNeeded => store.Current.AdminAuth is null && listener.OnLoopback;

    // A form posted from another site must not sign the browser in (login CSRF) or out. Browsers send
    // Sec-Fetch-Site (or, older ones, Origin) on every POST; a client with neither (curl) is not a browser
    // someone else controls.
    private static bool SameOrigin(HttpRequest request)
    {
        if (request.Headers["Sec-Fetch-Site"] is [ { } site ]) return site is "same-origin" or "none";
        return request.Headers.Origin is not [ { } origin ] || string.Equals(origin, request.Scheme + "://" + request.Host.Value, StringComparison.OrdinalIgnoreCase);
    }

    // Only a dashboard path: anything else (another host, //evil, the sign-in page itself) goes to the overview.
    private static string SafeNext(string? next)
    {
        if (string.IsNullOrEmpty(next) || next.Length > MaxNextLength || !next.StartsWith(UiAssets.Prefix, StringComparison.Ordinal)) return UiAssets.Prefix;
        if (next.StartsWith(LoginPath, StringComparison.Ordinal) || next.Contains("//", StringComparison.Ordinal) || next.Contains('\\', StringComparison.Ordinal)) return UiAssets.Prefix;
        return next.Any(c => c is <= ' ' or > '~') ? UiAssets.Prefix : next;
    }

    private static Task Redirect(HttpContext context, string location)
    {
        SecurityHeaders(context.Response);
        context.Response.Headers.CacheControl = "no-store";
        context.Response.StatusCode = StatusCodes.Status303SeeOther;
        context.Response.Headers.Location = location;
        return Task.CompletedTask;
    }

    private static ValueTask Audit(HttpContext context, AdminCaller caller, string type, string result, string? reason) =>
        Microsoft.Extensions.DependencyInjection.ServiceProviderServiceExtensions.GetService<Observability.AuditLog>(context.RequestServices) is { } audit
            ? audit.RecordUiSignInAsync(context, caller.Audit, type, result, reason)
            : ValueTask.CompletedTask;

    private static Task WritePage(HttpContext context, int status, string next, string? error)
    {
        var html = HtmlEncoder.Default;
        var page = new StringBuilder(1024)
            .Append("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Portcullis analytics · sign in</title>")
            .Append("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><link rel=\"icon\" href=\"data:,\"><link rel=\"stylesheet\" href=\"").Append(StylePath).Append("\"></head>\n")
            .Append("<body class=\"login\"><main class=\"login-box\"><h1>Portcullis analytics</h1>")
            .Append("<p>Sign in with an admin token (<code>admin.auth.tokens</code>). The dashboard session is read-only and ends after ")
            .Append((int)UiSession.Lifetime.TotalHours).Append(" hours.</p>");
        if (error is not null) page.Append("<p class=\"error\" id=\"error\" role=\"alert\">").Append(html.Encode(error)).Append("</p>");
        page.Append("<form method=\"post\" action=\"").Append(LoginPath).Append("\">")
            .Append("<input type=\"hidden\" name=\"next\" value=\"").Append(html.Encode(next)).Append("\">")
            .Append("<label for=\"token\">Admin token</label><input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" required autofocus>")
            .Append("<button id=\"signin\" type=\"submit\">Sign in</button></form></main></body></html>\n");
        var bytes = Encoding.UTF8.GetBytes(page.ToString());
        var response = context.Response;
        SecurityHeaders(response);
        response.StatusCode = status;
        response.Headers.CacheControl = "no-store";
        response.ContentType = "text/html; charset=utf-8";
        response.ContentLength = bytes.Length;
        return HttpMethods.IsHead(context.Request.Method) ? Task.CompletedTask : response.Body.WriteAsync(bytes).AsTask();
    }
}
